"""Paired transform pilots: same data, same schedule shape, same CPU budget; real `.ssb` bytes.

Each candidate (a named config in ``ssic_cli.model.MODEL_CONFIGS``) trains from scratch with the
same options — lr warm-up, hold, ×0.1 over the last 15 % of the CPU budget — until its process
has used ``--cpu-hours`` of CPU time (all threads counted), then is evaluated on Kodak with real
bitstreams (``python -m bench.rd``, ≥ 6 qualities, BD-rate vs JPEG from the anchors measured on
these machines). Two pilots run side by side with one thread each, so a pair shares the machine
exactly (and gets the same interference from anything else running).

    python -m research.pilots train ssic-tiny2p ssic-conv      # resumable: re-run to continue
    python -m research.pilots evaluate ssic-tiny2p ssic-conv   # export, RD on Kodak, speed probes
    python -m research.pilots reprobe ssic-conv                # speed probes only, again
    python -m research.pilots table                            # research/results/pilots.{json,md}

A run named ``MODEL@STAGE`` (``ssic-convhaar@3.5h``) is the pilot ``MODEL`` trained on to a larger
``--cpu-hours`` in its own folder: ``train`` copies the finished pilot's checkpoint there first, so
the 1.5 CPU-hour result stays measured and the extension continues the same optimiser state.

    python -m research.pilots train ssic-convhaar@3.5h ssic-tinyhaar@3.5h --cpu-hours 3.5
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.bdrate import bd_rate_curves
from bench.common import ROOT, SHARED

RUNS = ROOT / "runs/pilots"
RD_RUNS = ROOT / "runs/rd"          # each evaluation's full Kodak result and plot (kept out of git)
RESULTS_DIR = ROOT / "research/results"
RESULTS = RESULTS_DIR / "pilots"
PYTHON = sys.executable
# The schedule every pilot shares (``ssic train`` options). bf16 is fixed rather than ``auto`` so
# every pilot of the table ran the same arithmetic: the table was measured on an AMD VM where bf16
# was the faster choice; on an Intel VM without AMX ``auto`` would pick fp32 (1.3× faster there).
SCHEDULE = {"--crop": "128", "--batch": "16", "--lr": "3e-4", "--decay-fraction": "0.15",
            "--precision": "bf16", "--seed": "0", "--checkpoint-minutes": "8", "--log-every": "25"}
QUALITIES = "1,2,3,5,6.5,8"


def log(message: str) -> None:
    print(f"[pilots] {message}", file=sys.stderr, flush=True)


def quiet_env(threads: int) -> dict:
    # PASSIVE: idle OpenMP threads sleep instead of spinning (measured: the difference between
    # ~4 and ~25 images/s when another process shares the cores).
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads),
            "PYTHONWARNINGS": "ignore"}


def model_of(run: str) -> str:
    """``ssic-convhaar@3.5h`` → ``ssic-convhaar``: the config an (extended) pilot run trains."""
    return run.split("@", 1)[0]


def start_extension(run: str) -> None:
    """An extended run starts from its pilot's last checkpoint (copied once, never moved)."""
    out, pilot = RUNS / run, RUNS / model_of(run) / "last.pt"
    if run == model_of(run) or (out / "last.pt").exists():
        return
    if not pilot.exists():
        sys.exit(f"pilots: {run} extends {model_of(run)}, which has no checkpoint in {pilot.parent}")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pilot, out / "last.pt")


def train(runs: list[str], cpu_hours: float, threads: int, data: Path) -> None:
    procs = []
    for run in runs:
        start_extension(run)
        out = RUNS / run
        out.mkdir(parents=True, exist_ok=True)
        argv = [PYTHON, "-m", "ssic_cli", "train", "--data", str(data), "--out", str(out), "--model", model_of(run),
                "--cpu-hours", str(cpu_hours), "--threads", str(threads), "--quiet"]
        argv += [a for kv in SCHEDULE.items() for a in kv]
        log(f"start {run}: {' '.join(argv[2:])}")
        procs.append((run, subprocess.Popen(argv, cwd=ROOT, env=quiet_env(threads),
                                            stderr=open(out / "train.log", "a"))))
    for run, proc in procs:
        log(f"{run} exited with {proc.wait()}")


