"""Forgeries an attacker who read docs/FORMAT.md would write (issue 41), built with the check-free
writer ``tests/forge.py`` (``dump_ssb`` refuses them), decoded by the library and by whole
``ssic decode`` runs. Each must end in one line and exit 2, or in a decode whose damaged groups
are reported lost (exit 4) — within seconds and a bounded allocation, never exit 3.
"""
from __future__ import annotations

import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ssic_cli import codec, container, crypto
from ssic_cli.cli import main
from ssic_cli.errors import FormatError, SsicError
from ssic_cli.weights import load_weights

from .conftest import crop, require_crypto
from .forge import PRESENT, SCRAMBLED, SEALED, Group, fields_of, forge, with_group

MiB = 1 << 20
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny images: one torch thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def lm():
    return load_weights()


@pytest.fixture(scope="module")
def multi(lm) -> bytes:
    """A real 192×128 file of the shipped weights: background, person, car, tree (16-px blocks)."""
    path = GOLDEN / lm.path.stem / "multi-q1.ssb"
    if not path.is_file():
        pytest.skip(f"no golden files for the shipped weights {lm.path.stem}")
    return path.read_bytes()


@pytest.fixture(autouse=True)
def _weights_from_the_file(monkeypatch):
    """The decoder looks the file's model id up (the path a forged id would take)."""
    monkeypatch.delenv("SSIC_WEIGHTS", raising=False)


@contextmanager
def bounded(seconds: float, peak_bytes: int):
    """The block must finish within ``seconds`` and allocate (tracemalloc) under ``peak_bytes``."""
    start = time.monotonic()
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    took = time.monotonic() - start
    assert took < seconds, f"took {took:.1f} s"
    assert peak < peak_bytes, f"allocated {peak / MiB:.1f} MiB"


