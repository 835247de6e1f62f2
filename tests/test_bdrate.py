"""bench.bdrate: Bjøntegaard delta rate on synthetic curves and on the shared Kodak anchors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench import bdrate

from .conftest import SHARED

RATES = [0.12, 0.25, 0.5, 0.9, 1.6, 2.4]
PSNRS = [26.5, 29.0, 31.8, 34.1, 37.0, 39.2]


def test_identical_curves_give_zero():
    assert bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


def test_half_the_rate_everywhere_gives_minus_50():
    half = [r / 2 for r in RATES]
    assert bdrate.bd_rate(RATES, PSNRS, half, PSNRS) == pytest.approx(-50.0, abs=1e-6)
    assert bdrate.bd_rate(half, PSNRS, RATES, PSNRS) == pytest.approx(100.0, abs=1e-6)


def test_disjoint_psnr_ranges_give_nan():
    assert math.isnan(bdrate.bd_rate(RATES, PSNRS, RATES, list(np.array(PSNRS) + 20)))


def test_webp_vs_jpeg_matches_the_anchor():
    path = SHARED / "anchors" / "kodak_classic_measured.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    curves = json.loads(path.read_text())
    # anchors/README.md: WebP −34 % vs JPEG (cubic fit of log-rate over PSNR)
    assert bdrate.bd_rate_curves(curves["jpeg"], curves["webp"]) == pytest.approx(-34.0, abs=1.0)


def test_bd_psnr_of_a_one_db_shift():
    assert bdrate.bd_psnr(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)
    assert bdrate.bd_psnr(RATES, PSNRS, RATES, [p + 1 for p in PSNRS]) == pytest.approx(1.0, abs=1e-9)


def _points(rates, psnrs):
    return [{"bpp": r, "psnr": p} for r, p in zip(rates, psnrs)]


def test_rate_gaps_say_where_a_curve_wins_and_loses():
    ref = _points(RATES, PSNRS)
    # half the rate at the first two points, the same at a measured point, 1.5× between two
    test = _points([0.06, 0.125, 0.9, 1.5 * math.exp((math.log(0.9) + math.log(1.6)) / 2)],
                   [26.5, 29.0, 34.1, (34.1 + 37.0) / 2])
    gaps = bdrate.rate_gaps(ref, test)
    assert gaps == pytest.approx([-50.0, -50.0, 0.0, 50.0], abs=1e-9)


def test_rate_gaps_do_not_extrapolate():
    ref = _points(RATES, PSNRS)
    assert bdrate.rate_gaps(ref, _points([0.1, 3.0], [26.4, 39.3])) == [None, None]


def test_rate_gaps_refuse_a_reference_whose_psnr_falls():
    with pytest.raises(ValueError):
        bdrate.rate_gaps(_points([0.1, 0.2, 0.4], [30.0, 29.0, 31.0]), _points([0.2], [30.0]))
