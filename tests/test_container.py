"""The .ssb container: round trips, extract, damage, forgery, atomic writes. Fast, no torch."""
from __future__ import annotations

import copy
import doctest
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssic_cli import container
from ssic_cli.container import (
    FLAG_PRESENT, FLAG_SCRAMBLED, FLAG_SEALED, MAGIC, CorruptSectionError, GroupEntry, SsbHeader,
    describe, dump_ssb, extract_ssb, header_from_mask, read_ssb, write_ssb,
)
from ssic_cli.errors import FormatError, SsicError
from ssic_cli.mask import GroupMask, encode_block_ids, grid_shape, single_group

MODEL = "ssic-tiny-v1"
HASH = bytes(range(16))
NAMES = ["person", "voiture 🚗", "背景"]
SECTIONS = [b"person-bytes", b"car", b"background bytes " * 3]
# Byte positions of fixed fields (see docs/FORMAT.md).
WIDTH_AT, HEIGHT_AT, BLOCK_AT, CHANNELS_AT = 10, 14, 18, 20
QUALITY_AT = 22 + len(MODEL) + 16
FILE_FLAGS_AT = QUALITY_AT + 4
FILE_ID_AT = FILE_FLAGS_AT + 4
COUNT_AT = FILE_ID_AT + 16
NAME0_AT = COUNT_AT + 2
GROUP0_AFTER_TEXT = NAME0_AT + 1 + len(NAMES[0].encode()) + 1 + len(b"person")
# Group 0's fixed fields: version 2 stores bbox and block count before the flags, version 3 not.
GROUP0_AT = {2: {"bbox": GROUP0_AFTER_TEXT, "blocks": GROUP0_AFTER_TEXT + 16,
                 "flags": GROUP0_AFTER_TEXT + 20, "params_len": GROUP0_AFTER_TEXT + 21},
             3: {"flags": GROUP0_AFTER_TEXT, "params_len": GROUP0_AFTER_TEXT + 1}}
INDEX_ENTRY_BYTES = {2: 16, 3: 8}


def make_header(width=70, height=40, names=NAMES) -> SsbHeader:
    rows, cols = grid_shape(width, height, 16)          # 3 x 5 blocks, last row/col partial
    ids = np.full((rows, cols), 2, np.uint8)
    ids[:2, :2] = 0
    ids[2, 3:] = 1
    return header_from_mask(width, height, 3, GroupMask(16, ids, list(names)), MODEL, HASH, 4.0)


@pytest.fixture
def header() -> SsbHeader:
    return make_header()


@pytest.fixture
def data(header) -> bytes:
    return dump_ssb(header, SECTIONS)


@pytest.fixture(params=container.READ_VERSIONS)
def any_version(request, header) -> bytes:
    """The same file in every version this ssic reads."""
    return dump_ssb(header, SECTIONS, version=request.param)


def header_size(data: bytes) -> int:
    return read_ssb(data).header_size


def forge(data: bytes, at: int, fmt: str, value, hsize: int) -> bytes:
    """Overwrite a field and recompute the header CRC, as a deliberate forger would."""
    buf = bytearray(data)
    struct.pack_into("<" + fmt, buf, at, value)
    struct.pack_into("<I", buf, hsize - 4, zlib.crc32(buf[:hsize - 4]))
    return bytes(buf)


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("how", ["bytes", "path", "file object"])
def test_round_trip(header, data, tmp_path, how):
    path = tmp_path / "a.ssb"
    write_ssb(path, header, SECTIONS)
    assert path.read_bytes() == data
    if how == "bytes":
        ssb = read_ssb(data)
    elif how == "path":
        ssb = read_ssb(path)
    else:
        fp = open(path, "rb")
        ssb = read_ssb(fp)
    assert ssb.header == header
    assert [ssb.section(i) for i in range(3)] == SECTIONS
    assert ssb.file_size == len(data) == ssb.header_size + sum(map(len, SECTIONS))
    assert [g.name for g in ssb.header.groups] == NAMES
    assert ssb.header.groups[0].bbox == (0, 0, 32, 32)
    assert ssb.header.groups[1].bbox == (48, 32, 70, 40)    # clipped to the image
    assert ssb.header.groups[2].block_count == 9
    assert ssb.version == container.VERSION == 3
    if how == "file object":
        fp.close()


