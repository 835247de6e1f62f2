"""Encoder-side refinement of a group's latents: ``ssic encode --effort LEVEL``.

The analysis transforms are amortised guesses of the latents that minimise rate + λ·distortion
for *this* image; gradient steps on the latents themselves close part of that gap (Campos et
al., CVPRW 2019; Yang, Bamler & Mandt, "Improving inference for neural image compression",
NeurIPS 2020). Only the encoder changes: the file format, the decoder and its tables are
untouched, so a refined file decodes anywhere an unrefined one does, and each group still decodes
from its own section alone (independence is a property of the decoder, which never sees how its
symbols were chosen).

What is optimised, per group on the crop its decoder decodes it on: the scaled latent
y_s = y·gain(q) and (from the levels that say so) the hyper latent z − median together — z sets
the entropy parameters of y, so moving it can buy more than moving y alone. The loss is the
training loss of quality q: λ(q)·255²·MSE over the group's shown pixels + the bits of ŷ (float
ChARM path) and of ẑ (the coded integer tables, linearly interpolated between integers) per
pixel. Rounding is relaxed by stochastic Gumbel annealing (SGA, Yang et al.): each latent becomes
a soft mix of its floor and ceiling, sampled with odds that sharpen as the temperature falls.
Every few steps the iterate is scored with hard rounding, and the best one met is what the
caller codes — through the model's coding contract (``compress_group``), which re-derives every
integer table from the chosen ẑ exactly as the decoder will.

The effort *levels* 0–9 (cjxl's convention) name step counts; ``EFFORT_LEVELS`` is the one place
they are defined, and docs/effort.md holds their measured cost and gain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .model import entropy as em
from .model.layers import PAD_KEY
from .model.ssic import SSICModel
from .model.transforms import keys_at_scale, touched, upsample_parent


@dataclass(frozen=True)
class Effort:
    """What one effort level does: ``steps`` Adam steps, on y alone or on y and z (``hyper``)."""

    level: int
    steps: int
    hyper: bool = True


# Level -> gradient steps per group. 0 is the plain encoder (the analysis transforms' latents).
# Refinement pays from about 8 steps on (fewer rarely beat the plain latents: SGA's early
# iterates are noisy), so the ladder starts there and grows to 256 for archival encodes.
# docs/effort.md has what each level costs in seconds per megapixel and buys in bytes.
EFFORT_LEVELS = tuple(Effort(level, steps) for level, steps in
                      enumerate((0, 4, 8, 12, 16, 24, 32, 64, 128, 256)))
EFFORT_MAX = len(EFFORT_LEVELS) - 1


def effort_level(level: int) -> Effort:
    if not 0 <= level <= EFFORT_MAX:
        raise ValueError(f"effort must be between 0 and {EFFORT_MAX}, got {level}")
    return EFFORT_LEVELS[level]


@dataclass(frozen=True)
class Schedule:
    """Adam's step (in quantisation steps of the latents) and the SGA temperature τ, both annealed
    geometrically over the run (Yang et al.'s form of τ). The defaults won a probe on Kodak crops
    (``research.probes.effort_tune``, docs/effort.md)."""

    lr: float = 0.05
    lr_end: float = 0.01
    tau_start: float = 0.5
    tau_end: float = 0.05
    hyper_lr: float = 1.0       # z's step relative to y's
    score_every: int = 8        # hard-rounded scoring costs a forward pass: not every step

    def at(self, step: int, steps: int) -> tuple[float, float]:
        t = step / max(1, steps - 1)
        return self.lr * (self.lr_end / self.lr) ** t, self.tau_start * (self.tau_end / self.tau_start) ** t


SCHEDULE = Schedule()


@dataclass(frozen=True)
class GroupTarget:
    """One group as its decoder sees it, cropped: x (1, h, w, 3) in [0, 1], ``keys`` its block
    keys (0 in the group, PAD_KEY elsewhere), ``shown`` (1, h, w) its pixels inside the image."""

    x: torch.Tensor
    keys: torch.Tensor
    block_size: int
    shown: torch.Tensor
    quality: float
    gain: torch.Tensor          # (M,) the coded (fixed-point) gain of the quality

    @property
    def in_g(self) -> torch.Tensor:
        return keys_at_scale(self.keys, self.block_size, 16) == 0


def soft_round(v: torch.Tensor, tau: float, rng: torch.Generator) -> torch.Tensor:
    """SGA: floor(v) + a relaxed Bernoulli choice of the ceiling (Gumbel-softmax), whose odds
    follow the distance to either integer (−atanh of it) sharpened by 1/τ; τ = 0: round."""
    if not tau:
        return torch.round(v)
    floor = torch.floor(v)
    r = (v - floor).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)], dim=-1) / tau
    uniform = torch.rand(logits.shape, generator=rng).clamp(1e-10, 1 - 1e-7)
    return floor + torch.softmax(logits - torch.log(-torch.log(uniform)), dim=-1)[..., 1]


class HyperRate:
    """Bits of ẑ − median under the coded categorical tables, piecewise linear between integers
    (exact at them), so a relaxed ẑ has a rate and a gradient."""

    def __init__(self, model: SSICModel):
        tables = model.hyper_tables()
        width = max(len(p) for p in tables.pmfs) + 1
        bits = torch.full((len(tables.pmfs), width), 64.0)
        for c, pmf in enumerate(tables.pmfs):
            p = torch.from_numpy(pmf).clamp_min(1e-12)
            bits[c, : len(p)] = -torch.log2(p / p.sum()).float()
        self.bits = bits
        self.lo = torch.from_numpy(tables.offsets).float()
        self.hi = self.lo + torch.tensor([len(p) - 1 for p in tables.pmfs], dtype=torch.float32)

    def clamp(self, z: torch.Tensor) -> torch.Tensor:
        """z − median kept inside the tables (the coder clips there too)."""
        return torch.maximum(torch.minimum(z, self.hi), self.lo)

    def __call__(self, z: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Total bits of z (1, h, w, Z) at the positions ``where`` (1, h, w)."""
        s = self.clamp(z)[where] - self.lo                 # (P, Z) symbol index, relaxed
        s0 = torch.floor(s).detach().clamp(max=self.bits.shape[1] - 2)
        r = s - s0
        idx = s0.long().T                                  # (Z, P)
        b0 = torch.gather(self.bits, 1, idx).T
        b1 = torch.gather(self.bits, 1, idx + 1).T
        return ((1 - r) * b0 + r * b1).sum()


def hyper_features(model: SSICModel, z: torch.Tensor, in_g: torch.Tensor) -> torch.Tensor:
    """The float hyper features (training path) of one group's ẑ − median on its crop."""
    keys16 = torch.where(in_g, 0, PAD_KEY)
    return model.h_s(upsample_parent(z.float()) * in_g.unsqueeze(-1), keys16)


def rate_bits(model: SSICModel, y_s: torch.Tensor, hyper: torch.Tensor, gain: torch.Tensor,
              valid: torch.Tensor, tau: float = 0.0, rng: Optional[torch.Generator] = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits of y's symbols, ŷ) through the float ChARM chain of training; τ = 0: hard rounding
    (what the coder does); τ > 0: SGA. The same symbols are counted and reconstructed, unlike
    training's noise."""
    def rounding(y_s_i: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        symbols = soft_round(y_s_i - mu, tau, rng)
        return symbols, symbols

    y_hat, bits = model.latent_chain(y_s, hyper, gain, valid, rounding)
    return bits.sum(), y_hat


class _Objective:
    """The loss of one group at one iterate: λ·255²·MSE over shown pixels + bits per pixel."""

    def __init__(self, model: SSICModel, target: GroupTarget):
        self.model, self.target = model, target
        self.in_g = target.in_g
        self.inside = self.in_g.unsqueeze(-1).float()
        self.where_z = touched(self.in_g)
        self.pixels = max(1, int(target.shown.sum()))
        self.lam255 = float(em.quality_lambda(torch.tensor([target.quality]))) * 255.0 ** 2
        self.weight = target.shown.unsqueeze(-1).float() / (3 * self.pixels)
        self.hyper_rate = HyperRate(model)

    def __call__(self, y_s: torch.Tensor, z: torch.Tensor, tau: float, rng: torch.Generator,
                 fixed_hyper: Optional[torch.Tensor] = None) -> torch.Tensor:
        if fixed_hyper is None:
            z_hat = soft_round(z, tau, rng)
            bits_z, hyper = self.hyper_rate(z_hat, self.where_z), hyper_features(self.model, z_hat, self.in_g)
        else:
            bits_z, hyper = 0.0, fixed_hyper
        bits_y, y_hat = rate_bits(self.model, y_s * self.inside, hyper, self.target.gain,
                                  self.in_g.unsqueeze(-1), tau, rng)
        x_hat = self.model.g_s(y_hat * self.inside, self.target.keys, self.target.block_size)
        distortion = (self.weight * (x_hat - self.target.x) ** 2).sum()
        return self.lam255 * distortion + (bits_y + bits_z) / self.pixels


def refine_group(model: SSICModel, target: GroupTarget, y_s: torch.Tensor, z: torch.Tensor,
                 effort: Effort, schedule: Optional[Schedule] = None,
                 progress: Callable[[int], None] = lambda steps: None) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine one group's scaled latent y_s (1, h/16, w/16, M) and hyper latent z (1, h/32, w/32, Z,
    h_a's float output) for ``effort.steps`` steps; returns the y_s and the coded ẑ − median
    (int64) of lowest hard-rounded loss met (the analysis transforms' own rounding is scored first,
    so refinement never raises the loss it measures), zero outside the group. ``progress(n)`` is
    told after each n steps.

    Only the group's own pixels and latents enter (``target``), so a group's section still does
    not change when other groups do (invariant 1 of DESIGN.md). Seeded: the same input gives the
    same result.
    """
    schedule = schedule or SCHEDULE
    objective = _Objective(model, target)
    inside, where_z = objective.inside, objective.where_z.unsqueeze(-1)
    y_var = (y_s * inside).detach().clone().requires_grad_(True)
    # z starts where h_a put it, not at its rounding: SGA's relaxation has no gradient at integers.
    centred = objective.hyper_rate.clamp(z.float() - torch.from_numpy(model.hyper_tables().medians))
    z_var = (centred * where_z).detach().clone().requires_grad_(effort.hyper)
    fixed_hyper = None
    if not effort.hyper:
        with torch.no_grad():
            fixed_hyper = hyper_features(model, torch.round(z_var), objective.in_g)
    groups = [{"params": [y_var], "scale": 1.0}]
    if effort.hyper:
        groups.append({"params": [z_var], "scale": schedule.hyper_lr})
    opt = torch.optim.Adam(groups, lr=schedule.lr)
    rng = torch.Generator().manual_seed(0)
    best = (y_var.detach().clone(), z_var.detach().clone())
    best_loss = math.inf
    frozen = [p.requires_grad_(False) for p in model.parameters()]
    try:
        for step in range(effort.steps + 1):
            if step % schedule.score_every == 0 or step == effort.steps:
                with torch.no_grad():
                    scored = float(objective(y_var, z_var, 0.0, rng, fixed_hyper))
                if scored < best_loss:
                    best, best_loss = (y_var.detach().clone(), z_var.detach().clone()), scored
            if step == effort.steps:
                break
            lr, tau = schedule.at(step, effort.steps)
            for group in opt.param_groups:
                group["lr"] = lr * group["scale"]
            loss = objective(y_var, z_var, tau, rng, fixed_hyper)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if effort.hyper:
                with torch.no_grad():
                    z_var.copy_(objective.hyper_rate.clamp(z_var) * where_z)
            progress(1)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    y_best, z_best = best
    return y_best * inside, (torch.round(z_best) * where_z).long()
