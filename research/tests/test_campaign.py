"""research.campaign: the campaign curve orders its rows by CPU time and states each stretch's gain."""
from __future__ import annotations

import json

import pytest

from research import campaign


def _row(name, cpu_hours, bd, q8=(1.5, 36.0)):
    return {"model": name, "cpu_hours": cpu_hours, "images_seen": int(cpu_hours * 27000), "bd_rate_vs_jpeg": bd,
            "bd_rate_vs_webp": bd + 40, "points": [{"q": 1.0, "bpp": 0.3, "psnr": 27.0},
                                                   {"q": 8.0, "bpp": q8[0], "psnr": q8[1]}]}


def test_curve_orders_by_cpu_time_and_gives_each_stretch_its_gain():
    rows = campaign.curve([_row("c", 7.5, -15.0), _row("a", 1.5, 12.2), _row("b", 3.5, -10.8)])
    assert [r["model"] for r in rows] == ["a", "b", "c"]
    assert [r["gain"] for r in rows] == [None, -23.0, -4.2]
    lines = campaign.markdown(rows).splitlines()
    assert len(lines) == 5 and "| `c` | 7.50 | 202 k | -15.0 % | -4.2 % | +25.0 % | 1.500 / 36.00 dB |" in lines


def test_table_starts_from_the_pilot_lineage(tmp_path, monkeypatch):
    pilot_rows, results = tmp_path / "pilots", tmp_path / "campaign"
    pilot_rows.mkdir(), results.mkdir()
    monkeypatch.setattr(campaign.pilots, "RESULTS", pilot_rows)
    monkeypatch.setattr(campaign, "RESULTS_DIR", tmp_path)
    for name, hours, bd in (("p", 1.5, 12.0), ("p@3.5h", 3.5, -10.0)):
        (pilot_rows / f"{name}.row.json").write_text(json.dumps(_row(name, hours, bd)))
    (results / "base-100.row.json").write_text(json.dumps(_row("base-100", 7.5, -14.0)))
    monkeypatch.setattr(campaign, "LINEAGE", ("p", "p@3.5h"))
    text = campaign.table(results)
    assert [line.split("|")[1].strip() for line in text.splitlines()[2:]] == ["`p`", "`p@3.5h`", "`base-100`"]
    saved = json.loads((tmp_path / "campaign.json").read_text())
    assert [r["gain"] for r in saved["rows"]] == [None, -22.0, -4.0]
    assert (tmp_path / "campaign.png").stat().st_size > 5000     # the curve, drawn


def test_a_discarded_stretch_leaves_the_curve_but_stays_in_the_table(tmp_path, monkeypatch):
    pilot_rows, results = tmp_path / "pilots", tmp_path / "campaign"
    pilot_rows.mkdir(), results.mkdir()
    monkeypatch.setattr(campaign.pilots, "RESULTS", pilot_rows)
    monkeypatch.setattr(campaign, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(campaign, "LINEAGE", ())
    for name, hours, bd in (("base-100", 7.5, -14.0), ("base-200", 9.0, -16.0), ("base-300", 9.5, -5.0)):
        (results / f"{name}.row.json").write_text(json.dumps(_row(name, hours, bd)))
    campaign.discard("base-300", "z rate diverged", results)
    text = campaign.table(results)
    saved = json.loads((tmp_path / "campaign.json").read_text())
    assert [r["model"] for r in saved["rows"]] == ["base-100", "base-200"]
    assert [r["model"] for r in saved["discarded"]] == ["base-300"]
    assert "| `base-300` | 9.50 | -5.0 % | z rate diverged |" in text.splitlines()


def test_discarding_an_unknown_row_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no row base-999"):
        campaign.discard("base-999", "no such row", tmp_path)