def test_every_readable_version_reads_the_same(header, any_version):
    ssb = read_ssb(any_version)
    assert ssb.header == header
    assert [ssb.section(i) for i in range(3)] == SECTIONS
    assert describe(ssb)["version"] == ssb.version
    assert ssb.index == read_ssb(dump_ssb(header, SECTIONS)).index


def test_version_3_drops_28_bytes_per_group_and_nothing_else(header):
    v2, v3 = (dump_ssb(header, SECTIONS, version=v) for v in (2, 3))
    assert len(v2) - len(v3) == 28 * len(header.groups)     # bbox + block count + u64 offset
    assert v2[-sum(map(len, SECTIONS)):] == v3[-sum(map(len, SECTIONS)):]


def test_the_worked_example_of_the_format_doc():
    """docs/FORMAT.md, *Worked example*, byte for byte."""
    h = header_from_mask(64, 48, 3, single_group(64, 48, 32), "tiny", bytes(16), 4.0)
    h.file_id = bytes(range(0xA0, 0xB0))
    data = dump_ssb(h, [b"abc"])
    assert data.hex() == (
        "89535342" "0d0a1a0a" "0300" "40000000" "30000000" "2000" "03" "0474696e79" + "00" * 16 +
        "00008040" "00000000" + bytes(range(0xA0, 0xB0)).hex() + "0100" "0a" + b"background".hex() +
        "0a" + b"background".hex() + "01" "0000" "0c000000" "78da6360606000000004" "0001"
        "03000000" "c2412435" "b7d66568" "616263")
    assert (len(data), read_ssb(data).header_size, len(dump_ssb(h, [b"abc"], version=2))) == (124, 121, 152)


def test_writer_refuses_unknown_versions(header):
    for version in (1, 4):
        with pytest.raises(FormatError, match=f"cannot write .ssb version {version}"):
            dump_ssb(header, SECTIONS, version=version)


def test_absent_group_reads_and_says_so(header):
    ssb = read_ssb(dump_ssb(header, [SECTIONS[0], None, SECTIONS[2]]))
    assert not ssb.header.groups[1].present
    assert ssb.index[1] == (0, 0, 0)
    assert ssb.section(0) == SECTIONS[0] and ssb.section(2) == SECTIONS[2]
    with pytest.raises(SsicError, match="not in this file") as exc:
        ssb.section(1)
    assert not isinstance(exc.value, FormatError)


def test_one_group():
    h = header_from_mask(17, 9, 1, single_group(17, 9, 64), MODEL, HASH, 1.0)
    ssb = read_ssb(dump_ssb(h, [b""]))
    assert ssb.header == h and ssb.section(0) == b"" and ssb.header.channels == 1


def test_255_groups():
    ids = (np.arange(16 * 16) % 255).astype(np.uint8).reshape(16, 16)
    names = [f"g{i}" for i in range(254)] + ["ü" * 32]       # 64 bytes of UTF-8
    h = header_from_mask(256, 256, 3, GroupMask(16, ids, names), MODEL, HASH, 8.0)
    sections = [bytes([i]) * i if i % 7 else None for i in range(255)]
    for g, section in zip(h.groups, sections):
        g.flags = FLAG_PRESENT if section is not None else 0
    ssb = read_ssb(dump_ssb(h, sections))
    assert ssb.header == h
    assert [ssb.section(i) for i in range(255) if sections[i] is not None] == \
        [s for s in sections if s is not None]


def test_quality_keeps_its_decimal_and_params_round_trip(header):
    header.quality = 1.3
    header.groups[0].flags |= FLAG_SEALED
    header.groups[0].params = b"\x00salt\xffnonce" * 20
    ssb = read_ssb(dump_ssb(header, SECTIONS))
    assert ssb.header.quality == 1.3
    assert ssb.header.groups[0].params == header.groups[0].params
    assert ssb.header.groups[0].flags == FLAG_PRESENT | FLAG_SEALED


def test_index_of_lists_the_names(header):
    assert header.index_of("背景") == 2
    with pytest.raises(SsicError, match="person, voiture 🚗, 背景"):
        header.index_of("dog")
    assert header.group_mask().names == NAMES


