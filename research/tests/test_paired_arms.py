"""research.probes.paired_arms: how a training probe's arms compare with their control."""
from __future__ import annotations

import json

import pytest

from research.probes import paired_arms


def _row(name: str, bpp_scale: float) -> dict:
    points = [{"q": q, "bpp": 0.2 * q * bpp_scale, "psnr": 27 + 1.5 * q} for q in (1, 2, 3, 5, 6.5, 8)]
    return {"model": name, "weights": f"{name}.pt", "steps": 10, "cpu_hours": 1.0,
            "bd_rate_vs_jpeg": -30.0, "bd_rate_vs_webp": 1.0, "points": points}


def test_an_arm_that_needs_10_percent_fewer_bits_reads_minus_10_everywhere(tmp_path, monkeypatch):
    control, arm = _row("control", 1.0), _row("arm", 0.9)
    classic = {"curves": {"webp": _row("webp", 1.0)["points"]}}
    result = paired_arms.compare(control, [arm], classic)
    assert result["q"] == [1, 2, 3, 5, 6.5, 8]
    summary = result["arms"]["arm"]
    assert summary["bd_rate_vs_control"] == pytest.approx(-10.0, abs=0.05)
    assert summary["rate_change_vs_control"] == pytest.approx([-10.0] * 6, abs=0.01)
    assert result["control"]["rate_gap_vs_webp"] == pytest.approx([0.0] * 6, abs=0.01)
    assert "bd_rate_vs_control" not in result["control"]
    # the script writes the same comparison it prints
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench/results").mkdir(parents=True)
    (tmp_path / "bench/results/rd_kodak.json").write_text(json.dumps(classic))
    for row in (control, arm):
        (tmp_path / f"{row['model']}.row.json").write_text(json.dumps(row))
    assert paired_arms.main(["out.json", "control.row.json", "arm.row.json"]) == 0
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(json.dumps(result))


def test_too_few_arguments_print_the_usage():
    with pytest.raises(SystemExit) as stop:
        paired_arms.main(["out.json", "control.row.json"])
    assert "paired_arms OUT.json CONTROL.row.json" in str(stop.value.code)
