"""tools.release.weights_card: the default's card and the manifest agree, and the index lists every set."""
from __future__ import annotations

from ssic_cli import weights
from tools.release import ship, weights_card

from .conftest import ROOT


def test_the_manifest_holds_the_summary_of_the_default_card(loaded):
    entry = weights.manifest()["weights"][weights.default_weights_id()]
    summary = weights_card.card_summary(loaded.card)
    assert {k: entry["card"][k] for k in summary} == summary


def test_the_default_card_reproduces_from_its_measurements(loaded):
    text = weights_card.render(loaded.path.name, loaded.card, loaded.card.get("campaign"))
    stored = (ROOT / "weights" / f"{loaded.path.stem}.md").read_text()
    # the campaign tooling moved from bench/ to research/ after this card was written
    assert text.replace("`research/campaign.py`", "`bench/campaign.py`") == stored.replace(
        "`research/campaign.py`", "`bench/campaign.py`")


def test_the_index_table_is_the_manifest_and_a_new_default_goes_first():
    readme = (ROOT / "weights" / "README.md").read_text()
    manifest = weights.manifest()
    assert weights_card.update_index(readme, manifest) == readme        # the table says what the manifest says
    old = manifest["default"]
    entry = {"model": "ssic-convhaar", "sha256": "ab" * 32, "bytes": 1, "source": "package",
             "card": {"cpu_hours": 30.0, "kodak_q1": [0.2, 28.5], "kodak_q8": [1.6, 38.0], "details": "weights/x.md"}}
    shipped, retired = ship.with_default(manifest, "ssic-convhaar-abababab", entry, version="0.6.0")
    rows = [line for line in weights_card.update_index(readme, shipped).splitlines() if line.startswith("| [`") or
            line.startswith("| `")]
    assert len(rows) == len(shipped["weights"]) and retired == old
    assert rows[0] == ("| [`ssic-convhaar-abababab`](ssic-convhaar-abababab.md) | `ssic-convhaar` | **default**, in the "
                       "package | 30.0 | 0.200 / 28.50 | 1.600 / 38.00 |")
    assert rows[1].startswith(f"| `{old}` |") and "| retired: ssic v0.6.0 source tree |" in rows[1]
