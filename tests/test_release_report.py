"""tools.release.ship_report: the before/after figures a shipment's README edit is made from."""
from __future__ import annotations

import copy

import pytest

from tools.release import ship_report

from .conftest import ROOT


def _rd(bpp_scale: float = 1.0) -> dict:
    points = [{"q": q, "bpp": 0.2 * q * bpp_scale, "psnr": 27 + 1.5 * q} for q in (1, 2, 3, 4, 5, 6, 7, 8)]
    return {"curves": {"ssic": points}}


def test_direct_comparison_reads_a_uniform_rate_change():
    before, after = _rd(), _rd(0.9)
    assert ship_report.direct(after, before) == pytest.approx(-10.0, abs=0.05)
    assert ship_report.direct(after, before, (5, 8)) == pytest.approx(-10.0, abs=0.05)
    assert ship_report.direct(before, copy.deepcopy(before)) == pytest.approx(0.0, abs=1e-9)


def test_missing_revision_or_file_is_none_not_an_error():
    assert ship_report.load("rd_kodak.json", "no-such-revision-xyz") is None
    assert ship_report.load("no_such_result.json", None) is None


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_report_of_the_committed_results_against_themselves(capsys):
    assert ship_report.main(["--before", "HEAD"]) == 0
    out = capsys.readouterr().out
    assert "## Kodak" in out and "directly against" in out
    assert "vs webp at each quality (bits at equal PSNR): q 1 " in out
    assert "**+0.0 %** (q 1–3 +0.0 %, q 5–8 +0.0 %)" in out  # the same results: no change
