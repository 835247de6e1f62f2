"""tools.release.ship: the shipment's plan, its order, the manifest it edits, and what it refuses."""
from __future__ import annotations

import json
import shutil

import pytest

from ssic_cli import weights
from tools.release import ship

DEFAULT = weights.PACKAGE_DIR / f"{weights.default_weights_id()}.pt"


def _manifest(default="old-00000000"):
    return {"format": 1, "default": default,
            "weights": {default: {"model": "old", "sha256": "00" * 32, "bytes": 3, "source": "package",
                                  "card": {"cpu_hours": 1.0, "details": f"weights/{default}.md"}},
                        "older-11111111": {"model": "old", "sha256": "11" * 32, "bytes": 3,
                                           "source": "ssic v0.5.0 source tree, weights/older-11111111.pt",
                                           "card": {"details": "ssic v0.5.0 source tree, weights/older-11111111.md"}}}}


def test_with_default_adds_the_entry_and_retires_the_packaged_default_only():
    before = _manifest()
    entry = {"model": "new", "sha256": "22" * 32, "bytes": 4, "source": "package", "card": {"details": "weights/new-22222222.md"}}
    after, retired = ship.with_default(before, "new-22222222", entry, version="0.6.0")
    assert retired == "old-00000000" and after["default"] == "new-22222222"
    assert after["weights"]["new-22222222"] == entry
    old = after["weights"]["old-00000000"]
    assert old["source"] == "ssic v0.6.0 source tree, ssic_cli/weights_data/old-00000000.pt"
    assert old["card"]["details"] == "ssic v0.6.0 source tree, weights/old-00000000.md"
    assert after["weights"]["older-11111111"] == before["weights"]["older-11111111"]      # retired long ago
    assert before == _manifest()                                                        # the input is left alone
    again, none = ship.with_default(after, "new-22222222", entry)
    assert none is None and again == after                                              # shipping twice: no change


def test_the_real_manifest_names_a_packaged_default():
    manifest = ship.read_manifest(weights.MANIFEST)
    assert manifest["weights"][manifest["default"]]["source"] == "package" and DEFAULT.is_file()


def test_install_copies_the_file_edits_the_manifest_and_retires_the_old_default(tmp_path):
    package, checkout = tmp_path / "weights_data", tmp_path / "checkout"
    (checkout / "weights").mkdir(parents=True)
    package.mkdir()
    ship.write_manifest(package / "manifest.json", _manifest())
    for suffix in (".pt", ".json"):
        (package / f"old-00000000{suffix}").write_bytes(b"old")
    (checkout / "weights" / "old-00000000.md").write_text("# old card")
    blob = ship.checked(DEFAULT)
    assert ship.install(DEFAULT, blob, package, checkout) == "old-00000000"
    assert (package / DEFAULT.name).read_bytes() == DEFAULT.read_bytes()
    assert sorted(p.name for p in package.iterdir()) == sorted([DEFAULT.name, "manifest.json"])
    assert (checkout / "weights" / "old-00000000.pt").read_bytes() == b"old"          # still decodes here
    assert not (checkout / "weights" / "old-00000000.md").exists()
    manifest = json.loads((package / "manifest.json").read_text())
    entry = manifest["weights"][DEFAULT.stem]
    assert manifest["default"] == DEFAULT.stem and entry["source"] == "package"
    assert entry["sha256"] == weights.file_hash(DEFAULT).hex() and entry["bytes"] == DEFAULT.stat().st_size
    assert entry["model"] == blob["model_id"] and entry["card"]["details"] == f"weights/{DEFAULT.stem}.md"
    assert manifest["weights"]["old-00000000"]["source"].endswith("ssic_cli/weights_data/old-00000000.pt")


def test_dry_run_prints_every_step_in_order_and_changes_nothing(capsys):
    before = weights.MANIFEST.read_text()
    assert ship.main([str(DEFAULT), "--dry-run"]) == 0
    out = capsys.readouterr().out
    order = [line.split("]")[0].removeprefix("[ship:") for line in out.splitlines() if line.startswith("[ship:")]
    assert list(dict.fromkeys(order)) == ship.STEP_NAMES
    assert "nothing changed" in out and weights.MANIFEST.read_text() == before


def test_from_starts_at_the_named_step(capsys):
    assert ship.main([str(DEFAULT), "--dry-run", "--from", "tiles"]) == 0
    steps = {line.split("]")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("[ship:")}
    assert steps == {"[ship:tiles", "[ship:roi", "[ship:card"}


def test_a_renamed_or_unreadable_weights_file_is_refused(tmp_path):
    renamed = tmp_path / "best.pt"
    shutil.copyfile(DEFAULT, renamed)
    with pytest.raises(SystemExit, match=f"should be named {DEFAULT.name}"):
        ship.main([str(renamed), "--dry-run"])
    junk = tmp_path / "ssic-convhaar-00000000.pt"
    junk.write_bytes(b"not weights")
    with pytest.raises(SystemExit, match="not a readable weights file"):
        ship.main([str(junk), "--dry-run"])
