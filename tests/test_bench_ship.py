"""bench/ship.py: the shipment's plan, its order, and what it refuses."""
from __future__ import annotations

import shutil
import sys

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import ship  # noqa: E402  (bench/ is scripts, not a package)

DEFAULT = "ssic-convhaar-d256d0f6.pt"


def test_with_default_rewrites_the_one_line_and_nothing_else():
    source = 'A = 1\nDEFAULT_WEIGHTS = "old-00000000.pt"\nB = "DEFAULT_WEIGHTS"\n'
    assert ship.with_default(source, "new-11111111.pt") == 'A = 1\nDEFAULT_WEIGHTS = "new-11111111.pt"\nB = "DEFAULT_WEIGHTS"\n'
    with pytest.raises(SystemExit, match="exactly one"):
        ship.with_default("A = 1\n", "new-11111111.pt")


def test_the_real_weights_module_has_its_default_line():
    text = ship.WEIGHTS_PY.read_text()
    moved = ship.with_default(text, "ssic-convhaar-ffffffff.pt")
    assert moved != text and 'DEFAULT_WEIGHTS = "ssic-convhaar-ffffffff.pt"' in moved


def test_install_copies_the_file_and_moves_the_default(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    module = tmp_path / "weights.py"
    module.write_text('DEFAULT_WEIGHTS = "old-00000000.pt"\n')
    monkeypatch.setattr(ship, "ROOT", tmp_path)
    monkeypatch.setattr(ship, "WEIGHTS_PY", module)
    ship.install(ROOT / "weights" / DEFAULT)
    assert (tmp_path / "weights" / DEFAULT).read_bytes() == (ROOT / "weights" / DEFAULT).read_bytes()
    assert module.read_text() == f'DEFAULT_WEIGHTS = "{DEFAULT}"\n'


def test_dry_run_prints_every_step_in_order_and_changes_nothing(capsys):
    before = ship.WEIGHTS_PY.read_text()
    assert ship.main([str(ROOT / "weights" / DEFAULT), "--dry-run"]) == 0
    out = capsys.readouterr().out
    order = [line.split("]")[0].removeprefix("[ship:") for line in out.splitlines() if line.startswith("[ship:")]
    assert list(dict.fromkeys(order)) == ship.STEP_NAMES
    assert "nothing changed" in out and ship.WEIGHTS_PY.read_text() == before


def test_from_starts_at_the_named_step(capsys):
    assert ship.main([str(ROOT / "weights" / DEFAULT), "--dry-run", "--from", "tiles"]) == 0
    steps = {line.split("]")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("[ship:")}
    assert steps == {"[ship:tiles", "[ship:roi", "[ship:card"}


def test_a_renamed_or_unreadable_weights_file_is_refused(tmp_path):
    renamed = tmp_path / "best.pt"
    shutil.copyfile(ROOT / "weights" / DEFAULT, renamed)
    with pytest.raises(SystemExit, match=f"should be named {DEFAULT}"):
        ship.main([str(renamed), "--dry-run"])
    junk = tmp_path / "ssic-convhaar-00000000.pt"
    junk.write_bytes(b"not weights")
    with pytest.raises(SystemExit, match="not a readable weights file"):
        ship.main([str(junk), "--dry-run"])
