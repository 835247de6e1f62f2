"""Training: the loop, its schedule and checkpoints — variable rate, resumable, DDP-ready.

One run serves every quality: each sample draws q ∈ [1, 8] and is weighted by λ(q)
(gained variable rate); crops and group masks come from ``train_data``. Checkpoints are written
at a fixed wall-clock interval and on Ctrl-C / SIGTERM, so a run can always resume.
Under ``torchrun`` (``WORLD_SIZE`` set) it runs DistributedDataParallel unchanged (gloo on CPU,
nccl on GPU).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import write_atomic
from .errors import SsicError
from .model import DEFAULT_MODEL, build_model
from .model import entropy as em
from .train_data import CropSampler, list_images, random_masks


@dataclass
class TrainOptions:
    data: Path
    out: Path
    model_id: str = DEFAULT_MODEL
    crop: int = 128
    batch: int = 16
    lr: float = 2e-4
    warmup_steps: int = 300
    lr_drops: tuple[int, ...] = ()        # steps at which the lr is multiplied by 0.1 (step decay)
    max_steps: int = 10**9
    max_hours: float = 1e9                # wall-clock budget of this invocation
    max_cpu_hours: float = 1e9            # CPU-time budget of the whole run (resumes included)
    decay_fraction: float = 0.0           # lr × 0.1 over this last fraction of max_cpu_hours
    checkpoint_minutes: float = 8.0
    log_every: int = 50                   # steps between log.jsonl records
    init: Path | None = None              # weights file to start from when the run has no checkpoint
    eval_dir: Path | None = None          # e.g. Kodak: evaluated with real bitstreams
    eval_minutes: float = 30.0
    eval_qualities: tuple[float, ...] = (2.0, 5.0, 8.0)
    eval_limit: int = 4                   # images of eval_dir used by the periodic evaluation
    single_group_fraction: float = 0.5
    rate_proxy: str = "noise"             # what y's rate is counted on (model.ssic.RATE_PROXIES)
    quality_balance: float = 0.0          # 0: λ(q)·D + R as is; 1: every quality an equal share (rd_loss)
    ema_decay: float = 0.999              # exponential moving average of the weights, per step (0: none)
    seed: int = 0
    threads: int = 0                      # 0: torch default
    precision: str = "auto"               # "bf16": autocast the transforms (entropy model stays fp32);
                                          # "auto": whichever of fp32 / bf16 is faster here (timed)
    progress: bool = True


# ----- loop ------------------------------------------------------------------------------------
# The R–D loss λ(q)·255²·MSE + bpp that ssic-convhaar-c07e997d (the default when this was measured)
# reaches on Kodak at each anchor quality (its rd_kodak points), over their geometric mean: a q 8
# sample weighs ~8× a q 1 sample in the plain loss, so the shared transform spends most of its
# gradient on the high end.
LOSS_AT_QUALITY = (0.346, 0.486, 0.659, 0.878, 1.153, 1.522, 2.050, 2.862)


def quality_loss_weight(quality: torch.Tensor, balance: float) -> torch.Tensor:
    """Per-sample weight LOSS_AT_QUALITY(q)^-balance (log-linear between anchors): 0 leaves the
    loss as it is, 1 gives every quality the same share of the gradient. It rescales whole
    samples only, so each quality's own trade-off (the slope λ) is unchanged."""
    if not balance:
        return torch.ones_like(quality)
    return em.per_quality(LOSS_AT_QUALITY, quality) ** -balance


def rd_loss(out: dict, x: torch.Tensor, quality: torch.Tensor, balance: float = 0.0):
    """(loss to minimise, mean bpp, mean PSNR); the loss is weighted across qualities by
    ``quality_loss_weight``."""
    mse = ((out["x_hat"].float().clamp(0, 1) - x) ** 2).flatten(1).mean(1)
    mse_raw = ((out["x_hat"].float() - x) ** 2).flatten(1).mean(1)
    bpp = (out["bits_y"] + out["bits_z"]) / out["pixels"]
    lam = em.quality_lambda(quality)
    loss = (quality_loss_weight(quality, balance) * (lam * 255.0 ** 2 * mse_raw + bpp)).mean()
    psnr = (10 * torch.log10(1.0 / mse.clamp(min=1e-10))).mean()
    return loss, bpp.mean(), psnr


