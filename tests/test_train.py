"""Training: random masks, resumable checkpoints, DDP under torchrun, export to weights."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ssic_cli import train as training
from ssic_cli.cli import main
from ssic_cli.model import DEFAULT_MODEL
from ssic_cli.train import TrainOptions, lr_at
from ssic_cli.train_data import random_group_blocks

from .conftest import ROOT, crop


def test_random_groups_are_connected_and_numbered():
    from scipy import ndimage
    rng = np.random.default_rng(3)
    for _ in range(20):
        ids = random_group_blocks(8, 8, rng)
        groups = np.unique(ids)
        assert groups.tolist() == list(range(len(groups))) and 1 <= len(groups) <= 5
        for g in groups:
            _, parts = ndimage.label(ids == g)
            assert parts == 1


@pytest.fixture
def data_dir(tmp_path, kodak):
    d = tmp_path / "data" / "nested"
    d.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(crop(kodak, 160, 200, 40 * i, 60 * i)).save(d / f"img{i}.png")
    return tmp_path / "data"


@pytest.mark.slow
def test_train_resume_and_export(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", data_dir, "--out", out, "--batch", "2", "--log-every", "1", "--quiet"]
    assert main([str(a) for a in args + ["--max-steps", "2"]]) == 0
    assert main([str(a) for a in args + ["--max-steps", "3"]]) == 0
    err = capsys.readouterr().err
    assert "resumed" in err and "at step 2" in err
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    wdir = tmp_path / "weights"
    assert main(["train", "--out", str(out), "--export", str(wdir)]) == 0
    (path,) = wdir.glob(f"{DEFAULT_MODEL}-*.pt")
    from ssic_cli import codec
    from ssic_cli.mask import single_group
    from ssic_cli.weights import load_weights
    lm = load_weights(path)
    assert lm.card["steps"] == 3 and lm.card["images_seen"] == 6
    img = np.zeros((32, 48, 3), np.uint8)
    assert codec.decode(codec.encode(img, single_group(48, 32), 4.0, weights=lm), weights=lm).image.size == (48, 32)
    averaged = tmp_path / "averaged"               # the checkpoint's weight average, exported instead
    assert main(["train", "--out", str(out), "--export", str(averaged), "--ema"]) == 0
    (avg_path,) = averaged.glob(f"{DEFAULT_MODEL}-*.pt")
    assert "decay 0.999" in load_weights(avg_path).card["weight_average"]
    assert avg_path.name != path.name                   # other weights, so another id
    fresh = tmp_path / "fresh"                     # a new run started from the shipped-style weights
    assert main([str(a) for a in ["train", "--data", data_dir, "--out", fresh, "--batch", "2", "--log-every", "1",
                                  "--quiet", "--init", path, "--max-steps", "4"]]) == 0
    assert "started from" in capsys.readouterr().err
    assert [json.loads(line)["step"] for line in (fresh / "log.jsonl").read_text().splitlines()] == [4]


def test_weight_average_follows_the_weights_and_leaves_them_alone():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = training.WeightAverage(model, 0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update(model)
    assert torch.equal(average.state["weight"], torch.full((1, 2), 2.0))
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))            # the trunk is not touched
    resumed = training.WeightAverage(model, 0.5, saved=average.state)     # from a checkpoint
    assert torch.equal(resumed.state["weight"], average.state["weight"])


def test_export_of_an_average_a_checkpoint_lacks_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model_id": DEFAULT_MODEL, "model": {}, "step": 1, "images_seen": 1, "cpu_seconds": 1.0},
               run / "last.pt")
    assert main(["train", "--out", str(run), "--export", str(tmp_path / "w"), "--ema"]) == 2
    assert "holds no weight average" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--ema"]) == 1                # --ema without --export


def test_init_refuses_weights_of_another_architecture(tmp_path):
    """Weights start a run of their own architecture; another one (whose parameters differ) is
    refused instead of half loaded."""
    from ssic_cli.errors import SsicError
    from ssic_cli.model import build_model
    from ssic_cli.train import _init_from_weights
    from ssic_cli.weights import default_weights_path
    path = default_weights_path()
    steps, images, cpu_s = _init_from_weights(build_model("ssic-convhaar"), path, "ssic-convhaar")
    assert steps > 0 and images > 0 and cpu_s > 0
    with pytest.raises(SsicError, match="parameters differ"):
        _init_from_weights(build_model("ssic-tiny2p"), path, "ssic-tiny2p")


def test_init_continues_the_z_prior_density_it_was_shipped_with():
    """The density of z is part of what --init continues: started afresh under trained transforms
    it never recovered (z cost ~8x more after 2,000 steps of a campaign stretch)."""
    from ssic_cli.model import build_model
    from ssic_cli.train import _init_from_weights
    from ssic_cli.weights import default_weights_path
    path = default_weights_path()
    stored = torch.load(path, weights_only=True)["state_dict"]
    model = build_model("ssic-convhaar")
    _init_from_weights(model, path, "ssic-convhaar")
    density = [k for k, v in model.entropy_bottleneck.named_parameters() if not k.endswith("quantiles")]
    assert len(density) >= 6
    for name in density:
        assert torch.equal(model.state_dict()[f"entropy_bottleneck.{name}"], stored[f"entropy_bottleneck.{name}"]), name


@pytest.mark.slow
def test_resume_checks_the_model(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", data_dir, "--batch", "2", "--log-every", "1", "--quiet", "--max-steps", "1", "--out", run]
    assert main([str(a) for a in args]) == 0
    state = torch.load(run / "last.pt", weights_only=False)
    state["model_id"] = "ssic-other"                # a checkpoint of another architecture
    torch.save(state, run / "last.pt")
    assert main([str(a) for a in args]) == 2
    assert "holds a ssic-other model" in capsys.readouterr().err
    assert main([str(a) for a in args + ["--model", "no-such"]]) == 1


def test_train_on_a_folder_without_images_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith("ssic: error: no images found under")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_distributed_two_cpu_processes(tmp_path, data_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "ssic_cli", "train", "--data", str(data_dir), "--out", str(out), "--batch", "2", "--max-steps", "2",
           "--log-every", "1", "--threads", "1", "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and records[-1]["images"] == 8   # 2 ranks × batch 2 × 2 steps


@pytest.mark.slow
def test_distributed_ranks_checkpoint_together_and_stop_on_the_shared_budget(tmp_path, data_dir):
    """A checkpoint every step (collective: all ranks' RNG states), a stop on the shared CPU budget
    (no rank left waiting in an all-reduce), and a resume that gives each rank back its stream."""
    out = tmp_path / "ddp"
    def train(*extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
               "-m", "ssic_cli", "train", "--data", str(data_dir), "--out", str(out), "--batch", "2",
               "--log-every", "1", "--threads", "1", "--quiet", "--checkpoint-minutes", "0", *extra]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return torch.load(out / "last.pt", weights_only=False)
    first = train("--max-steps", "2")
    assert first["step"] == 2 and len(first["numpy_rng"]) == 2 and len(first["torch_rng"]) == 2
    assert first["numpy_rng"][0] != first["numpy_rng"][1]                 # each rank draws its own crops
    budget = (first["cpu_seconds"] + 1.0) / 3600                           # about one more step's worth
    second = train("--cpu-hours", f"{budget:.6f}")
    assert second["step"] > first["step"] and second["cpu_seconds"] >= budget * 3600
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, second["step"] + 1))                    # one record per step, one writer


def test_lr_warms_up_then_drops_tenfold_at_each_milestone(tmp_path):
    opt = TrainOptions(data=tmp_path, out=tmp_path, lr=1e-3, warmup_steps=10, lr_drops=(100, 200))
    assert lr_at(0, opt) == pytest.approx(1e-4)
    assert lr_at(50, opt) == pytest.approx(1e-3)
    assert lr_at(99, opt) == pytest.approx(1e-3)
    assert lr_at(100, opt) == pytest.approx(1e-4)
    assert lr_at(250, opt) == pytest.approx(1e-5)
    assert lr_at(50, opt, optimizer_since=50) == pytest.approx(1e-4)     # --init: fresh Adam warms up again
    assert lr_at(60, opt, optimizer_since=50) == pytest.approx(1e-3)


def test_bf16_autocasts_the_transforms_but_not_the_entropy_model(one_thread):
    from ssic_cli.model import build_model
    model = build_model()
    seen = {}
    def record(name):
        def hook(module, inputs, output):      # returns None: the output passes through unchanged
            seen.setdefault(name, (output[1] if isinstance(output, tuple) else output).dtype)
        return hook
    model.g_a.register_forward_hook(record("g_a"))
    model.param_nets[0].register_forward_hook(record("charm"))
    model.entropy_bottleneck.register_forward_hook(record("hyper prior"))
    x = torch.rand(2, 3, 128, 128)
    keys = torch.zeros(2, 4, 4, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, keys, 32, torch.tensor([2.0, 7.0]))
    assert seen == {"g_a": torch.bfloat16, "charm": torch.float32, "hyper prior": torch.float32}
    assert torch.isfinite(out["bits_y"]).all() and torch.isfinite(out["bits_z"]).all()


@pytest.mark.slow
def test_train_in_bf16_logs_finite_losses(tmp_path, data_dir):
    out = tmp_path / "bf16"
    args = ["train", "--data", data_dir, "--out", out, "--batch", "2", "--log-every", "1", "--quiet",
            "--max-steps", "2", "--precision", "bf16"]
    assert main([str(a) for a in args]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["bpp"] > 0 for r in records)
    assert all(0 < r["bpp_z"] < r["bpp"] for r in records)         # the hyper prior's share, logged apart


def test_auto_precision_takes_whichever_the_timing_says_is_faster(monkeypatch):
    cpu = torch.device("cpu")
    for fp32_s, bf16_s, expected in ((0.02, 0.01, "bf16"), (0.01, 0.02, "fp32")):
        monkeypatch.setattr(training, "conv_step_seconds", lambda bf16: bf16_s if bf16 else fp32_s)
        chosen, why = training.resolve_precision("auto", cpu)
        assert chosen == expected and "fp32 " in why and "bf16 " in why
    monkeypatch.setattr(training, "conv_step_seconds", lambda bf16: pytest.fail("timed an explicit choice"))
    assert training.resolve_precision("bf16", cpu)[0] == "bf16"
    assert training.resolve_precision("fp32", cpu)[0] == "fp32"


def test_conv_step_timing_is_a_real_positive_duration():
    seconds = training.conv_step_seconds(False, repeats=1)
    assert isinstance(seconds, float) and 0 < seconds < float("inf")     # no bound: machines differ


@pytest.mark.slow
def test_cpu_budget_decays_the_last_fraction_and_stops_the_run(tmp_path, data_dir):
    opt = TrainOptions(data=tmp_path, out=tmp_path, lr=1e-3, warmup_steps=1, max_cpu_hours=1.0, decay_fraction=0.15)
    assert lr_at(10, opt, cpu_seconds=0.84 * 3600) == pytest.approx(1e-3)
    assert lr_at(10, opt, cpu_seconds=0.86 * 3600) == pytest.approx(1e-4)
    out = tmp_path / "budget"
    args = ["train", "--data", data_dir, "--out", out, "--batch", "1", "--log-every", "1", "--quiet",
            "--cpu-hours", "0.0001", "--threads", "1"]                # 0.36 CPU-seconds: one step or two
    assert main([str(a) for a in args]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert 1 <= len(steps) <= 3
    assert main([str(a) for a in args]) == 0                             # resumed: the budget is spent
    assert len((out / "log.jsonl").read_text().splitlines()) == len(steps)


def test_crops_come_in_all_eight_symmetries_of_the_square(tmp_path):
    from ssic_cli.train_data import CropSampler
    path = tmp_path / "a.png"
    base = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    Image.fromarray(base).save(path)
    sampler = CropSampler([path], 16, np.random.default_rng(0))
    seen = {sampler.sample().tobytes() for _ in range(200)}
    assert len(seen) == 8


def test_decay_cpu_hours_is_the_same_decay_length_whatever_the_budget(tmp_path, data_dir, monkeypatch):
    import ssic_cli.train as train_module
    seen = []
    monkeypatch.setattr(train_module, "run", lambda opt: seen.append(opt))
    base = ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--quiet"]
    assert main(base + ["--cpu-hours", "12", "--decay-cpu-hours", "0.3"]) == 0
    assert seen[-1].max_cpu_hours == 12 and seen[-1].decay_fraction == pytest.approx(0.025)
    assert main(base + ["--decay-cpu-hours", "0.3"]) == 1                                 # usage: no budget to end
    assert main(base + ["--cpu-hours", "4", "--decay-cpu-hours", "0.3", "--decay-fraction", "0.1"]) == 1
    assert len(seen) == 1


def test_warmup_steps_and_rate_proxy_reach_the_training_options(tmp_path, data_dir, monkeypatch):
    import ssic_cli.train as train_module
    seen = []
    monkeypatch.setattr(train_module, "run", lambda opt: seen.append(opt))
    base = ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--quiet"]
    assert main(base) == 0
    assert seen[-1].warmup_steps == 300 and seen[-1].rate_proxy == "noise"
    assert main(base + ["--warmup-steps", "50", "--rate-proxy", "rounded"]) == 0
    assert seen[-1].warmup_steps == 50 and seen[-1].rate_proxy == "rounded"
    assert main(base + ["--warmup-steps", "0"]) == 1                                     # usage: at least one step
    assert main(base + ["--rate-proxy", "exact"]) == 1
    assert len(seen) == 2
    assert seen[-1].quality_balance == 0.0
    assert main(base + ["--quality-balance", "0.5"]) == 0 and seen[-1].quality_balance == 0.5
    assert main(base + ["--quality-balance", "1.5"]) == 1                                # usage: in [0, 1]


def test_quality_balance_gives_each_anchor_quality_an_equal_share():
    """Balance 1 divides each sample's loss by what the shipped model's loss is at its quality, so
    samples at every anchor sitting at that loss weigh the same; balance 0 leaves the loss as is."""
    from ssic_cli.train import LOSS_AT_QUALITY, quality_loss_weight, rd_loss
    anchors = torch.arange(1.0, 9.0)
    assert torch.equal(quality_loss_weight(anchors, 0.0), torch.ones(8))
    shares = quality_loss_weight(anchors, 1.0) * torch.tensor(LOSS_AT_QUALITY)
    assert torch.allclose(shares, torch.ones(8), atol=1e-5)
    half = quality_loss_weight(torch.tensor([1.0, 1.5, 2.0, 8.0]), 0.5)
    assert half[0] > half[1] > half[2] > half[3]                                       # low q weighs more
    # rd_loss applies it per sample: two samples with the same λD + R, at q 1 and q 8
    x = torch.zeros(2, 3, 8, 8)
    out = {"x_hat": x.clone(), "bits_y": torch.tensor([64.0, 64.0]), "bits_z": torch.zeros(2), "pixels": 64}
    q = torch.tensor([1.0, 8.0])
    plain, balanced = rd_loss(out, x, q)[0], rd_loss(out, x, q, 1.0)[0]
    assert plain.item() == pytest.approx(1.0)
    expected = (1 / LOSS_AT_QUALITY[0] + 1 / LOSS_AT_QUALITY[7]) / 2
    assert balanced.item() == pytest.approx(expected, rel=1e-5)


def test_the_same_seed_trains_the_same_weights(tmp_path, data_dir):
    """--seed fixes everything random: the initial weights, crops, masks, qualities and noise."""
    def weights(name, seed):
        out = tmp_path / name
        args = ["train", "--data", data_dir, "--out", out, "--batch", "2", "--quiet", "--max-steps", "2",
                "--precision", "fp32", "--seed", seed]
        assert main([str(a) for a in args]) == 0
        return torch.load(out / "last.pt", weights_only=False)["model"]
    first, again, other = weights("a", 5), weights("b", 5), weights("c", 6)
    assert all(torch.equal(v, again[k]) for k, v in first.items())
    assert not all(torch.equal(v, other[k]) for k, v in first.items())


@pytest.mark.slow
def test_the_rounded_rate_proxy_counts_what_the_coder_writes(kodak, one_thread):
    """``--rate-proxy rounded`` counts y's rate on the coded symbols: with trained weights it
    lands within a few % of the bytes the coder really writes, where the noise proxy charges far
    more at low quality (the gap it exists to close)."""
    from ssic_cli import codec, container
    from ssic_cli.mask import single_group
    from ssic_cli.model import build_model
    from ssic_cli.train import _init_from_weights
    from ssic_cli.weights import default_weights_path, freeze
    model = build_model(DEFAULT_MODEL)
    _init_from_weights(model, default_weights_path(), DEFAULT_MODEL)
    model.eval()
    img = crop(kodak, 256, 384)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    keys = torch.zeros(1, 256 // 32, 384 // 32, dtype=torch.long)
    data = codec.encode(img, single_group(384, 256), 1.0, weights=freeze(model, DEFAULT_MODEL))
    ssb = container.read_ssb(data)
    coded_bits = 8 * len(ssb.section(0))
    with torch.no_grad():
        bits = {proxy: float(out["bits_y"] + out["bits_z"])
                for proxy, out in ((p, model(x, keys, 32, torch.tensor([1.0]), p)) for p in ("noise", "rounded"))}
    assert bits["rounded"] == pytest.approx(coded_bits, rel=0.03)
    assert bits["noise"] > 1.3 * coded_bits
