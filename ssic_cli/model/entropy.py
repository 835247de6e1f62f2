"""Entropy-model pieces shared by training and coding: the scale table, the mean grid, the
Gaussian likelihood of the latents, and the quality → (gain, λ) map.

Only integers cross the encoder/decoder boundary: a latent is coded as ``round(y − μ̂)`` with
mean 0 and the std ``SCALE_TABLE[index]``, where ``μ̂`` is μ rounded to ``MEAN_GRID`` and
``index`` comes from ``scale_index``. Both sides compute them from the same tensors.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
# Decimal literals parse to the same doubles on every machine, unlike exp() results, so the
# table is rounded to 6 significant digits before use.
SCALE_TABLE = np.array(
    [float(f"{math.exp(v):.6g}") for v in np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS)],
    dtype=np.float64,
)
# Boundaries between neighbouring table entries (geometric means), used to pick an index.
_SCALE_BOUNDS = torch.tensor(np.sqrt(SCALE_TABLE[:-1] * SCALE_TABLE[1:]), dtype=torch.float32)
MEAN_GRID = 64.0          # means are rounded to multiples of 1/64 of a quantisation step
SYMBOL_LIMIT = 4095       # coded symbols are clipped to [-4095, 4095]

# λ of the 8 anchor qualities (CompressAI's MSE ladder), loss = λ·255²·MSE + bpp.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
QUALITY_MIN, QUALITY_MAX = 1.0, float(len(LAMBDAS))


def scale_index(scales: torch.Tensor) -> torch.Tensor:
    """Index into ``SCALE_TABLE`` of the entry nearest (in log) to each scale; int64."""
    return torch.bucketize(scales.float().contiguous(), _SCALE_BOUNDS.to(scales.device))


def round_to_grid(mu: torch.Tensor) -> torch.Tensor:
    return torch.round(mu * MEAN_GRID) / MEAN_GRID


def quality_weights(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For qualities in [1, 8]: (lower anchor index, upper anchor index, fraction t)."""
    q = quality.clamp(QUALITY_MIN, QUALITY_MAX) - 1.0
    lo = q.floor().long().clamp(max=len(LAMBDAS) - 2)
    return lo, lo + 1, q - lo.to(q.dtype)


def quality_lambda(quality: torch.Tensor) -> torch.Tensor:
    """λ for (fractional) qualities, log-linear between the anchors."""
    lo, hi, t = quality_weights(quality)
    logl = torch.log(torch.tensor(LAMBDAS, dtype=torch.float32, device=quality.device))
    return torch.exp(logl[lo] * (1 - t) + logl[hi] * t)


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor, bound: float = 1e-9) -> torch.Tensor:
    """P(v) of a unit-width bin of a zero-mean Gaussian, with a floor so log2 stays finite."""
    scales = scales.clamp(min=SCALE_MIN)
    v = values.abs()
    upper = torch.special.ndtr((0.5 - v) / scales)
    lower = torch.special.ndtr((-0.5 - v) / scales)
    return (upper - lower).clamp(min=bound)


def bits(likelihoods: torch.Tensor) -> torch.Tensor:
    return -torch.log2(likelihoods).sum()