def hyper_bpp(out: dict) -> torch.Tensor:
    """The hyper prior's share of the rate (bits of z per pixel): logged apart because a z that
    spreads over all its channels costs a near-constant ~0.13 bpp on every image while the total
    rate still looks plausible (a campaign stretch diverged that way, unseen, for 3.8 CPU-hours)."""
    return (out["bits_z"] / out["pixels"]).mean()


def lr_at(step: int, opt: TrainOptions, optimizer_since: int = 0, cpu_seconds: float = 0.0) -> float:
    """Linear warm-up from the step the optimiser state was created (0, or where ``--init``
    started: fresh Adam moments make full-size first steps), then 0.1× at each of `lr_drops`
    and over the last ``decay_fraction`` of the CPU budget (the usual last-stretch decay of LIC
    training; the budget form lets runs of different speed share one schedule shape)."""
    warmup = min(1.0, (step - optimizer_since + 1) / max(1, opt.warmup_steps))
    drops = sum(step >= drop for drop in opt.lr_drops)
    if opt.decay_fraction and cpu_seconds >= (1 - opt.decay_fraction) * opt.max_cpu_hours * 3600:
        drops += 1
    return opt.lr * warmup * 0.1 ** drops


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """("fp32" | "bf16", why). "auto" times the transforms' workhorse — a dense 3×3, forward and
    backward, channels-last — both ways on this machine instead of guessing from CPU flags:
    AVX-512 BF16 made it ~2× faster on the 2-core AMD EPYC VMs and 1.9× *slower* on the Intel Xeon
    ones (training steps 1.3× slower; README, "Training")."""
    if precision != "auto":
        return precision, "as asked"
    if device.type == "cuda":
        return "bf16", "GPU"
    fp32, bf16 = conv_step_seconds(False), conv_step_seconds(True)
    why = f"timed a 3×3 conv step: fp32 {fp32 * 1e3:.1f} ms, bf16 {bf16 * 1e3:.1f} ms"
    return ("bf16" if bf16 < fp32 else "fp32"), why


def conv_step_seconds(bf16: bool, repeats: int = 3) -> float:
    """Best of ``repeats`` forward + backward passes of a 96-channel 3×3 convolution on 2×64²
    (the first pass also builds oneDNN's kernels; the minimum leaves that out)."""
    conv = torch.nn.Conv2d(96, 96, 3, padding=1)
    x = torch.randn(2, 96, 64, 64).to(memory_format=torch.channels_last).requires_grad_(True)
    best = math.inf
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = conv(x)
        out.float().square().mean().backward()
        best = min(best, time.perf_counter() - start)
    return best


def save_checkpoint(path: Path, state: dict) -> None:
    write_atomic(path, lambda fp: torch.save(state, fp))


class Stopper:
    """Turns Ctrl-C / SIGTERM into a flag checked between steps (clean checkpoint, then exit)."""

    def __init__(self):
        self.stop = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, *_):
        self.stop = True


def _agree(world: int, cpu_spent: float, stop: bool, checkpoint_due: bool) -> tuple[float, bool, bool]:
    """The CPU seconds all ranks spent in this invocation, and whether any rank wants to stop or
    checkpoint — one small all-reduce per step. Ranks deciding from their own clocks would drift
    apart (one rank a step into the lr decay before the other) or hang (one rank leaves the loop
    while the other waits in an all-reduce)."""
    if world == 1:
        return cpu_spent, stop, checkpoint_due
    shared = torch.tensor([cpu_spent, float(stop), float(checkpoint_due)], dtype=torch.float64)
    torch.distributed.all_reduce(shared)
    return shared[0].item(), bool(shared[1] > 0), bool(shared[2] > 0)


def _gather(world: int, obj) -> list:
    """Every rank's ``obj`` in rank order (a one-element list without DDP)."""
    if world == 1:
        return [obj]
    objs = [None] * world
    torch.distributed.all_gather_object(objs, obj)
    return objs


def _rank_state(saved, rank: int, current):
    """This rank's RNG state from a checkpoint (a list, one per rank; older checkpoints hold one
    torch state); a rank the checkpoint did not have keeps its ``current`` (seeded) state."""
    saved = [saved] if isinstance(saved, torch.Tensor) else saved
    return saved[rank] if rank < len(saved) else current


