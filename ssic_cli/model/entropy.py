"""Entropy-model pieces shared by training and coding: the scale table, the mean grid, the
Gaussian likelihood of the latents, and the quality → (gain, λ) map.

Only integers cross the encoder/decoder boundary: a latent is coded as ``round(y_s − μ̂)`` with
mean 0 and the std ``SCALE_TABLE[index]``, where ``μ̂`` is μ on the ``MEAN_GRID`` and ``index``
the scale-table entry. On the coding path both come from integer arithmetic only
(``FixedGains``, ``mean_on_grid``, ``scale_index_fixed``, fed by the integer networks of
``intnet``), so every machine derives the same tables from the same symbols.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..limits import QUALITY_MAX, QUALITY_MIN

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
# Decimal literals parse to the same doubles on every machine, unlike exp() results, so the
# table is rounded to 6 significant digits before use.
SCALE_TABLE = np.array(
    [float(f"{math.exp(v):.6g}") for v in np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS)],
    dtype=np.float64,
)
MEAN_GRID = 64.0          # means are rounded to multiples of 1/64 of a quantisation step
SYMBOL_LIMIT = 4095       # coded symbols are clipped to [-4095, 4095]

# λ of the 8 anchor qualities (CompressAI's MSE ladder), loss = λ·255²·MSE + bpp.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
assert len(LAMBDAS) == QUALITY_MAX, "one anchor per whole quality"


# Integer form of the scale table's log grid: ln(SCALE_MIN) in units of 2^-8 and the log step
# between entries in units of 2^-24 (literals, so no libm is involved on the coding path).
_LOG_SCALE_MIN_FIXED = -565           # round(ln 0.11 · 2^8)
_LOG_SCALE_STEP_FIXED = 2064517       # round((ln 256 − ln 0.11) / 63 · 2^24)
GAIN_FRAC = 16                        # gains are integers in units of 2^-16
_LN2 = 0.6931471805599453


def exact_exp(x: float) -> float:
    """exp(x) from IEEE-754 double +, −, ×, ÷ only (Python floats, no libm, no FMA): the same
    bits on every machine, unlike ``math.exp`` or a vectorised ``torch.exp``."""
    k = round(x / _LN2)
    r = x - k * _LN2
    term, total = 1.0, 1.0
    for n in range(1, 24):
        term = term * r / n
        total = total + term
    return total * 2.0 ** k


class FixedGains:
    """The per-channel gain of one quality as integers, derived identically on every machine.

    ``gain``: (M,) int64, gain · 2^16; ``log_gain``: (M,) int64, ln(gain) · 2^8. Computed from
    the float32 anchors of the weights and the float32 quality of the file with scalar double
    arithmetic only (log-linear interpolation, ``exact_exp``).
    """

    def __init__(self, log_gain_anchors: np.ndarray, quality: float):
        q = min(max(float(np.float32(quality)), QUALITY_MIN), QUALITY_MAX) - 1.0
        lo = min(int(math.floor(q)), len(LAMBDAS) - 2)
        t = q - lo
        anchors = np.asarray(log_gain_anchors, np.float32)
        logs = [float(a) * (1.0 - t) + float(b) * t for a, b in zip(anchors[lo].tolist(), anchors[lo + 1].tolist())]
        self.gain = torch.tensor([round(exact_exp(v) * 2.0 ** GAIN_FRAC) for v in logs], dtype=torch.int64)
        self.log_gain = torch.tensor([round(v * 256.0) for v in logs], dtype=torch.int64)

    def channels(self, sl: slice) -> "FixedGains":
        part = object.__new__(FixedGains)
        part.gain, part.log_gain = self.gain[sl], self.log_gain[sl]
        return part

    def real(self) -> torch.Tensor:
        """The gain as float32 (exact: an integer over 2^16), for the pixel path."""
        return (self.gain.double() / 2.0 ** GAIN_FRAC).float()


def mean_on_grid(mu_fixed: torch.Tensor, gains: FixedGains) -> torch.Tensor:
    """μ̂ in units of 1/MEAN_GRID of a quantisation step (int64) from μ (unscaled, units of 2^-8):
    round(μ · gain · 64), in integers."""
    shift = 8 + GAIN_FRAC - 6                      # 2^-8 · 2^-16 -> 2^-6 (MEAN_GRID = 64)
    prod = mu_fixed.long() * gains.gain
    return torch.div(prod + (1 << (shift - 1)), 1 << shift, rounding_mode="floor")


def scale_index_fixed(log_sigma_fixed: torch.Tensor, gains: FixedGains) -> torch.Tensor:
    """Scale-table index (int64) of σ · gain, from ln σ in units of 2^-8: the nearest entry of
    the table's log grid, in integers."""
    t = (log_sigma_fixed.long() + gains.log_gain - _LOG_SCALE_MIN_FIXED) << 16      # units 2^-24
    idx = torch.div(t + _LOG_SCALE_STEP_FIXED // 2, _LOG_SCALE_STEP_FIXED, rounding_mode="floor")
    return idx.clamp(0, SCALE_LEVELS - 1)


def unscale_fixed(q64: torch.Tensor, gains: FixedGains) -> torch.Tensor:
    """ŷ_s (units of 1/64 step, int64) -> ŷ = ŷ_s / gain in units of 2^-8 (int64, rounded)."""
    num = q64 << (GAIN_FRAC + 2)                   # (q/64)·2^16/G · 2^8 = q·2^18/G
    return torch.div(num + gains.gain // 2, gains.gain, rounding_mode="floor")


def quality_weights(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For qualities in [1, 8]: (lower anchor index, upper anchor index, fraction t)."""
    q = quality.clamp(QUALITY_MIN, QUALITY_MAX) - 1.0
    lo = q.floor().long().clamp(max=len(LAMBDAS) - 2)
    return lo, lo + 1, q - lo.to(q.dtype)


def per_quality(table, quality: torch.Tensor) -> torch.Tensor:
    """A table of one positive value per anchor quality, read at (fractional) qualities:
    log-linear between the anchors."""
    lo, hi, t = quality_weights(quality)
    log_table = torch.log(torch.tensor(table, dtype=torch.float32, device=quality.device))
    return torch.exp(log_table[lo] * (1 - t) + log_table[hi] * t)


def quality_lambda(quality: torch.Tensor) -> torch.Tensor:
    """λ for (fractional) qualities, log-linear between the anchors."""
    return per_quality(LAMBDAS, quality)


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor, bound: float = 1e-9) -> torch.Tensor:
    """P(v) of a unit-width bin of a zero-mean Gaussian, with a floor so log2 stays finite."""
    scales = scales.clamp(min=SCALE_MIN)
    v = values.abs()
    upper = torch.special.ndtr((0.5 - v) / scales)
    lower = torch.special.ndtr((-0.5 - v) / scales)
    return (upper - lower).clamp(min=bound)


def bits(likelihoods: torch.Tensor) -> torch.Tensor:
    return -torch.log2(likelihoods).sum()