def test_describe_is_json(data):
    d = describe(read_ssb(data))
    json.dumps(d)
    assert (d["width"], d["height"], d["block_size"], d["model_id"]) == (70, 40, 16, MODEL)
    assert d["weights_hash"] == HASH.hex() and d["quality"] == 4.0
    assert d["total_bytes"] == len(data) and d["bpp"] == pytest.approx(len(data) * 8 / 2800)
    assert d["groups"][1] == {"name": "voiture 🚗", "label": "voiture 🚗", "bbox": [48, 32, 70, 40],
                              "blocks": 2, "bytes": 3, "flags": ["present"]}


def test_flag_words():
    assert container.flag_words(FLAG_PRESENT | FLAG_SEALED | FLAG_SCRAMBLED) == \
        ["present", "sealed", "scrambled"]


def test_docstring_examples_run():
    assert doctest.testmod(container).failed == 0


def test_no_torch_import():
    code = "import sys, ssic_cli.container; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# ---------------------------------------------------------------------------------- extract


def test_extract_copies_kept_sections_verbatim(header, data):
    ssb = read_ssb(data)
    out = extract_ssb(ssb, [2, 0])
    assert len(out) < len(data)
    small = read_ssb(out)
    assert small.header.groups[1].flags == 0
    assert [g.present for g in small.header.groups] == [True, False, True]
    for i in (0, 2):
        off, length, crc = small.index[i]
        assert out[small.header_size + off:][:length] == ssb.section(i)
        assert (length, crc) == ssb.index[i][1:]
        assert small.section(i) == SECTIONS[i]
    assert small.header.block_ids.tolist() == header.block_ids.tolist()
    assert len(out) == small.header_size + len(SECTIONS[0]) + len(SECTIONS[2])
    # A subset of a subset; asking again for a dropped group is an error.
    assert read_ssb(extract_ssb(small, [2])).section(2) == SECTIONS[2]
    with pytest.raises(SsicError, match="left out"):
        extract_ssb(small, [1])
    with pytest.raises(SsicError, match="no group number 3"):
        extract_ssb(small, [3])


@pytest.mark.parametrize("version", container.READ_VERSIONS)
def test_extract_keeps_the_source_version(header, version):
    src = read_ssb(dump_ssb(header, SECTIONS, version=version))
    small = read_ssb(extract_ssb(src, [1]))
    assert small.version == version and small.section(1) == SECTIONS[1]
    assert small.header_size == src.header_size


def test_extract_keeps_sealed_flag_and_params_of_dropped_groups(header):
    header.groups[1].flags = FLAG_PRESENT | FLAG_SEALED
    header.groups[1].params = b"kdf"
    small = read_ssb(extract_ssb(read_ssb(dump_ssb(header, SECTIONS)), [0]))
    assert small.header.groups[1].flags == FLAG_SEALED
    assert small.header.groups[1].params == b"kdf"
    assert describe(small)["groups"][1]["flags"] == ["absent", "sealed"]


def test_extract_refuses_a_damaged_section(data):
    buf = bytearray(data)
    buf[-1] ^= 1                                   # last byte belongs to group 2
    with pytest.raises(CorruptSectionError):
        extract_ssb(read_ssb(bytes(buf)), [0, 2])


# ----------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("group", [0, 1, 2])
def test_corrupt_section_loses_that_group_only(data, group):
    ssb = read_ssb(data)
    buf = bytearray(data)
    buf[ssb.header_size + ssb.index[group][0]] ^= 0x40
    damaged = read_ssb(bytes(buf))                  # the header is intact
    for i in range(3):
        if i == group:
            with pytest.raises(CorruptSectionError, match="CRC-32") as exc:
                damaged.section(i)
            assert exc.value.group == NAMES[i]
        else:
            assert damaged.section(i) == SECTIONS[i]


def test_truncation_at_every_byte(data, tmp_path):
    for n in range(len(data)):
        with pytest.raises(FormatError):
            read_ssb(data[:n])
    path = tmp_path / "cut.ssb"
    for n in (0, 5, 40, len(data) - 1):
        path.write_bytes(data[:n])
        with pytest.raises(FormatError):
            read_ssb(path)


def test_truncation_messages(data):
    hs = header_size(data)
    cut = r"^file is truncated \(header needs "
    with pytest.raises(FormatError, match=cut + r"8 bytes, file has 4\)$"):
        read_ssb(data[:4])
    with pytest.raises(FormatError, match=cut + r"\d+ bytes, file has 30\)$"):
        read_ssb(data[:30])
    with pytest.raises(FormatError, match=r"^file is truncated \(sections need 66 bytes after the "
                                          r"header, file has 65\)$"):
        read_ssb(data[:hs + 65])


