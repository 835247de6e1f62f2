"""Bjøntegaard deltas (BD-rate, BD-PSNR) between two rate–distortion curves.

Bjøntegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33 (2001):
fit log-rate as a cubic polynomial of PSNR for each curve, integrate both fits over the PSNR
range the two curves share, and turn the mean log-rate difference into a percentage. BD-PSNR
is the dual: PSNR as a cubic of log-rate, averaged over the shared log-rate range (it still
says something when two curves share no PSNR range, e.g. a model early in training).

    >>> round(bd_rate([0.2, 0.4, 0.8, 1.6], [28, 31, 34, 37], [0.1, 0.2, 0.4, 0.8], [28, 31, 34, 37]), 6)
    -50.0
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def _curve(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(ln rate, psnr) as arrays, checked."""
    r = np.asarray(rates, np.float64)
    p = np.asarray(psnrs, np.float64)
    if r.shape != p.shape or r.ndim != 1 or r.size < 2:
        raise ValueError("each curve needs at least two (rate, psnr) points of equal length")
    if np.any(r <= 0):
        raise ValueError("rates must be positive")
    return np.log(r), p


def _fit(x: np.ndarray, y: np.ndarray) -> np.poly1d:
    """Least-squares cubic of y over x (lower degree when there are fewer points)."""
    return np.poly1d(np.polyfit(x, y, min(3, x.size - 1)))


def _mean_gap(x1, y1, x2, y2) -> float:
    """Mean of fit(x2, y2) − fit(x1, y1) over the shared x range; NaN when there is none."""
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if not hi > lo:
        return math.nan
    f1, f2 = _fit(x1, y1).integ(), _fit(x2, y2).integ()
    return float(((f2(hi) - f2(lo)) - (f1(hi) - f1(lo))) / (hi - lo))


def bd_rate(r1: Sequence[float], p1: Sequence[float], r2: Sequence[float], p2: Sequence[float]) -> float:
    """Mean rate change of curve 2 against reference curve 1, in percent, at equal PSNR.

    Negative means curve 2 needs fewer bits for the same quality (−50: half the rate).
    Returns NaN when the PSNR ranges of the two curves do not overlap.
    """
    lr1, q1 = _curve(r1, p1)
    lr2, q2 = _curve(r2, p2)
    return (math.exp(_mean_gap(q1, lr1, q2, lr2)) - 1.0) * 100.0


def bd_psnr(r1: Sequence[float], p1: Sequence[float], r2: Sequence[float], p2: Sequence[float]) -> float:
    """Mean PSNR gain (dB) of curve 2 over reference curve 1 at equal rate; NaN without overlap."""
    lr1, q1 = _curve(r1, p1)
    lr2, q2 = _curve(r2, p2)
    return _mean_gap(lr1, q1, lr2, q2)


def _columns(curve: list[dict]) -> tuple[list[float], list[float]]:
    return [p["bpp"] for p in curve], [p["psnr"] for p in curve]


def bd_rate_curves(reference: list[dict], test: list[dict]) -> float:
    """``bd_rate`` on two curves given as lists of ``{"bpp", "psnr"}`` points."""
    return bd_rate(*_columns(reference), *_columns(test))


def bd_psnr_curves(reference: list[dict], test: list[dict]) -> float:
    """``bd_psnr`` on two curves given as lists of ``{"bpp", "psnr"}`` points."""
    return bd_psnr(*_columns(reference), *_columns(test))


def rate_gaps(reference: list[dict], test: list[dict]) -> list[Optional[float]]:
    """For each point of ``test``: its rate change (%) against ``reference`` at the same PSNR,
    the reference's log-rate interpolated linearly between its two measured points around that
    PSNR; None outside the reference's measured PSNR range (no extrapolation).

    Where BD-rate gives one mean, this says *where* along the curve a codec wins or loses (a
    variable-rate model can beat a codec in the middle of its range and lose at both ends)."""
    ref = sorted(reference, key=lambda p: p["bpp"])
    lr, q = _curve(*_columns(ref))
    if np.any(np.diff(q) <= 0):
        raise ValueError("the reference's PSNR must rise strictly with its rate")
    gaps = []
    for p in test:
        if not q[0] <= p["psnr"] <= q[-1]:
            gaps.append(None)
            continue
        gaps.append((p["bpp"] / math.exp(float(np.interp(p["psnr"], q, lr))) - 1.0) * 100.0)
    return gaps