def cli(capsys, *args) -> tuple[int, list[str]]:
    """Exit status and stderr lines of a whole ``ssic`` command."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    return code, err.splitlines()


def decode_file(tmp_path, capsys, data: bytes, *extra) -> tuple[int, list[str]]:
    src = tmp_path / "forged.ssb"
    src.write_bytes(data)
    return cli(capsys, "decode", src, "-o", tmp_path / "out.png", *extra)


def refused_in_one_line(tmp_path, capsys, data: bytes, message: str) -> None:
    code, lines = decode_file(tmp_path, capsys, data)
    assert code == 2, lines
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out.png").exists()


def plain_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u200b\u2028" for c in text)


# ----- the block mask lies about the groups -------------------------------------------------------
def test_a_present_group_without_blocks_is_lost_alone(multi, tmp_path, capsys):
    """A fifth group, PRESENT with a section, that the mask gives no block: that group is lost;
    the four real ones decode exactly as before."""
    f = fields_of(multi)
    forged = forge(**{**f, "groups": f["groups"] + [Group("ghost", "person")],
                      "sections": f["sections"] + [bytes(range(64))]})
    container.read_ssb(forged)                                  # the reader accepts it (FORMAT.md)
    with bounded(20, 256 * MiB):
        res = codec.decode(forged)
    assert res.lost == ["ghost"] and res.decoded == ["background", "person", "car", "tree"]
    full = np.asarray(codec.decode(multi).image)
    assert np.array_equal(np.asarray(res.image)[..., :3], full[..., :3])
    code, lines = decode_file(tmp_path, capsys, forged)
    assert code == 4 and any("ghost" in ln and "no blocks" in ln for ln in lines), lines


def test_every_block_moved_to_one_group(multi, tmp_path, capsys):
    """The mask gives every block to the background: person, car and tree (present, with their
    sections) have no blocks and are lost; the background decodes or is lost, never a crash."""
    f = fields_of(multi)
    forged = forge(**{**f, "mask": np.zeros_like(f["mask"])})
    with bounded(20, 256 * MiB):
        res = codec.decode(forged)
    assert {"person", "car", "tree"} <= set(res.lost)
    assert sorted(res.decoded + res.lost) == sorted(["background", "person", "car", "tree"])
    code, lines = decode_file(tmp_path, capsys, forged)
    assert code in (2, 4), lines
    if code == 2:                  # one warning per lost group, then the one error line
        assert [ln for ln in lines if ln.startswith("ssic: error:")] == lines[-1:], lines
        assert "no group could be decoded" in lines[-1], lines


# ----- resources a file claims ------------------------------------------------------------------------
def test_a_thin_image_is_refused_by_its_padded_canvas(lm, tmp_path, capsys):
    """1,000,000 × 1 pixels is 1 MP, but the model pads it to 1,000,064 × 128 = 128 MP: refused
    before any allocation, naming the padding and the variable that raises the budget."""
    forged = forge(1_000_000, 1, block_size=64, model_id=lm.model_id, weights_hash=lm.weights_hash,
                   mask=np.zeros((1, 15625), np.uint8), groups=[Group("background")], sections=[bytes(64)])
    assert len(forged) < 600
    with bounded(10, 4 * MiB):
        with pytest.raises(SsicError, match="padded to 1000064×128") as exc:
            codec.decode(forged)
    assert "SSIC_MAX_PIXELS" in str(exc.value)
    refused_in_one_line(tmp_path, capsys, forged, "padded to 1000064×128")


@pytest.mark.parametrize("lengths", [[0xFFFFFFFF], [0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF]])
def test_index_claiming_huge_sections_is_refused_before_reading(multi, tmp_path, capsys, lengths):
    """Index lengths far beyond what a 192×128 image codes into (the file itself is short):
    refused from the index alone, nothing read or allocated."""
    f = fields_of(multi)
    index = [(n, 0) for n in lengths] + [(len(s), 0) for s in f["sections"][len(lengths):]]
    forged = forge(**{**f, "index": index})
    with bounded(5, 1 * MiB):
        with pytest.raises(FormatError, match="more than any file of this image size holds"):
            container.read_ssb(forged)
    refused_in_one_line(tmp_path, capsys, forged, "more than any file of this image size holds")


@pytest.mark.parametrize("model_id", ["../../etc/passwd", "/etc/passwd", "..", "ssic-convhaar/../../x"])
def test_a_model_id_is_never_a_path(multi, tmp_path, capsys, model_id):
    forged = forge(**{**fields_of(multi), "model_id": model_id})
    with bounded(10, 16 * MiB):
        with pytest.raises(SsicError, match="not a name ssic gives weights"):
            codec.decode(forged)
    refused_in_one_line(tmp_path, capsys, forged, "not a name ssic gives weights")


@pytest.mark.parametrize("name", ["a\x1b[2Jb", "bell\x07", "nul\x00", "rtl\u202eplay", "line\u2028two",
                                  "zero\u200bwidth", "del\x7f", "c1\x9b"])
def test_group_names_with_control_characters_are_refused(multi, tmp_path, capsys, name):
    """The reader refuses them, and its one line shows them escaped, never raw to the terminal."""
    forged = forge(**with_group(fields_of(multi), 1, name=name))
    with bounded(5, 1 * MiB):
        with pytest.raises(FormatError, match="control character") as exc:
            container.read_ssb(forged)
    assert not plain_control(str(exc.value)), repr(str(exc.value))
    refused_in_one_line(tmp_path, capsys, forged, "control character")
    code, lines = cli(capsys, "inspect", tmp_path / "forged.ssb")
    assert code == 2 and len(lines) == 1 and not plain_control(lines[0]), lines


def test_a_label_or_model_id_with_control_characters_is_refused(multi):
    for forged in (forge(**with_group(fields_of(multi), 2, label="car\x1b]0;pwned\x07")),
                   forge(**{**fields_of(multi), "model_id": "ssic\x1b[1m"})):
        with pytest.raises(FormatError, match="control character") as exc:
            container.read_ssb(forged)
        assert not plain_control(str(exc.value))


# ----- key derivation -------------------------------------------------------------------------------
def _kdf_params(log2_n: int, r: int, p: int, seal: bool, salt: bytes = bytes(16)) -> bytes:
    kdf = crypto.KdfParams(log2_n, r, p, salt)
    return crypto.GroupParams(
        seal=crypto.SealParams(kdf, bytes(8), bytes(12)) if seal else None,
        scramble=None if seal else crypto.ScrambleParams(kdf, bytes(8))).pack()


@pytest.mark.parametrize("flags", [PRESENT | SEALED, PRESENT | SCRAMBLED])
def test_scrypt_settings_openssl_refuses_lose_the_group(multi, tmp_path, capsys, flags):
    """N = 2^19, r = 1, p = 2 is inside the memory bound (128·r·N = 64 MiB) but N ≥ 2^(16·r),
    which scrypt (and OpenSSL) refuse: the group is lost as unsupported, the others decode."""
    require_crypto()
    params = _kdf_params(19, 1, 2, seal=bool(flags & SEALED))
    forged = forge(**with_group(fields_of(multi), 1, flags=flags, params=params))
    key = tmp_path / "k.key"
    key.write_bytes(b"a key of thirty-two bytes ......")
    with bounded(20, 256 * MiB):
        res = codec.decode(forged, keys=[crypto.key_from_file(key)])
    assert res.lost == ["person"] and res.decoded == ["background", "car", "tree"]
    code, lines = decode_file(tmp_path, capsys, forged, "--key-file", key)
    assert code == 4, lines
    assert any("person" in ln and "not supported" in ln for ln in lines), lines


@pytest.fixture(scope="module")
def two_blocks_and_the_rest(lm, kodak):
    """256×256 at 16-pixel blocks (256 blocks), coded as a 2-block background and one group of
    the other 254 blocks: a real section for group 0 with room for 254 one-block groups."""
    from ssic_cli.mask import GroupMask
    ids = np.ones((16, 16), np.uint8)
    ids[0, :2] = 0
    gm = GroupMask(16, ids, ["background", "rest"], ["background", "rest"])
    return codec.encode(crop(kodak, 256, 256, 100, 200), gm, 2.0), ids


def test_255_sealed_groups_at_the_highest_cost_stop_at_the_kdf_budget(two_blocks_and_the_rest, tmp_path, capsys,
                                                                      monkeypatch):
    """254 sealed one-block groups, each with its own salt, at the highest scrypt cost a reader
    accepts (N = 2^16, r = 8, p = 2: 64 MiB, 4× the default work), tried with two keys: the
    decode derives keys until crypto.KDF_BUDGET is spent, reports the rest "not tried", and
    keeps the background: exit 4 in seconds, not the minutes 255 × 2 derivations would take."""
    require_crypto()
    data, ids = two_blocks_and_the_rest
    f = fields_of(data)
    mask = ids.copy()
    mask[ids == 1] = np.arange(1, 255)
    groups = [f["groups"][0]] + [
        Group(f"s{g}", "person", PRESENT | SEALED, _kdf_params(16, 8, 2, True, salt=g.to_bytes(16, "little")))
        for g in range(1, 255)]
    forged = forge(**{**f, "groups": groups, "mask": mask, "sections": [f["sections"][0]] + [bytes(32)] * 254})
    assert len(forged) < 30_000 and len(container.read_ssb(forged).header.groups) == 255
    max_work = crypto.KdfParams(16, 8, 2, b"").work
    tried = crypto.KDF_BUDGET // max_work            # derivations the budget allows (8)
    keys = [tmp_path / "k1.key", tmp_path / "k2.key"]
    for i, k in enumerate(keys):
        k.write_bytes(bytes([i + 1]) * 32)
    warnings: list[str] = []
    start = time.monotonic()
    res = codec.decode(forged, keys=[crypto.key_from_file(k) for k in keys], warn=warnings.append)
    took = time.monotonic() - start
    assert res.decoded == ["background"] and len(res.unavailable) == 254
    not_tried = [w for w in warnings if "not tried" in w]
    assert len(not_tried) == 254 - tried // len(keys), (len(not_tried), tried)
    assert took < 8 * tried * 0.53 + 20, took       # ~0.5 s per derivation here, whatever the load
    # The whole command ends the same way (with a smaller budget: the real one was measured above).
    monkeypatch.setattr(crypto, "KDF_BUDGET", 2 * max_work)
    code, lines = decode_file(tmp_path, capsys, forged, "--key-file", keys[0], "--key-file", keys[1])
    assert code == 4 and sum("not tried" in ln for ln in lines) == 253, lines[:5]


# ----- structure forgeries: every one a single line ------------------------------------------------
def _structure_forgeries(f: dict) -> dict:
    g = f["groups"]
    return {
        "group count 0": dict(f, group_count=0),
        "group count past the table": dict(f, group_count=len(g) + 1),
        "mask length past the end": dict(f, mask_len=0xFFFFFFF0),
        "mask of another grid": dict(f, mask=np.zeros((3, 3), np.uint8)),
        "mask naming group 200": dict(f, mask=np.full_like(f["mask"], 200)),
        "name length past the end": with_group(f, 0, name_len=255),
        "params length past the end": with_group(f, 3, params_len=0xFFFF),
        "params 1025 bytes": with_group(f, 3, params=bytes(1025)),
        "reserved group flag": with_group(f, 2, flags=PRESENT | 0x80),
        "reserved file flag": dict(f, file_flags=2),
        "tiled with tile size 0": dict(f, file_flags=1, tile_size=0),
        "tiled with tile size 100": dict(f, file_flags=1, tile_size=100),
        "quality NaN": dict(f, quality=0x7FC00000),
        "quality 1e30": dict(f, quality=1e30),
        "block size 8": dict(f, block_size=8),
        "width 0": dict(f, width=0),
        "width 2^32-1": dict(f, width=0xFFFFFFFF),
        "channels 4": dict(f, channels=4),
        "version 1": dict(f, version=1),
        "version 65535": dict(f, version=65535),
        "duplicate names": with_group(f, 1, name="background"),
        "empty name": with_group(f, 1, name=""),
        "name not UTF-8": with_group(f, 1, name=b"\xff\xfe"),
        "name not NFC": with_group(f, 1, name="e\u0301"),
        "header CRC wrong": dict(f, header_crc=0),
        "absent group with an index entry": dict(with_group(f, 2, flags=0), sections=f["sections"][:2] + [None, f["sections"][3]],
                                                 index=[(len(s), 0) for s in f["sections"]]),
        "trailing bytes": dict(f, trailing=b"hidden"),
        "sections truncated": dict(f, sections=f["sections"][:3] + [f["sections"][3][:-1]],
                                   index=[(len(s), 0) for s in f["sections"]]),
        "version 2 with a wrong block count": dict(f, version=2, groups=[
            Group(x.name, x.label, x.flags, x.params, blocks=99) for x in g]),
    }


def test_structure_forgeries_are_one_line_errors(multi, tmp_path, capsys):
    f = fields_of(multi)
    for what, fields in _structure_forgeries(f).items():
        forged = forge(**fields)
        with bounded(5, 2 * MiB):
            with pytest.raises(FormatError) as exc:
                container.read_ssb(forged)
        assert "\n" not in str(exc.value), what
        code, lines = decode_file(tmp_path, capsys, forged)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("ssic: error:"), (what, lines)


def test_the_forge_writes_real_files_byte_for_byte(lm):
    for path in sorted((GOLDEN / lm.path.stem).glob("*.ssb")):
        data = path.read_bytes()
        assert forge(**fields_of(data)) == data, path.name
    f = fields_of((GOLDEN / lm.path.stem / "multi-q1.ssb").read_bytes())
    v2 = container.read_ssb(forge(**{**f, "version": 2}))
    assert v2.version == 2 and v2.header.groups[1].block_count == 13