def test_every_single_bit_flip_in_the_header_is_caught(data):
    hs = header_size(data)
    for bit in range(hs * 8):
        buf = bytearray(data)
        buf[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FormatError):
            read_ssb(bytes(buf))


def test_flip_in_a_field_reports_the_checksum(data):
    buf = bytearray(data)
    buf[WIDTH_AT] ^= 1
    with pytest.raises(FormatError, match="^header checksum mismatch: the file is damaged$"):
        read_ssb(bytes(buf))


@pytest.mark.parametrize("blob, message", [
    (b"", r"^not an \.ssb file \(the file is empty\)$"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), r"^not an \.ssb file$"),
    (b"\x89SSB\n\x1a\n" + bytes(40), "line endings were converted"),
    (b"\x89SSB\r\r\n\x1a\r\n" + bytes(40), "line endings were converted"),
    (MAGIC + b"\x04\x00" + bytes(40),
     r"^unsupported \.ssb version 4 \(this ssic reads versions 2 and 3\)$"),
])
def test_foreign_files(blob, message):
    with pytest.raises(FormatError, match=message):
        read_ssb(blob)


def test_trailing_bytes_are_refused(data):
    with pytest.raises(FormatError, match="5 unexpected bytes after the last section"):
        read_ssb(data + b"xxxxx")


def test_max_pixels(data):
    with pytest.raises(FormatError, match="^image is 70×40, over the limit of 2000 pixels$"):
        read_ssb(data, max_pixels=2000)
    assert read_ssb(data, max_pixels=2800).header.width == 70


# ---------------------------------------------------------------------------- forged fields


def _index_at(data: bytes, group: int) -> int:
    ssb = read_ssb(data)
    return ssb.header_size - 4 - INDEX_ENTRY_BYTES[ssb.version] * (3 - group)


def _mask_len_at(header: SsbHeader, data: bytes, version: int) -> int:
    return _index_at(data, 0) - len(encode_block_ids(header.block_ids)) - 4


FORGERIES = {
    # name: (position(header, data, version), struct format, value, message)
    "huge width and height": (lambda h, d, v: WIDTH_AT, "II", (0xFFFFFFFF, 0xFFFFFFFF),
                              "over the limit of 200000000 pixels"),
    "zero width": (lambda h, d, v: WIDTH_AT, "I", 0, "image size 0×40 is invalid"),
    "block size": (lambda h, d, v: BLOCK_AT, "H", 48, "block size 48 is not supported"),
    "channels": (lambda h, d, v: CHANNELS_AT, "B", 2, "channel count 2 is not supported"),
    "quality": (lambda h, d, v: QUALITY_AT, "f", 9.0, r"quality 9.0 is out of range"),
    "quality nan": (lambda h, d, v: QUALITY_AT, "f", float("nan"), r"quality nan is out of range"),
    "file flags": (lambda h, d, v: FILE_FLAGS_AT, "I", 2, "does not know"),
    "group count": (lambda h, d, v: COUNT_AT, "H", 0xFFFF, r"group count 65535 is out of range"),
    "no groups": (lambda h, d, v: COUNT_AT, "H", 0, r"group count 0 is out of range"),
    "name length": (lambda h, d, v: NAME0_AT, "B", 255, "255 bytes long, over the limit of 64"),
    "group flags": (lambda h, d, v: GROUP0_AT[v]["flags"], "B", 9, "unknown flags 0x09"),
    "params length": (lambda h, d, v: GROUP0_AT[v]["params_len"], "H", 0xFFFF, "over the limit of 1024"),
    "mask length": (_mask_len_at, "I", 0xFFFFFFFF, r"file is truncated \(header needs"),
    "length": (lambda h, d, v: _index_at(d, 2) + INDEX_ENTRY_BYTES[v] - 8, "I", 0xFFFFFFFF,
               "more than any file of this image size holds"),
    "absent with entry": (lambda h, d, v: GROUP0_AT[v]["flags"], "B", 0, "absent group 'person'"),
}
# Fields only version 2 has: what it stored twice must agree with the mask and the layout.
FORGERIES_V2 = {
    "bbox": (lambda h, d, v: GROUP0_AT[2]["bbox"], "IIII", (0, 0, 10**6, 32), "outside the 70×40 image"),
    "bbox not the blocks": (lambda h, d, v: GROUP0_AT[2]["bbox"], "IIII", (0, 0, 16, 32),
                            r"but its blocks cover \(0, 0, 32, 32\)"),
    "block count": (lambda h, d, v: GROUP0_AT[2]["blocks"], "I", 5, "5 blocks in the group table but 4"),
    "offset": (lambda h, d, v: _index_at(d, 0), "Q", 2**63, "section index is inconsistent"),
    "overlap": (lambda h, d, v: _index_at(d, 1), "Q", 0, "section index is inconsistent"),
}
FORGERY_CASES = [(v, name) for v in container.READ_VERSIONS for name in FORGERIES] + \
                [(2, name) for name in FORGERIES_V2]