def _agreed_precision(asked: str, device: torch.device, rank: int, world: int) -> tuple[str, str]:
    """Rank 0 decides (timing on every rank at once could disagree); the others follow."""
    choice = [resolve_precision(asked, device) if rank == 0 else None]
    if world > 1:
        torch.distributed.broadcast_object_list(choice, src=0)
    return choice[0]


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


@dataclass
class Progress:
    """Where a run stands; carried by checkpoints and, for ``--init``, by a weights file's card."""
    step: int = 0
    images_seen: int = 0
    cpu_seconds: float = 0.0          # at the start of this invocation
    optimizer_since: int = 0          # the step the optimiser state was created (warm-up restarts there)


class Optimisers:
    """Adam for the rate–distortion loss (everything but the z prior's quantiles, gradient norm
    clipped at 1) and CompressAI's auxiliary Adam for the quantiles, whose loss is local to them."""

    def __init__(self, model: torch.nn.Module, lr: float):
        named = list(model.named_parameters())
        self.main_params = [p for n, p in named if not n.endswith(".quantiles")]
        self.aux_params = [p for n, p in named if n.endswith(".quantiles")]
        self.main = torch.optim.Adam(self.main_params, lr=lr, fused=True)     # fused: ~1/3 of a CPU step otherwise
        self.aux = torch.optim.Adam(self.aux_params, lr=1e-3)
        self.z_prior = model.entropy_bottleneck

    def set_lr(self, lr: float) -> None:
        for group in self.main.param_groups:
            group["lr"] = lr

    def step(self, loss: torch.Tensor, world: int) -> None:
        self.main.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.main_params, 1.0)
        self.main.step()
        self.aux.zero_grad(set_to_none=True)
        self.z_prior.loss().backward()
        if world > 1:               # the quantiles are not in DDP's graph: average their gradients here
            for p in self.aux_params:
                torch.distributed.all_reduce(p.grad)
                p.grad /= world
        self.aux.step()

    def state_dict(self) -> dict:
        return {"optimizer": self.main.state_dict(), "aux_optimizer": self.aux.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state["optimizer"])
        self.aux.load_state_dict(state["aux_optimizer"])