def export(run: Path) -> Path:
    """Weights (with their card) of a run's last checkpoint, written into ``run/weights``."""
    out = subprocess.run([PYTHON, "-m", "ssic_cli", "train", "--out", str(run), "--export", str(run / "weights")],
                         cwd=ROOT, env=quiet_env(1), check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def rate_distortion(model: str, weights: Path, threads: int, images: int | None) -> dict:
    """Kodak with real bitstreams (one group); BD-rate vs JPEG's anchors. The full result (per-image
    rows, plot) goes to ``runs/rd/``; the row returned here is what the tables keep."""
    out = RD_RUNS / f"{model}.json"
    subset = ["--images", str(images)] if images else []
    subprocess.run([PYTHON, "-m", "bench.rd", "--skip-classic", "--single-only", "--qualities", QUALITIES,
                    "--threads", str(threads), "--out", str(out), *subset],
                   cwd=ROOT, env={**quiet_env(threads), "SSIC_WEIGHTS": str(weights)}, check=True,
                   stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    return {"bd_rate_vs_jpeg": result["bd_rate"]["vs_jpeg"]["ssic"]["bd_rate"],
            "bd_psnr_vs_jpeg": result["bd_rate"]["vs_jpeg"]["ssic"]["bd_psnr"],
            "bd_rate_vs_webp": result["bd_rate"]["ssic_vs"]["webp"]["bd_rate"],
            "points": [{"q": p["q"], "bpp": round(p["bpp"], 4), "psnr": round(p["psnr"], 3)}
                       for p in result["curves"]["ssic"]]}


PROBE = r"""
import json, sys, time
import numpy as np, torch
torch.set_flush_denormal(True)
torch.set_num_threads(2)
from torch.utils.flop_counter import FlopCounterMode
from PIL import Image
from ssic_cli import codec
from ssic_cli.mask import single_group
from ssic_cli.model import build_model
from ssic_cli.train import rd_loss
from ssic_cli.train_data import random_masks
model_id, weights, image = sys.argv[1:4]
model = build_model(model_id)
params = sum(p.numel() for p in model.parameters())
# Multiply-accumulates per pixel of one full forward pass (g_a, hyper path, ChARM, g_s) at 768×512.
x = torch.rand(1, 3, 512, 768)
keys = torch.zeros(1, 16, 24, dtype=torch.long)
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    model(x, keys, 32, torch.tensor([4.0]))
kmac = counter.get_total_flops() / 2 / (512 * 768) / 1e3
# Training images/s: batch 16 of 128² crops, half of them with random groups, bf16, 2 threads.
rng = np.random.default_rng(0)
opt = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
times = []
for step in range(12):
    xb = torch.rand(16, 3, 128, 128)
    kb, block = random_masks(16, 128, rng, 0.5)
    q = torch.from_numpy(rng.uniform(1, 8, 16)).float()
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(xb, kb, block, q)
    loss = rd_loss(out, xb, q)[0]
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t)
train_ips = 16 / float(np.median(times[4:]))
# Decode of one 768×512 group (the weights being evaluated), 2 threads, best of 3.
rgb = np.asarray(Image.open(image).convert("RGB"))
data = codec.encode(rgb, single_group(rgb.shape[1], rgb.shape[0]), 4.0, weights=weights)
dec = []
for _ in range(3):
    t = time.perf_counter()
    codec.decode(data, weights=weights)
    dec.append(time.perf_counter() - t)
print(json.dumps({"params": params, "kmac_per_pixel": round(kmac, 1), "train_images_per_s": round(train_ips, 2),
                  "decode_s_768x512": round(min(dec), 3)}))
"""


def probe(model: str, weights: Path) -> dict:
    out = subprocess.run([PYTHON, "-c", PROBE, model, str(weights), str(ROOT / "examples/kodim23.png")],
                         cwd=ROOT, env=quiet_env(2), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_state(run: Path) -> dict:
    import torch
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    return {"steps": state["step"], "images_seen": state["images_seen"],
            "cpu_hours": round(state["cpu_seconds"] / 3600, 3)}


def evaluate(models: list[str], threads: int, results: Path = RESULTS, images: int | None = None) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for model in models:
        weights = export(RUNS / model)
        log(f"{model}: {weights.name}; rate-distortion on Kodak")
        row = {"model": model, "config": model_of(model), "weights": weights.name, **run_state(RUNS / model)}
        row.update(rate_distortion(model, weights, threads, images))
        log(f"{model}: BD-rate vs JPEG {row['bd_rate_vs_jpeg']} %, BD-PSNR {row['bd_psnr_vs_jpeg']} dB; speed probes")
        row.update(probe(model_of(model), weights))
        (results / f"{model}.row.json").write_text(json.dumps(row, indent=1) + "\n")
        log(f"{model}: {row}")


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def table(control: str = "ssic-tiny2p") -> None:
    """The pilot table; BD-rates against JPEG (anchors) and against the control pilot."""
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.row.json"))]
    ref = next((r["points"] for r in rows if r["model"] == control), None)
    for r in rows:
        r["bd_rate_vs_control"] = round(float(bd_rate_curves(ref, r["points"])), 2) if ref else None
    rows.sort(key=lambda r: r["bd_rate_vs_control"] if r["bd_rate_vs_control"] is not None else 1e9)
    lines = [f"| model | params | kMAC/px | train img/s | decode s 768×512 | CPU-h | images | BD-rate vs JPEG | "
             f"BD-PSNR vs JPEG | BD-rate vs `{control}` |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['params'] / 1e6:.2f} M | {r['kmac_per_pixel']:.0f} | "
                     f"{r['train_images_per_s']:.1f} | {r['decode_s_768x512']:.2f} | {r['cpu_hours']:.2f} | "
                     f"{r['images_seen'] / 1e3:.0f} k | {_pct(r['bd_rate_vs_jpeg'])} | {r['bd_psnr_vs_jpeg']:+.2f} dB | "
                     f"{_pct(r['bd_rate_vs_control'])} |")
    text = "\n".join(lines)
    (RESULTS_DIR / "pilots.md").write_text(text + "\n")
    (RESULTS_DIR / "pilots.json").write_text(json.dumps({"schedule": SCHEDULE, "rows": rows}, indent=1) + "\n")
    print(text)


def reprobe(models: list[str], results: Path = RESULTS) -> None:
    """Speed probes again, rate-distortion kept: a probe that ran while the machine was busy
    (another process, a noisy neighbour on the VM) reads slow, and the Kodak run takes minutes."""
    for model in models:
        path = results / f"{model}.row.json"
        row = json.loads(path.read_text())
        weights = RUNS / model / "weights" / row["weights"]
        row.update(probe(model_of(model), weights))
        path.write_text(json.dumps(row, indent=1) + "\n")
        log(f"{model}: {row['train_images_per_s']} img/s, decode {row['decode_s_768x512']} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.pilots", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the candidates side by side (resumes)")
    t.add_argument("models", nargs="+")
    t.add_argument("--cpu-hours", type=float, default=1.5)
    t.add_argument("--threads", type=int, default=1, help="torch threads per pilot (default: %(default)s)")
    t.add_argument("--data", type=Path, default=SHARED / "data/train")
    e = sub.add_parser("evaluate", help="export, Kodak rate-distortion and speed probes of finished pilots")
    e.add_argument("models", nargs="+")
    e.add_argument("--threads", type=int, default=1, help="torch threads for the Kodak run (default: %(default)s)")
    e.add_argument("--images", type=int, help="only the first N Kodak images (a quick check, not a result)")
    e.add_argument("--results", type=Path, default=RESULTS, help="where the rows go (default: %(default)s)")
    r = sub.add_parser("reprobe", help="re-run only the speed probes of evaluated pilots (idle machine)")
    r.add_argument("models", nargs="+")
    r.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    sub.add_parser("table", help="collect the evaluated pilots into research/results/pilots.{json,md}")
    args = ap.parse_args(argv)
    if args.command == "train":
        train(args.models, args.cpu_hours, args.threads, args.data)
    elif args.command == "evaluate":
        evaluate(args.models, args.threads, args.results, args.images)
    elif args.command == "reprobe":
        reprobe(args.models, args.results)
    else:
        table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
