"""research.pilots: an extended pilot starts from its pilot's checkpoint and never moves it."""
from __future__ import annotations

import pytest

from research import pilots


def test_model_of_names_the_config_a_run_trains():
    assert pilots.model_of("ssic-convhaar") == "ssic-convhaar"
    assert pilots.model_of("ssic-convhaar@3.5h") == "ssic-convhaar"


def test_extension_copies_the_pilot_checkpoint_once(tmp_path, monkeypatch):
    monkeypatch.setattr(pilots, "RUNS", tmp_path)
    (tmp_path / "ssic-tinyhaar").mkdir()
    (tmp_path / "ssic-tinyhaar" / "last.pt").write_bytes(b"pilot")
    pilots.start_extension("ssic-tinyhaar@3.5h")
    assert (tmp_path / "ssic-tinyhaar@3.5h" / "last.pt").read_bytes() == b"pilot"
    assert (tmp_path / "ssic-tinyhaar" / "last.pt").read_bytes() == b"pilot"
    (tmp_path / "ssic-tinyhaar@3.5h" / "last.pt").write_bytes(b"extended")     # the extension trains on
    pilots.start_extension("ssic-tinyhaar@3.5h")                                # a re-run resumes it
    assert (tmp_path / "ssic-tinyhaar@3.5h" / "last.pt").read_bytes() == b"extended"
    pilots.start_extension("ssic-tinyhaar")                                     # a plain pilot: nothing to copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ssic-tinyhaar", "ssic-tinyhaar@3.5h"]


def test_extension_of_a_pilot_that_never_ran_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pilots, "RUNS", tmp_path)
    with pytest.raises(SystemExit, match="has no checkpoint"):
        pilots.start_extension("ssic-conv@3.5h")
    assert not (tmp_path / "ssic-conv@3.5h").exists()