class WeightAverage:
    """An exponential moving average of the model's floating-point parameters and buffers, kept
    beside the trunk (which it never changes) and saved in its checkpoints: at a constant learning
    rate the average sits nearer the loss valley's floor than the iterate does, so it is the
    candidate to export (``ssic train --export DIR --ema``) when a paired probe says it is better.
    A run resumed from a checkpoint without one starts it from the current weights."""

    def __init__(self, model: torch.nn.Module, decay: float, saved: dict | None = None):
        self.decay = decay
        source = saved if saved is not None else model.state_dict()
        self.state = {k: v.detach().clone().float() for k, v in source.items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.state:
                self.state[k].lerp_(v.float(), 1.0 - self.decay)


class MeanLog:
    """Means of the step figures over every ``every`` steps, one JSON line each (rank 0 only)."""
    FIGURES = ("loss", "bpp", "bpp_z", "psnr")

    def __init__(self, path: Path | None, every: int):
        self.file = open(path, "a") if path else None
        self.every = every
        self._reset()

    def _reset(self) -> None:
        self.sums, self.n = dict.fromkeys(self.FIGURES, 0.0), 0

    def add(self, step: int, figures: dict, **head) -> None:
        for k in self.FIGURES:
            self.sums[k] += figures[k]
        self.n += 1
        if step % self.every == 0 and self.file:
            rec = {"step": step, **head, **{k: round(v / self.n, 4) for k, v in self.sums.items()}}
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()
            self._reset()

    def close(self) -> None:
        if self.file:
            self.file.close()


def run(opt: TrainOptions) -> dict:
    torch.set_flush_denormal(True)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    rank, world = _distributed()
    torch.manual_seed(opt.seed + 1000 * rank)      # weights, noise and crops repeat with --seed (a resume restores its own)
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    files = list_images(opt.data)                 # before anything is written: a bad --data leaves no run folder
    precision, why = _agreed_precision(opt.precision, device, rank, world)
    _log(rank, f"precision {precision} ({why})")
    opt.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = opt.out / "last.pt"

    model = build_model(opt.model_id).to(device)
    optimisers = Optimisers(model, opt.lr)
    rng = np.random.default_rng(opt.seed + 1000 * rank)
    progress, saved_average = _restore(model, optimisers, opt, ckpt_path, rng, rank, device)
    average = WeightAverage(model, opt.ema_decay, saved_average) if opt.ema_decay and rank == 0 else None
    net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    sampler = CropSampler(files, opt.crop, rng)
    stopper = Stopper()
    log = MeanLog(opt.out / "log.jsonl" if rank == 0 else None, opt.log_every)
    start = last_ckpt = last_eval = time.time()
    cpu_start = time.process_time()
    bar = _progress(opt.progress and rank == 0)
    step, images_seen = progress.step, progress.images_seen

    def checkpoint(cpu: float) -> None:
        # Collective under DDP (every rank's RNG states are gathered), so all ranks call it at once.
        numpy_rngs, torch_rngs = _gather(world, rng.bit_generator.state), _gather(world, torch.get_rng_state())
        if rank == 0:
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), **optimisers.state_dict(), "step": step, "images_seen": images_seen,
                **({"ema": average.state, "ema_decay": average.decay} if average else {}),
                "cpu_seconds": cpu, "optimizer_since": progress.optimizer_since,
                "numpy_rng": numpy_rngs, "torch_rng": torch_rngs,
                "model_id": opt.model_id, "options": {k: str(v) for k, v in asdict(opt).items()},
            })

    while True:
        # Every decision of the step (stop, checkpoint, lr) is taken from numbers all ranks agree on.
        local_stop = (stopper.stop or step >= opt.max_steps or time.time() - start >= opt.max_hours * 3600)
        spent, stop, checkpoint_due = _agree(world, time.process_time() - cpu_start, local_stop,
                                             rank == 0 and time.time() - last_ckpt > opt.checkpoint_minutes * 60)
        cpu = progress.cpu_seconds + spent
        if stop or cpu >= opt.max_cpu_hours * 3600:
            break
        if checkpoint_due:
            checkpoint(cpu)
            last_ckpt = time.time()
        lr = lr_at(step, opt, progress.optimizer_since, cpu)
        optimisers.set_lr(lr)
        figures = train_step(net, optimisers, sampler, rng, opt, precision, device, world)
        if average:
            average.update(model)
        step += 1
        images_seen += opt.batch * world
        bar(step, figures["loss"], figures["bpp"], figures["psnr"])
        log.add(step, figures, images=images_seen, time=round(time.time() - start, 1), cpu_s=round(cpu, 1), lr=lr)
        if opt.eval_dir and rank == 0 and time.time() - last_eval > opt.eval_minutes * 60:
            _periodic_eval(model, opt, step, images_seen, log.file)
            last_eval = time.time()
    checkpoint(cpu)
    log.close()
    _log(rank, f"stopped at step {step} ({images_seen} images, {cpu / 3600:.2f} CPU-hours); checkpoint {ckpt_path}")
    return {"step": step, "images_seen": images_seen, "cpu_hours": cpu / 3600}


def train_step(net, optimisers: Optimisers, sampler: CropSampler, rng: np.random.Generator,
               opt: TrainOptions, precision: str, device: torch.device, world: int) -> dict:
    """One optimisation step on a fresh batch: crops, group masks and qualities drawn from ``rng``
    (in that order, which checkpoints rely on to resume the same stream). Returns its figures."""
    x = sampler.batch(opt.batch).to(device)
    keys, block = random_masks(opt.batch, opt.crop, rng, opt.single_group_fraction)
    quality = torch.from_numpy(rng.uniform(em.QUALITY_MIN, em.QUALITY_MAX, opt.batch)).float().to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = net(x, keys.to(device), block, quality, opt.rate_proxy)
    loss, bpp, psnr = rd_loss(out, x, quality, opt.quality_balance)
    optimisers.step(loss, world)
    return {"loss": loss.item(), "bpp": bpp.item(), "bpp_z": hyper_bpp(out).item(), "psnr": psnr.item()}