@pytest.mark.parametrize("version, name", FORGERY_CASES)
def test_forged_fields_are_refused_before_allocation(header, version, name):
    data = dump_ssb(header, SECTIONS, version=version)
    where, fmt, value, message = {**FORGERIES, **FORGERIES_V2}[name]
    values = value if isinstance(value, tuple) else (value,)
    buf = bytearray(data)
    struct.pack_into("<" + fmt, buf, where(header, data, version), *values)
    hs = header_size(data)
    struct.pack_into("<I", buf, hs - 4, zlib.crc32(buf[:hs - 4]))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=message) as exc:
            read_ssb(bytes(buf))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(exc.value)
    assert peak < 1 << 20


def test_forged_mask_of_another_size(header, data):
    other = encode_block_ids(np.zeros((2, 2), np.uint8))
    at = _mask_len_at(header, data, 3)
    old_len = struct.unpack_from("<I", data, at)[0]
    buf = bytearray(data[:at] + struct.pack("<I", len(other)) + other + data[at + 4 + old_len:])
    hs = header_size(data) + len(other) - old_len
    struct.pack_into("<I", buf, hs - 4, zlib.crc32(buf[:hs - 4]))
    with pytest.raises(FormatError, match="block mask has the wrong size"):
        read_ssb(bytes(buf))


# -------------------------------------------------------------------------------- fuzzing

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 8)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
)
_FUZZ_HEADER = make_header()
_FUZZ_DATA = {v: dump_ssb(_FUZZ_HEADER, [SECTIONS[0], None, SECTIONS[2]], version=v)
              for v in container.READ_VERSIONS}


def _mutate(data: bytes, mutations, fix_crc: bool) -> bytes:
    hsize = read_ssb(data).header_size
    buf = bytearray(data)
    for kind, pos, arg in mutations:
        pos %= max(len(buf), 1)
        if kind == "flip" and buf:
            buf[pos] ^= 1 << arg
        elif kind == "set" and buf:
            buf[pos] = arg
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos:pos + arg]
        elif kind == "truncate":
            del buf[pos:]
    if fix_crc and len(buf) >= hsize:          # reach the checks behind the header CRC
        struct.pack_into("<I", buf, hsize - 4, zlib.crc32(buf[:hsize - 4]))
    return bytes(buf)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATION, min_size=1, max_size=4), st.booleans(), st.sampled_from(container.READ_VERSIONS))
def test_random_mutations_fail_cleanly(mutations, fix_crc, version):
    blob = _mutate(_FUZZ_DATA[version], mutations, fix_crc)
    try:
        ssb = read_ssb(blob)
        json.dumps(describe(ssb))
        for i, g in enumerate(ssb.header.groups):
            if g.present:
                try:
                    ssb.section(i)
                except CorruptSectionError as exc:
                    assert exc.group == g.name
    except SsicError as exc:
        assert str(exc) and "\n" not in str(exc)


# --------------------------------------------------------------------------------- writing


def _dup_name(h):
    h.groups[1].name = "person"


def _long_name(h):
    h.groups[0].name = "x" * 65


def _control(h):
    h.groups[0].name = "per\x1bson"


def _bidi(h):
    h.groups[0].label = "abc\u202e"


def _padded(h):
    h.groups[0].name = " person"


def _nfd(h):
    h.groups[0].name = "cafe\u0301"


def _empty_model(h):
    h.model_id = ""


def _quality(h):
    h.quality = 0.5


def _hash(h):
    h.weights_hash = b"short"


def _bbox(h):
    h.groups[0].bbox = (0, 0, 16, 16)


def _count(h):
    h.groups[0].block_count = 3


