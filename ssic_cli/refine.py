"""Encoder-side latent refinement: ``ssic encode --effort N``.

The analysis transform g_a is an amortised guess of the latent that minimises rate + λ·distortion
for *this* image; a few gradient steps on the latent itself close part of that gap (Campos et
al., "Content adaptive optimization for neural image compression", CVPRW 2019; Yang et al.,
"Improving inference for neural image compression", NeurIPS 2020). Only the encoder changes:
the file format, the decoder and its tables are untouched, so a refined file decodes anywhere an
unrefined one does, and each group still decodes from its own section alone (independence is a
property of the decoder, which never sees how its symbols were chosen).

What is optimised: the scaled latent y_s = y·gain(q) of one group, on the crop the decoder
decodes it on, under its coded hyper latent (z is coded from g_a's y first, so the hyper
features stay fixed). The loss is the training loss of quality q — λ(q)·255²·MSE over the
group's shown pixels + bits of ŷ per pixel — through the float ChARM path of training.
Rounding is relaxed by stochastic Gumbel annealing (SGA, Yang et al.): each latent becomes a
soft mix of its floor and ceiling, sampled with odds that sharpen as the temperature falls. Measured on a Kodak crop (README): straight-through
rounding *raises* the loss under Adam (the gradient at the integers says little), the training
proxy (uniform noise) lowers it ~0.7 % and then diverges, SGA lowers it steadily. Every
iterate is scored with hard rounding, and the best one met is what gets coded.
"""
from __future__ import annotations

import math

import torch

from .model import entropy as em
from .model.layers import PAD_KEY
from .model.ssic import SSICModel
from .model.transforms import keys_at_scale, upsample_parent

# Adam step on y_s, in quantisation steps, and the SGA temperature schedule (Yang et al.'s
# form, τ = 0.5·e^(−ct) floored, with c scaled to the few dozen steps a CPU can afford).
LEARNING_RATE = 0.02
LEARNING_RATE_END = 0.02   # decayed geometrically to over the steps; decay measured no better (README)
TAU_START, TAU_END = 0.5, 0.1
SCORE_EVERY = 8       # hard-rounded scoring of the iterates costs a forward pass; not every step


def hyper_features(model: SSICModel, z_int: torch.Tensor, in_g: torch.Tensor) -> torch.Tensor:
    """The float hyper features (training path) of one group's coded ẑ − median on its crop."""
    keys16 = torch.where(in_g, 0, PAD_KEY)
    return model.h_s(upsample_parent(z_int.float()) * in_g.unsqueeze(-1), keys16)


def soft_round(v: torch.Tensor, tau: float, rng: torch.Generator) -> torch.Tensor:
    """SGA: floor(v) + a relaxed Bernoulli choice of the ceiling (Gumbel-softmax), whose odds
    follow the distance to either integer (−atanh of it) sharpened by 1/τ."""
    floor = torch.floor(v)
    r = (v - floor).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)], dim=-1) / tau
    uniform = torch.rand(logits.shape, generator=rng).clamp(1e-10, 1 - 1e-7)
    return floor + torch.softmax(logits - torch.log(-torch.log(uniform)), dim=-1)[..., 1]


def rate_bits(model: SSICModel, y_s: torch.Tensor, hyper: torch.Tensor, gain: torch.Tensor,
              valid: torch.Tensor, tau: float = 0.0, rng: "torch.Generator | None" = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits of the symbols, ŷ) through the float ChARM chain of training; gain (M,) is the
    coded (fixed-point) gain of the quality. τ = 0: hard rounding (what the coder does); τ > 0:
    SGA. The same symbols are counted and reconstructed, unlike training's noise."""
    def rounding(y_s_i: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        symbols = soft_round(y_s_i - mu, tau, rng) if tau else torch.round(y_s_i - mu)
        return symbols, symbols

    y_hat, bits = model.latent_chain(y_s, hyper, gain, valid, rounding)
    return bits.sum(), y_hat


def refine_group(model: SSICModel, x: torch.Tensor, keys: torch.Tensor, block_size: int, y_s: torch.Tensor,
                 z_int: torch.Tensor, quality: float, gain: torch.Tensor, steps: int, shown: torch.Tensor
                 ) -> torch.Tensor:
    """``steps`` Adam steps on the scaled latent y_s of one group on its decoding crop; returns the
    scored y_s of lowest loss (g_a's own is scored first, so refinement never raises the loss it
    measures), zero outside the group, shape (1, h/16, w/16, M).

    Everything is the group's own, cropped as the decoder crops it: x (1, h, w, 3) in [0, 1],
    keys its block keys (0 in the group, PAD_KEY elsewhere), z_int its coded ẑ − median, shown
    (1, h, w) its pixels inside the image. Other groups' pixels and latents never enter, so a
    group's section still does not change when they do (invariant 1 of DESIGN.md).
    """
    in_g = keys_at_scale(keys, block_size, 16) == 0
    inside = in_g.unsqueeze(-1).to(y_s.dtype)
    pixels = max(1, int(shown.sum()))
    lam255 = float(em.quality_lambda(torch.tensor([quality]))) * 255.0 ** 2
    weight = shown.unsqueeze(-1).to(x.dtype) / (3 * pixels)          # mean over the shown pixels
    with torch.no_grad():
        hyper = hyper_features(model, z_int, in_g)
    y_s = (y_s * inside).detach().requires_grad_(True)
    opt = torch.optim.Adam([y_s], lr=LEARNING_RATE)
    decay = math.log(TAU_START / TAU_END) / max(1, steps - 1)
    rng = torch.Generator().manual_seed(0)        # the same image and settings give the same file
    best, best_loss = y_s.detach().clone(), float("inf")

    def loss_at(tau: float) -> torch.Tensor:
        bits, y_hat = rate_bits(model, y_s * inside, hyper, gain, in_g.unsqueeze(-1), tau, rng)
        x_hat = model.g_s(y_hat * inside, keys, block_size)
        return lam255 * (weight * (x_hat - x) ** 2).sum() + bits / pixels

    frozen = [p.requires_grad_(False) for p in model.parameters()]
    try:
        for step in range(steps + 1):
            if step % SCORE_EVERY == 0 or step == steps:
                with torch.no_grad():
                    scored = float(loss_at(0.0))         # the loss the coder will get
                if scored < best_loss:
                    best, best_loss = y_s.detach().clone(), scored
            if step == steps:
                break
            for group in opt.param_groups:
                group["lr"] = LEARNING_RATE * (LEARNING_RATE_END / LEARNING_RATE) ** (step / max(1, steps - 1))
            loss = loss_at(TAU_START * math.exp(-decay * step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return best * inside