def _restore(model, optimisers: Optimisers, opt: TrainOptions, ckpt_path: Path, rng: np.random.Generator,
             rank: int, device: torch.device) -> tuple[Progress, dict | None]:
    """Resume from the run's checkpoint, else start from ``--init`` weights, else from scratch;
    also returns the checkpoint's weight average, if it has one."""
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get("model_id", opt.model_id) != opt.model_id:
            raise SsicError(f"{ckpt_path} holds a {state['model_id']} model, not {opt.model_id}; "
                            f"pass --model {state['model_id']} or start a new run folder")
        model.load_state_dict(state["model"])
        optimisers.load_state_dict(state)
        rng.bit_generator.state = _rank_state(state["numpy_rng"], rank, rng.bit_generator.state)
        torch.set_rng_state(_rank_state(state["torch_rng"], rank, torch.get_rng_state()))
        _log(rank, f"resumed from {ckpt_path} at step {state['step']} ({state['images_seen']} images)")
        progress = Progress(state["step"], state["images_seen"], state["cpu_seconds"], state.get("optimizer_since", 0))
        return progress, state.get("ema")
    if opt.init:
        step, images_seen, cpu_seconds = _init_from_weights(model, opt.init, opt.model_id)
        _log(rank, f"started from {opt.init} (step {step}, {images_seen} images; optimiser state is new)")
        return Progress(step, images_seen, cpu_seconds, optimizer_since=step), None
    return Progress(), None


def _init_from_weights(model, path: Path, model_id: str) -> tuple[int, int, float]:
    """Load a shipped weights file (e.g. to continue a campaign in a new place); keeps its step /
    image / CPU-time accounting from the card. Weights of another architecture are accepted only
    when every parameter matches in name and shape (an architecture that differs only by
    parameter-free parts, such as fixed Haar shortcuts, can warm-start from it); anything else is
    refused rather than half loaded."""
    from .weights import read_weights_file
    blob = read_weights_file(path)
    # The full stored state, the z prior's density included: a coding-only load keeps just its
    # frozen tables, and a density started afresh under trained transforms never came back (a
    # campaign stretch begun that way paid ~0.13 bpp more for z on every image after 3.8 CPU-hours).
    # The frozen coding tables (_quantized_cdf …) are rebuilt at export; a training model has none.
    frozen = ("entropy_bottleneck._quantized_cdf", "entropy_bottleneck._offset", "entropy_bottleneck._cdf_length")
    state = {k: v for k, v in blob["state_dict"].items() if k not in frozen}
    if not _same_parameters(model.state_dict(), state, frozen):
        raise SsicError(f"{path} holds {blob['model_id']} weights, whose parameters differ from "
                        f"{model_id}'s; pass --model {blob['model_id']}")
    model.load_state_dict(state, strict=False)
    card = blob.get("card", {})
    return int(card.get("steps", 0)), int(card.get("images_seen", 0)), float(card.get("cpu_hours", 0.0)) * 3600


def _same_parameters(ours: dict, theirs: dict, ignored: tuple[str, ...]) -> bool:
    """Every tensor of ``theirs`` fits one of ``ours`` and none of ours (but ``ignored``) is
    missing: nothing is half loaded, nothing is left at its initial value."""
    if any(k not in ours or ours[k].shape != v.shape for k, v in theirs.items()):
        return False
    return all(k in theirs for k in ours if k not in ignored)


def _periodic_eval(model, opt: TrainOptions, step: int, images_seen: int, log_file) -> None:
    """Real bitstreams on a few eval images; failures are logged, never fatal to training."""
    try:
        from .evaluate import evaluate_model
        was_training = model.training
        result = evaluate_model(model, opt.model_id, list_images(opt.eval_dir)[:opt.eval_limit], opt.eval_qualities)
        model.train(was_training)
        rec = {"step": step, "images": images_seen, "eval": result["summary"]}
    except Exception as exc:  # noqa: BLE001 - evaluation must not kill a long run
        rec = {"step": step, "eval_error": repr(exc)}
    if log_file:
        log_file.write(json.dumps(rec) + "\n")
        log_file.flush()


def _progress(enabled: bool):
    if not enabled:
        return lambda *a: None
    from tqdm import tqdm
    bar = tqdm(unit="step", dynamic_ncols=True, file=sys.stderr, mininterval=5)

    def update(step, loss, bpp, psnr):
        bar.update(1)
        bar.set_postfix(step=step, loss=f"{loss:.3f}", bpp=f"{bpp:.3f}", psnr=f"{psnr:.2f}", refresh=False)
    return update


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)