def _flags(h):
    h.groups[0].flags = 0x81


def _params(h):
    h.groups[0].params = bytes(1025)


def _mask_shape(h):
    h.block_ids = h.block_ids[:2]


def _mask_ids(h):
    h.block_ids = h.block_ids.astype(np.int64) * 0 + 7


def _block_size(h):
    h.block_size = 128


@pytest.mark.parametrize("spoil", [
    _dup_name, _long_name, _control, _bidi, _padded, _nfd, _empty_model, _quality, _hash, _bbox,
    _count, _flags, _params, _mask_shape, _mask_ids, _block_size,
])
def test_writer_refuses_an_invalid_header_and_leaves_nothing(header, tmp_path, spoil):
    bad = copy.deepcopy(header)
    spoil(bad)
    with pytest.raises(FormatError):
        dump_ssb(bad, SECTIONS)
    with pytest.raises(FormatError):
        write_ssb(tmp_path / "out.ssb", bad, SECTIONS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["cat,dog", "cat:dog", " cat", "cat\t", "", "red\x1b[31m", "rtl\u202e"])
def test_a_new_file_refuses_names_users_cannot_type_back(name):
    with pytest.raises(SsicError, match="cannot be used: .*-g a,b and --seal GROUPS:KEYFILE") as exc:
        make_header(names=["person", name, "background"])
    assert repr(name) in str(exc.value) and "\x1b" not in str(exc.value)
    labels = ["person", "car,truck", "background"]
    with pytest.raises(SsicError, match="class 'car,truck' cannot be used"):
        header_from_mask(70, 40, 3, GroupMask(16, make_header().block_ids, list(NAMES), labels), MODEL, HASH, 4.0)


def test_a_file_that_already_holds_such_a_name_still_reads_and_extracts(header):
    header.groups[1].name = "old,name:here"          # as an older ssic wrote it, past header_from_mask
    old = read_ssb(dump_ssb(header, SECTIONS))
    assert [g.name for g in old.header.groups][1] == "old,name:here"
    part = read_ssb(container.extract(old, [NAMES[0]]))
    assert part.header.groups[1].name == "old,name:here" and not part.header.groups[1].present


def test_writer_wants_one_section_per_group(header):
    with pytest.raises(FormatError, match="2 sections given for 3 groups"):
        dump_ssb(header, SECTIONS[:2])


def test_write_into_missing_directory_leaves_nothing(header, tmp_path):
    with pytest.raises(SsicError, match="output directory .*nope does not exist"):
        write_ssb(tmp_path / "nope" / "out.ssb", header, SECTIONS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_no_temp(header, data, tmp_path, monkeypatch, error):
    target = tmp_path / "out.ssb"
    target.write_bytes(b"old contents")

    def fail(*args):
        raise error

    monkeypatch.setattr(container.os, "replace", fail)
    with pytest.raises(SsicError if isinstance(error, OSError) else KeyboardInterrupt):
        write_ssb(target, header, SECTIONS)
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"old contents"


def test_write_replaces_and_uses_normal_permissions(header, data, tmp_path):
    target = tmp_path / "out.ssb"
    target.write_bytes(b"old")
    write_ssb(str(target), header, SECTIONS)
    assert target.read_bytes() == data
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_sections_of_a_file_that_changed_are_refused(header, tmp_path):
    path = tmp_path / "a.ssb"
    write_ssb(path, header, SECTIONS)
    ssb = read_ssb(path)
    assert ssb.section(1) == SECTIONS[1]
    write_ssb(path, header, [b"other", b"bytes", b"here"])
    with pytest.raises(SsicError, match="changed since it was opened"):
        ssb.section(1)
    path.unlink()
    with pytest.raises(SsicError, match="cannot read"):
        ssb.section(0)
    with pytest.raises(SsicError, match="a.ssb: no such file"):
        read_ssb(path)


def test_header_from_mask_checks_the_grid():
    gm = single_group(64, 64, 32)
    with pytest.raises(SsicError, match="needs 1×2"):
        header_from_mask(64, 32, 3, gm, MODEL, HASH, 4.0)


def test_group_entry_normalises_fields():
    g = GroupEntry("a", "a", [np.int64(0), 0, 16, 16], 1, params=bytearray(b"p"))
    assert g.bbox == (0, 0, 16, 16) and g.params == b"p" and isinstance(g.params, bytes)
