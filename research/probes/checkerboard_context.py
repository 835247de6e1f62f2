"""Probe: what a two-pass checkerboard spatial context inside each ChARM slice would save.

Today ŷ is coded slice by slice (ChARM): μ, σ of slice i come from the hyper features and the
slices before, with no spatial context inside a slice. The lever (He et al., CVPR 2021; ELIC,
CVPR 2022): code each slice in two passes — *anchors* ((row + col) even, absolute latent
coordinates) with today's μ, σ, then *non-anchors*, whose μ and log σ are corrected by a small
net that also sees the decoded anchors of the same slice through a masked k×k convolution. The
convolution reads only anchor positions of the same group (``anchor_taps``: other groups, the
canvas edge and non-anchors enter as zero), so group independence holds exactly.

What is measured, on the shipped weights frozen:

1. Cache, for ``--crops`` seeded 256² training crops at 2 random qualities in [1, 8] each, what
   the entropy model sees: y_s = y·gain, and per slice the baseline μ_s, σ_s of ChARM (read from
   ``SSICModel.latent_chain`` itself with hard rounding; hyper features from ``_train_hyper``
   with one group), all under ``torch.no_grad``.
2. Train a ``CheckerboardContext`` per arm (one IntMLP per slice, the codec's fixed-point layers
   with straight-through rounding, last layer zero: it starts as the baseline exactly). Input at
   a non-anchor: its own baseline μ, ln σ (unscaled, as the ChARM nets see ŷ) and ln gain, plus
   the anchor taps of the unscaled quantised residual ŷ − μ of the same slice. Output: Δμ (unscaled)
   and Δ ln σ, applied at non-anchors only. Loss: bits of the hard-rounded symbols
   round(y_s − μ̂') under N(0, σ') (straight-through), anchors' bits unchanged. Adam, a fixed
   budget of process CPU time per arm (one niced thread), the last third at lr/10. Arms: ``ctx5`` (5×5: 12 anchor taps), ``ctx3``
   (3×3: the 4 edge neighbours) and ``control`` (no taps: the same net re-fitting μ, σ from the
   centre alone, i.e. what the refit itself is worth without any spatial context).
3. Evaluate on the 24 Kodak images (full size, one group) at q 2, 5, 8: bits of y = Σ −log2 P of
   the hard-rounded symbols round(y_s − μ̂) (μ̂ on the coder's 1/64 grid) under the Gaussian,
   baseline vs each arm, with σ as is and snapped to the coder's scale table; bits of z from the
   entropy bottleneck's likelihood (``_train_hyper``). Later slices keep their baseline inputs
   (a corrected μ moves ŷ of a non-anchor by < 1 step; its effect on later slices is ignored).

Command that produced ``research/results/probes/checkerboard_context.{json,md}``::

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python -m research.probes.checkerboard_context \\
        --crops 600 --minutes 6 --arms ctx5,ctx3,control

Measured 2026-12-08 (1,200 cached samples, 6 CPU-minutes per arm; estimates match the weights
card's real whole-file bpp within 0.005): total bits −2.3 / −1.2 / −0.8 % at q 2 / 5 / 8 for the
3×3 arm, −1.9 / −0.9 / −0.5 % for 5×5 (fewer steps in the same budget), ±0.1 % for the control:
all of the gain is the spatial context. A lower bound: frozen model, budget-limited net.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from bench.common import SHARED
from ssic_cli import weights
from ssic_cli.model import entropy as em
from ssic_cli.model.intnet import IntMLP, fake_quant
from ssic_cli.model.ssic import RATE_PROXIES, SSICModel, build_model, ste_round
from ssic_cli.train import _init_from_weights
from ssic_cli.train_data import CropSampler, list_images

DATA = SHARED / "data"             # ../shared beside the repository, or $SSIC_SHARED
OUT = Path("research/results/probes/checkerboard_context")
_EDGE_KEY = -(2 ** 40)
_ACT = 256.0                      # the parameter path's fixed point (2^-8)


# ----- the masked convolution's input: anchors of the same group only --------------------------
def anchor_mask(h: int, w: int) -> torch.Tensor:
    """(h, w) bool: anchors are the positions with (row + col) even (absolute latent coordinates:
    crops start on the 1/32 grid, so every crop agrees with the canvas)."""
    return (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0


def anchor_offsets(kernel: int) -> list[tuple[int, int]]:
    """The taps of a k×k kernel that land on anchors when the centre is a non-anchor: odd
    (dy + dx). 3×3: the 4 edge neighbours; 5×5: 12."""
    r = kernel // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy + dx) % 2]


def anchor_taps(x: torch.Tensor, keys: torch.Tensor, kernel: int) -> torch.Tensor:
    """(N, H, W, C) -> (N, H, W, T·C): each position's anchor neighbours within k×k. Non-anchor
    values, neighbours of another group (key differs from the centre's) and positions beyond the
    edge all enter as zero, so a non-anchor's output depends on decoded anchors of its group only."""
    n, h, w, c = x.shape
    offsets = anchor_offsets(kernel)
    if not offsets:
        return x.new_zeros(n, h, w, 0)
    r = kernel // 2
    x = x * anchor_mask(h, w).to(x)[None, :, :, None]
    xp = F.pad(x.permute(0, 3, 1, 2), (r, r, r, r)).permute(0, 2, 3, 1)
    kp = F.pad(keys, (r, r, r, r), value=_EDGE_KEY)
    taps = []
    for dy, dx in offsets:
        same = (kp[:, r + dy:r + dy + h, r + dx:r + dx + w] == keys).unsqueeze(-1).to(x.dtype)
        taps.append(xp[:, r + dy:r + dy + h, r + dx:r + dx + w] * same)
    return torch.cat(taps, dim=-1)


class CheckerboardContext(nn.Module):
    """Per slice, an IntMLP from [μ, ln σ, ln gain of the centre (unscaled), anchor taps of the
    quantised residual ŷ − μ] to (Δμ, Δ ln σ) at non-anchors; zero last layer = the baseline."""

    def __init__(self, slices: int, ms: int, kernel: int, hidden: int = 64):
        super().__init__()
        self.kernel, self.ms, self.hidden = kernel, ms, hidden
        self.taps = len(anchor_offsets(kernel))
        self.nets = nn.ModuleList(IntMLP([(self.taps + 3) * ms, hidden, hidden, 2 * ms]) for _ in range(slices))
        for net in self.nets:
            nn.init.zeros_(net.layers[-1].weight)

    def forward(self, i: int, mu: torch.Tensor, sigma: torch.Tensor, gain: torch.Tensor,
                y_hat: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled-domain baseline μ, σ (N, H, W, ms), gain (N, 1, 1, ms), the slice's ŷ_s (only
        its anchors are read), keys (N, H, W) -> μ', σ' (non-anchors corrected)."""
        limit = 255.0
        residual = fake_quant((y_hat - mu) / gain, _ACT).clamp(-limit, limit)
        centre = [fake_quant(t, _ACT).clamp(-limit, limit) for t in
                  (mu / gain, torch.log(sigma / gain), torch.log(gain).expand_as(mu))]
        features = torch.cat([*centre, anchor_taps(residual, keys, self.kernel)], dim=-1)
        non_anchor = ~anchor_mask(*mu.shape[1:3])
        out = mu.new_zeros(*mu.shape[:3], 2 * self.ms)
        out[:, non_anchor] = self.nets[i](features[:, non_anchor])     # the net runs at non-anchors only
        d_mu, d_log_sigma = out.chunk(2, dim=-1)
        non_anchor = non_anchor[None, :, :, None]
        zero = torch.zeros((), dtype=mu.dtype)
        return (mu + torch.where(non_anchor, d_mu * gain, zero),
                sigma * torch.exp(torch.where(non_anchor, d_log_sigma, zero)))

    def macs_per_position(self) -> float:
        """Multiply-adds per latent position (all slices; anchors need none, so half a net each)."""
        sizes = [(self.taps + 3) * self.ms, self.hidden, self.hidden, 2 * self.ms]
        per_net = sum(a * b for a, b in zip(sizes, sizes[1:]))
        return 0.5 * per_net * len(self.nets)


# ----- the frozen model and what its entropy model sees ---------------------------------------------
def load_model() -> SSICModel:
    """The shipped weights with the z prior's density (training form: ``_train_hyper`` needs it)."""
    path = weights.default_weights_path()
    model_id = weights.read_weights_file(path)["model_id"]
    model = build_model(model_id)
    _init_from_weights(model, path, model_id)
    model.eval().requires_grad_(False)
    return model


@torch.no_grad()
def entropy_inputs(model: SSICModel, x: torch.Tensor, qualities: list[float]) -> tuple[list[dict], torch.Tensor]:
    """x (N, H, W, 3), one group -> per quality {"q", "y_s", "mu", "sigma" (N, H, W, M), "gain"
    (N, 1, 1, M)} with ChARM's baseline μ, σ of every slice, and bits of z (N,)."""
    keys = torch.zeros(x.shape[0], x.shape[1] // 16, x.shape[2] // 16, dtype=torch.long)
    y = model.g_a(x, keys, 16).float()
    hyper, bits_z = model._train_hyper(y, keys)
    valid = torch.ones(*keys.shape, 1, dtype=torch.bool)
    out = []
    for q in qualities:
        gain = model.gains(torch.full((x.shape[0],), float(q)))[:, None, None, :]
        recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
        slice_params = model.slice_params

        def spy(i, h, prev, g):
            recorded.append(slice_params(i, h, prev, g))
            return recorded[-1]

        model.slice_params = spy                    # read μ, σ off the model's own chain
        try:
            model.latent_chain(y * gain, hyper, gain, valid, RATE_PROXIES["rounded"])
        finally:
            del model.slice_params
        mu, sigma = (torch.cat(t, dim=-1) for t in zip(*recorded))
        out.append({"q": q, "y_s": y * gain, "mu": mu, "sigma": sigma, "gain": gain})
    return out, bits_z


def snap_to_table(sigma: torch.Tensor) -> torch.Tensor:
    """σ (scaled) -> the coder's scale-table entry nearest in log (what ``scale_index_fixed`` does)."""
    lo, hi = math.log(em.SCALE_MIN), math.log(em.SCALE_MAX)
    idx = torch.round((torch.log(sigma.clamp(min=1e-9)) - lo) / ((hi - lo) / (em.SCALE_LEVELS - 1)))
    return torch.from_numpy(em.SCALE_TABLE).to(sigma)[idx.clamp(0, em.SCALE_LEVELS - 1).long()]


def slice_bits(ctx: "CheckerboardContext | None", i: int, ms: int, s: dict, keys: torch.Tensor,
               snap: bool = False, rounding=ste_round) -> torch.Tensor:
    """Bits (N, H, W) of slice i's hard-rounded symbols, baseline (ctx None) or corrected."""
    sl = slice(i * ms, (i + 1) * ms)
    y_s, mu, sigma, gain = s["y_s"][..., sl], s["mu"][..., sl], s["sigma"][..., sl], s["gain"][..., sl]
    if ctx is not None:
        mu_hat = fake_quant(mu, em.MEAN_GRID)
        y_hat = torch.round(y_s - mu_hat) + mu_hat            # decoded anchors (before LRP)
        mu, sigma = ctx(i, mu, sigma, gain, y_hat, keys)
    symbols = rounding(y_s - fake_quant(mu, em.MEAN_GRID))
    return -torch.log2(em.gaussian_likelihood(symbols, snap_to_table(sigma) if snap else sigma)).sum(-1)


# ----- training ----------------------------------------------------------------------------------------
def cache_crops(model: SSICModel, crops: int, seed: int, chunk: int = 8) -> dict:
    """Baseline entropy inputs of ``crops`` seeded 256² crops, two qualities each in U[1, 8]."""
    rng = np.random.default_rng(seed)
    sampler = CropSampler(list_images(DATA / "train"), 256, rng)
    parts = []
    for start in range(0, crops, chunk):
        x = sampler.batch(min(chunk, crops - start)).permute(0, 2, 3, 1)
        for q in rng.uniform(1, 8, size=2):
            parts += entropy_inputs(model, x, [float(q)])[0]
    return {k: torch.cat([p[k] for p in parts]) for k in ("y_s", "mu", "sigma", "gain")}


def train(ctx: CheckerboardContext, cache: dict, minutes: float, seed: int, batch: int, lr: float) -> dict:
    """Adam on the bits of the non-anchors (anchors' bits do not change), for ``minutes`` of process
    CPU time, the last third at lr/10. Same batches for every arm (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(ctx.parameters(), lr=lr)
    n, h, w, _ = cache["y_s"].shape
    keys = torch.zeros(batch, h, w, dtype=torch.long)
    start, steps, log = time.process_time(), 0, []
    while (elapsed := time.process_time() - start) < minutes * 60:
        for group in opt.param_groups:
            group["lr"] = lr if elapsed < minutes * 40 else lr / 10
        pick = torch.randint(n, (batch,), generator=gen)
        s = {k: v[pick] for k, v in cache.items()}
        loss = sum(slice_bits(ctx, i, ctx.ms, s, keys).sum() for i in range(len(ctx.nets))) / (batch * h * w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if steps % 50 == 0:
            log.append(round(float(loss), 4))
    return {"steps": steps, "cpu_seconds": round(time.process_time() - start, 1), "loss_every_50": log}


# ----- Kodak evaluation ----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: SSICModel, arms: dict[str, CheckerboardContext], qualities: list[float]) -> dict:
    """Per quality: total bits over Kodak of y (baseline and each arm, σ as is and snapped) and of z."""
    ms = model.config.latent // model.config.slices
    totals = {q: {"z": 0.0, "pixels": 0, "y": {}, "y_table": {}} for q in qualities}
    for path in sorted((DATA / "kodak").glob("kodim*.png")):
        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)[None]
        per_q, bits_z = entropy_inputs(model, x, qualities)
        keys = torch.zeros(1, x.shape[1] // 16, x.shape[2] // 16, dtype=torch.long)
        for s in per_q:
            t = totals[s["q"]]
            t["z"] += float(bits_z.sum())
            t["pixels"] += x.shape[1] * x.shape[2]
            for name, ctx in {"baseline": None, **arms}.items():
                for key, snap in (("y", False), ("y_table", True)):
                    b = sum(float(slice_bits(ctx, i, ms, s, keys, snap, torch.round).sum())
                            for i in range(model.config.slices))
                    t[key][name] = t[key].get(name, 0.0) + b
    return totals


def summarise(totals: dict, arms: list[str]) -> dict:
    rows = {}
    for q, t in totals.items():
        base_y, z, px = t["y"]["baseline"], t["z"], t["pixels"]
        row = {"bpp_y_baseline": base_y / px, "bpp_z": z / px,
               "bpp_y_baseline_table": t["y_table"]["baseline"] / px}
        for a in arms:
            row[a] = {
                "y_bits_change_pct": 100 * (t["y"][a] / base_y - 1),
                "total_bits_change_pct": 100 * ((t["y"][a] + z) / (base_y + z) - 1),
                "y_bits_change_pct_table": 100 * (t["y_table"][a] / t["y_table"]["baseline"] - 1),
                "total_bits_change_pct_table": 100 * ((t["y_table"][a] + z) / (t["y_table"]["baseline"] + z) - 1),
            }
        rows[str(q)] = row
    return rows


def charm_macs(model: SSICModel) -> int:
    """Multiply-adds per latent position of today's ChARM (param + LRP nets, all slices)."""
    return sum(l.weight.numel() for nets in (model.param_nets, model.lrp_nets) for net in nets for l in net.layers)


def markdown(result: dict) -> str:
    arms = list(result["arms"])
    lines = ["# Checkerboard context probe (Kodak, 24 images, one group)", "",
             f"Shipped weights `{result['weights']}` frozen; y bits = −log2 P of the hard-rounded symbols "
             "(σ as is; in brackets σ snapped to the scale table). Change vs baseline ChARM.", "",
             "| q | bpp y | bpp z | " + " | ".join(f"{a}: Δy % | {a}: Δtotal %" for a in arms) + " |",
             "|---|---|---|" + "---|---|" * len(arms)]
    for q, row in result["kodak"].items():
        cells = [f"{row[a]['y_bits_change_pct']:+.2f} ({row[a]['y_bits_change_pct_table']:+.2f}) | "
                 f"{row[a]['total_bits_change_pct']:+.2f} ({row[a]['total_bits_change_pct_table']:+.2f})"
                 for a in arms]
        lines.append(f"| {q} | {row['bpp_y_baseline']:.4f} | {row['bpp_z']:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "| arm | kernel | params | MACs / latent position | training steps | CPU s |", "|---|---|---|---|---|---|"]
    for a, info in result["arms"].items():
        lines.append(f"| {a} | {info['kernel']}×{info['kernel']} | {info['params']} | {info['macs_per_position']:.0f} | "
                     f"{info['training']['steps']} | {info['training']['cpu_seconds']} |")
    lines += ["", f"Today's ChARM (param + LRP nets): {result['charm_macs_per_position']} MACs per latent position.",
              "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


ARM_KERNELS = {"ctx5": 5, "ctx3": 3, "control": 0}


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=600)
    ap.add_argument("--minutes", type=float, default=6.0, help="CPU minutes of training per arm")
    ap.add_argument("--arms", default="ctx5,ctx3,control")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--qualities", default="2,5,8")
    ap.add_argument("--out", type=Path, default=OUT.with_suffix(".json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = load_model()
    t0 = time.process_time()
    cache = cache_crops(model, args.crops, args.seed)
    print(f"cached {cache['y_s'].shape[0]} samples in {time.process_time() - t0:.0f} CPU s", flush=True)
    ms = model.config.latent // model.config.slices
    arms, info = {}, {}
    for name in args.arms.split(","):
        ctx = CheckerboardContext(model.config.slices, ms, ARM_KERNELS[name], args.hidden)
        log = train(ctx, cache, args.minutes, args.seed, args.batch, args.lr)
        print(name, log, flush=True)
        arms[name] = ctx.eval().requires_grad_(False)
        info[name] = {"kernel": ctx.kernel, "taps": ctx.taps, "hidden": args.hidden,
                      "params": sum(p.numel() for p in ctx.parameters()),
                      "macs_per_position": ctx.macs_per_position(), "training": log}
    del cache
    totals = evaluate(model, arms, [float(q) for q in args.qualities.split(",")])
    result = {"weights": weights.default_weights_id(), "crops": args.crops, "samples": 2 * args.crops,
              "seed": args.seed, "batch": args.batch, "lr": args.lr, "arms": info,
              "charm_macs_per_position": charm_macs(model), "kodak": summarise(totals, list(arms)),
              "command": "OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python -m research.probes.checkerboard_context "
                         + " ".join(argv if argv is not None else __import__("sys").argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
