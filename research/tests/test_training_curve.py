"""research.training_curve: which records make up a campaign's lineage, and its lr drops."""
from __future__ import annotations

import json

from research import training_curve


def rec(step, lr=1e-3, loss=1.0):
    return {"step": step, "images": 8 * step, "time": 0.0, "lr": lr, "loss": loss, "bpp": 0.5, "psnr": 30.0}


def test_a_restart_from_a_backup_replaces_the_abandoned_records(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in [rec(50), rec(100, loss=9.0), {"step": 100, "eval": {"q2": [0.3, 25.0]}},
                                                       rec(150, loss=9.0), {"step": 150, "eval": {"q2": [0.3, 20.0]}}]) + "\n")
    second.write_text("\n".join(json.dumps(r) for r in [rec(100), rec(150), rec(200)]) + "\n")
    train, evals = training_curve.read_lineage([first, second])
    assert [r["step"] for r in train] == [50, 100, 150, 200]
    assert all(r["loss"] == 1.0 for r in train)
    assert [r["step"] for r in evals] == [100]


def test_lr_drops_are_tenfold_falls_not_warm_up_restarts():
    train = [rec(50, 1e-3), rec(100, 1e-4), rec(150, 1e-3), rec(200, 4e-5), rec(250, 1e-4)]
    assert training_curve.lr_drops(train) == [100]


def test_windows_average_consecutive_steps():
    rows = training_curve.windows([rec(50, loss=1.0), rec(100, loss=3.0), rec(150, loss=5.0), rec(200, loss=7.0),
                                   rec(250, loss=4.0)], 100)
    assert [(r["step"], r["loss"]) for r in rows] == [(100, 2.0), (200, 6.0), (250, 4.0)]


def test_z_rate_is_averaged_only_over_windows_that_logged_it():
    logs = [rec(50), {**rec(100), "bpp_z": 0.02}, {**rec(150), "bpp_z": 0.04}, {**rec(200), "bpp_z": 0.06}]
    assert [r["bpp_z"] for r in training_curve.windows(logs, 100)] == [None, 0.05]
    printed = training_curve.table(logs, [], 100)
    assert "| – |" in printed and "| 0.0500 |" in printed
