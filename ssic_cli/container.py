"""The ``.ssb`` container: header, block mask, index of sections, then one section per group.

Pure Python + numpy (no torch), so ``ssic inspect``, ``ssic extract`` and an image plugin can
read files without loading a model. The byte layout is in ``docs/FORMAT.md``.

Reading checks every field before it allocates anything whose size comes from the file, and
every failure is a ``FormatError`` with a one-line message. Only the header is read up front;
``SsbFile.section(i)`` fetches one group's bytes on demand and checks its CRC-32, so a damaged
section loses that group only.

Example (a one-group file, written and read back):

>>> from ssic_cli.mask import single_group
>>> h = header_from_mask(64, 48, 3, single_group(64, 48), "tiny", bytes(16), 4.0)
>>> ssb = read_ssb(dump_ssb(h, [b"rANS words"]))
>>> ssb.header == h, ssb.section(0)
(True, b'rANS words')
"""
from __future__ import annotations

import os
import secrets
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Optional, Sequence, Union

import numpy as np

from .atomic import write_bytes
from .errors import CorruptSectionError, FormatError, SsicError
from .limits import QUALITY_MAX, QUALITY_MIN
from .sources import open_source
from .mask import (BLOCK_SIZES, FORBIDDEN_CATEGORIES, MAX_GROUPS, GroupMask, check_group_name, decode_block_ids,
                   encode_block_ids, grid_shape)

__all__ = [
    "MAGIC", "VERSION", "READ_VERSIONS", "FLAG_PRESENT", "FLAG_SEALED", "FLAG_SCRAMBLED", "DEFAULT_MAX_PIXELS",
    "CorruptSectionError", "GroupEntry", "SsbHeader", "SsbFile", "header_from_mask", "dump_ssb",
    "write_ssb", "read_ssb", "extract_ssb", "describe", "flag_words", "is_ssb",
]

MAGIC = b"\x89SSB\r\n\x1a\n"       # PNG-style: high bit, CR LF, ^Z, LF catch text-mode damage
# Version 3 drops what version 2 stored twice: each group's bbox and block count (the block mask
# says them) and each section's offset (the payload is canonical): 28 bytes per group. Both read.
VERSION = 3
READ_VERSIONS = (2, 3)
# Versions this reader knows of but no longer decodes, and why (said in the error).
_RETIRED_VERSIONS = {
    1: "its entropy parameters came from float networks and decoded only on CPUs like the "
       "encoder's; re-encode the source (or decode it, on the encoder's kind of CPU, with the "
       "ssic that wrote it: git history before format version 2)",
}
FLAG_PRESENT, FLAG_SEALED, FLAG_SCRAMBLED = 1, 2, 4
# File flags. TILED: the image was coded in tiles of at most ``tile_size`` pixels (a u16 after
# the file id says how large); each group's section holds one part per tile it touches.
FILE_TILED = 1
KNOWN_FILE_FLAGS = FILE_TILED
TILE_ALIGN = 128                    # tile sides are multiples of this (the model's window grid)
TILE_RANGE = (256, 16384)
KNOWN_GROUP_FLAGS = FLAG_PRESENT | FLAG_SEALED | FLAG_SCRAMBLED
CHANNELS = (1, 3)
HASH_BYTES = 16
MAX_TEXT_BYTES = 64                 # model id, group names and labels (UTF-8 bytes)
MAX_PARAMS_BYTES = 1024
MAX_SECTION_BYTES = 0xFFFFFFFF
DEFAULT_MAX_PIXELS = 200_000_000

_PREAMBLE = struct.Struct("<8sH")       # magic, version
_IMAGE = struct.Struct("<IIHB")         # width, height, block size, channels
_CODING = struct.Struct("<16sfI16s")    # weights hash, quality, file flags, file id (after the model id)
FILE_ID_BYTES = 16
_U8, _U16, _U32 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I")
_GROUP_BOX_V2 = struct.Struct("<IIIII")  # version 2 only: bbox x0 y0 x1 y1, block count
_INDEX_ENTRY = {2: struct.Struct("<QII"),  # offset in payload, length, CRC-32
                3: struct.Struct("<II")}   # length, CRC-32 (offsets follow from the lengths)

PathOrBytes = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


@dataclass
class GroupEntry:
    """One row of the group table. ``bbox`` is (x0, y0, x1, y1) in pixels, half-open.

    ``params`` is opaque to the container (the crypto module keeps salt, nonce, KDF settings
    there).

    >>> GroupEntry("person", "person", (0, 0, 32, 32), 1).present
    True
    """

    name: str
    label: str
    bbox: tuple[int, int, int, int]
    block_count: int
    flags: int = FLAG_PRESENT
    params: bytes = b""

    def __post_init__(self):
        self.bbox = tuple(int(v) for v in self.bbox)
        self.params = bytes(self.params)

    @property
    def present(self) -> bool:
        return bool(self.flags & FLAG_PRESENT)


@dataclass(eq=False)
class SsbHeader:
    """Everything before the payload. ``block_ids`` is the (rows, cols) uint8 group of each block.

    ``quality`` is stored as float32; it is kept here as the shortest decimal that gives the same
    float32, so a header compares equal to itself after a round trip.

    >>> from ssic_cli.mask import single_group
    >>> h = header_from_mask(64, 48, 1, single_group(64, 48), "tiny", bytes(16), 1.3)
    >>> h.quality, h.index_of("background"), h.group_mask().names
    (1.3, 0, ['background'])
    """

    width: int
    height: int
    block_size: int
    channels: int
    model_id: str
    weights_hash: bytes
    quality: float
    groups: list[GroupEntry]
    block_ids: np.ndarray
    # Random per file (version 2): sealed sections are bound to it, so two files with otherwise
    # identical headers cannot swap sealed sections unnoticed; ``extract`` keeps it.
    file_id: bytes = field(default_factory=lambda: secrets.token_bytes(FILE_ID_BYTES))
    # Largest tile side in pixels; 0 = the image is one tile (see ``docs/FORMAT.md``, *Tiles*).
    tile_size: int = 0

    def __post_init__(self):
        self.weights_hash = bytes(self.weights_hash)
        self.file_id = bytes(self.file_id)
        self.quality = _as_float32(self.quality)
        self.block_ids = np.asarray(self.block_ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SsbHeader):
            return NotImplemented
        scalars = ("width", "height", "block_size", "channels", "model_id", "weights_hash",
                   "quality", "groups", "file_id", "tile_size")
        return (all(getattr(self, k) == getattr(other, k) for k in scalars)
                and self.block_ids.shape == other.block_ids.shape
                and bool(np.array_equal(self.block_ids, other.block_ids)))

    def group_mask(self) -> GroupMask:
        return GroupMask(self.block_size, self.block_ids, [g.name for g in self.groups],
                         [g.label for g in self.groups])

    def index_of(self, name: str) -> int:
        """Position of the group called ``name``; ``SsicError`` listing the names otherwise."""
        return self.group_mask().index_of(name)


@dataclass(eq=False)
class SsbFile:
    """A parsed ``.ssb``: the header and the index, with section bytes read on demand.

    ``index[i]`` is (offset from the start of the payload, length, CRC-32); absent groups have
    (0, 0, 0). ``header_size`` is where the payload starts, ``file_size`` the whole file,
    ``version`` the format version the file was written in.

    >>> from ssic_cli.mask import single_group
    >>> h = header_from_mask(64, 48, 3, single_group(64, 48), "tiny", bytes(16), 4.0)
    >>> ssb = read_ssb(dump_ssb(h, [b"abc"]))
    >>> ssb.index, ssb.section(0), ssb.file_size - ssb.header_size
    ([(0, 3, 891568578)], b'abc', 3)
    """

    header: SsbHeader
    index: list[tuple[int, int, int]]
    header_size: int = 0
    file_size: int = 0
    version: int = VERSION
    _source: Optional[object] = field(default=None, repr=False)

    def prefetch(self, groups: Sequence[int]) -> None:
        """Let the byte source fetch these groups' sections together (over HTTP: few range
        requests instead of one per section); a no-op for local sources."""
        fetch = getattr(self._source, "prefetch", None)
        if fetch is not None:
            present = [i for i in groups if 0 <= i < len(self.index) and self.header.groups[i].present]
            fetch([(self.header_size + self.index[i][0], self.index[i][1]) for i in present])

    def transfer(self) -> Optional[dict]:
        """Bytes fetched so far against the file size, for a remote file (else None)."""
        fetched = getattr(self._source, "fetched", None)
        if fetched is None:
            return None
        return {"fetched_bytes": fetched, "file_bytes": self.file_size, "requests": self._source.requests}

    def section(self, i: int) -> bytes:
        """The bytes of group ``i``'s section, checked against the index's length and CRC-32.

        Raises ``CorruptSectionError`` (for this group only) on a mismatch and ``SsicError`` if
        the group is not in the file.
        """
        groups = self.header.groups
        if not 0 <= i < len(groups):
            raise SsicError(f"no group number {i}; this file has {len(groups)} groups")
        g = groups[i]
        if not g.present:
            raise SsicError(f"group {g.name!r} is not in this file (it was left out by extract)")
        if self._source is None:
            raise SsicError("this SsbFile has no bytes attached; read it with read_ssb")
        offset, length, crc = self.index[i]
        data = self._source.read(self.header_size + offset, length)
        if len(data) != length:
            raise CorruptSectionError(f"section of group {g.name!r} is truncated", g.name)
        if zlib.crc32(data) != crc:
            raise CorruptSectionError(
                f"section of group {g.name!r} is damaged (CRC-32 mismatch)", g.name)
        return data


# --------------------------------------------------------------------------------- building


def header_from_mask(width: int, height: int, channels: int, gm: GroupMask, model_id: str,
                     weights_hash: bytes, quality: float, tile_size: int = 0) -> SsbHeader:
    """A header whose bboxes (pixels) and block counts come from ``gm``; every group present.
    Every new file is made here, so here its names must be ones a user can select
    (``mask.check_group_name``); the reader still accepts any name an older file holds.

    >>> from ssic_cli.mask import single_group
    >>> h = header_from_mask(70, 40, 3, single_group(70, 40, 32), "m", bytes(16), 2.0)
    >>> h.groups[0].bbox, h.groups[0].block_count, h.block_ids.shape
    ((0, 0, 70, 40), 6, (2, 3))
    """
    want = grid_shape(width, height, gm.block_size)
    if gm.ids.shape != want:
        raise SsicError(f"group mask is {_dims(gm.ids.shape)} blocks but a {width}×{height} image "
                        f"with {gm.block_size}-pixel blocks needs {_dims(want)}")
    for name, label in zip(gm.names, gm.labels):
        check_group_name(name)
        if label:
            check_group_name(label, "class")
    groups = [GroupEntry(name, gm.labels[i], gm.bbox_pixels(i, width, height), gm.block_count(i))
              for i, name in enumerate(gm.names)]
    return SsbHeader(width, height, gm.block_size, channels, model_id, weights_hash, quality,
                     groups, gm.ids.copy(), tile_size=tile_size)


def dump_ssb(header: SsbHeader, sections: Sequence[Optional[bytes]], version: int = VERSION) -> bytes:
    """The bytes of a ``.ssb`` file; ``sections[i] is None`` leaves group i out.

    The PRESENT flag written for each group follows ``sections`` (other flag bits are kept).
    ``version`` 2 writes the older layout (for readers that know only it); the sections are the
    same bytes in both. Raises ``FormatError`` if the header would not read back (see ``read_ssb``).

    >>> from ssic_cli.mask import single_group
    >>> h = header_from_mask(64, 48, 3, single_group(64, 48), "tiny", bytes(16), 4.0)
    >>> data = dump_ssb(h, [b"xyz"])
    >>> data[:8] == MAGIC, read_ssb(data).section(0)
    (True, b'xyz')
    """
    _check_header(header, max_pixels=None)
    if len(sections) != len(header.groups):
        raise FormatError(f"{len(sections)} sections given for {len(header.groups)} groups")
    if version not in READ_VERSIONS:
        raise FormatError(f"cannot write .ssb version {version} (versions {_versions()})")
    head = bytearray(_PREAMBLE.pack(MAGIC, version))
    head += _IMAGE.pack(header.width, header.height, header.block_size, header.channels)
    head += _pack_text(header.model_id)
    head += _CODING.pack(header.weights_hash, header.quality, FILE_TILED if header.tile_size else 0, header.file_id)
    if header.tile_size:
        head += _U16.pack(header.tile_size)
    head += _U16.pack(len(header.groups))
    for g, data in zip(header.groups, sections):
        flags = (g.flags & ~FLAG_PRESENT) | (FLAG_PRESENT if data is not None else 0)
        head += _pack_text(g.name) + _pack_text(g.label)
        if version == 2:
            head += _GROUP_BOX_V2.pack(*g.bbox, g.block_count)
        head += _U8.pack(flags) + _U16.pack(len(g.params)) + g.params
    mask = encode_block_ids(header.block_ids)
    head += _U32.pack(len(mask)) + mask
    payload, offset = [], 0
    for g, data in zip(header.groups, sections):
        entry = (0, 0, 0)
        if data is not None:
            data = bytes(data)
            if len(data) > MAX_SECTION_BYTES:
                raise FormatError(f"section of group {g.name!r} is {len(data)} bytes, "
                                  f"over the format's limit of {MAX_SECTION_BYTES}")
            entry = (offset, len(data), zlib.crc32(data))
            payload.append(data)
            offset += len(data)
        head += _INDEX_ENTRY[version].pack(*(entry if version == 2 else entry[1:]))
    head += _U32.pack(zlib.crc32(head))
    return b"".join([bytes(head), *payload])


def write_ssb(path: Union[str, os.PathLike], header: SsbHeader,
              sections: Sequence[Optional[bytes]]) -> None:
    """Write a ``.ssb`` atomically: a temporary file in the same directory, then ``os.replace``.

    On any failure nothing is left behind and an existing file at ``path`` is untouched.

    >>> import tempfile, pathlib
    >>> from ssic_cli.mask import single_group
    >>> h = header_from_mask(64, 48, 3, single_group(64, 48), "tiny", bytes(16), 4.0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_ssb(pathlib.Path(d) / "a.ssb", h, [b"abc"])
    ...     read_ssb(pathlib.Path(d) / "a.ssb").section(0)
    b'abc'
    """
    write_bytes(path, dump_ssb(header, sections))


def extract_ssb(src: SsbFile, keep: Sequence[int]) -> bytes:
    """A smaller ``.ssb`` holding only the groups in ``keep``; their bytes are copied verbatim.

    The other groups become absent (PRESENT cleared, other flags and params kept). Kept sections
    are CRC-checked first, so a damaged one raises ``CorruptSectionError`` instead of spreading.
    The result has the source's format version: whoever reads the source reads the extract.

    >>> from ssic_cli.mask import GroupMask
    >>> gm = GroupMask(32, np.array([[0, 1]], np.uint8), ["person", "background"])
    >>> h = header_from_mask(64, 32, 3, gm, "m", bytes(16), 4.0)
    >>> ssb = read_ssb(dump_ssb(h, [b"p", b"bg"]))
    >>> small = read_ssb(extract_ssb(ssb, [0]))
    >>> small.section(0), small.header.groups[1].present
    (b'p', False)
    """
    groups = src.header.groups
    for i in keep:
        if not 0 <= i < len(groups):
            raise SsicError(f"no group number {i}; this file has {len(groups)} groups")
        if not groups[i].present:
            raise SsicError(f"group {groups[i].name!r} is not in this file "
                            "(it was left out by an earlier extract)")
    kept = set(keep)
    return dump_ssb(src.header, [src.section(i) if i in kept else None for i in range(len(groups))],
                    version=src.version)


# ---------------------------------------------------------------------------------- reading


def is_ssb(prefix: bytes) -> bool:
    """True if ``prefix`` (the first bytes of a file) starts with the ``.ssb`` magic."""
    return bytes(prefix[:len(MAGIC)]) == MAGIC


def select_groups(header: "SsbHeader", groups: Optional[Sequence[str]]) -> list[int]:
    """Indexes of the named groups (all when None or empty); an unknown name is an error."""
    if not groups:
        return list(range(len(header.groups)))
    return sorted({header.index_of(name) for name in groups})


def extract(data: "bytes | SsbFile", groups: Sequence[str]) -> bytes:
    """A smaller, valid .ssb holding only ``groups`` (section bytes copied verbatim); needs no
    model, so ``ssic extract`` never imports torch."""
    if not groups:        # unlike decode, "nothing named" must not mean "everything"
        raise SsicError("extract needs at least one group name")
    ssb = data if isinstance(data, SsbFile) else read_ssb(data)
    keep = select_groups(ssb.header, groups)
    ssb.prefetch(keep)
    return extract_ssb(ssb, keep)


def inspect(data: "bytes | SsbFile") -> dict:
    """``describe`` of a file given as bytes or parsed."""
    return describe(data if isinstance(data, SsbFile) else read_ssb(data))


def read_ssb(path_or_bytes: PathOrBytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> SsbFile:
    """Parse and validate the header of a ``.ssb`` (path, ``http(s)://`` URL, bytes, or seekable
    binary file).

    Only the header is read; sections are fetched by ``SsbFile.section`` (over HTTP, with range
    requests: see ``sources``). Images over
    ``max_pixels`` are refused. Every problem with the file raises ``FormatError``; a path that
    cannot be opened raises ``SsicError``.

    >>> from ssic_cli.mask import single_group
    >>> h = header_from_mask(64, 48, 3, single_group(64, 48), "tiny", bytes(16), 4.0)
    >>> read_ssb(dump_ssb(h, [b"abc"])).header.width
    64
    >>> read_ssb(b"GIF89a...")
    Traceback (most recent call last):
    ssic_cli.errors.FormatError: not an .ssb file
    """
    source = open_source(path_or_bytes)
    try:
        return _parse(source, max_pixels)
    finally:
        release = getattr(source, "release", None)
        if release is not None:
            release()


def flag_words(flags: int) -> list[str]:
    """Group flags as words: ``["present" | "absent", "sealed"?, "scrambled"?]``.

    >>> flag_words(FLAG_SEALED)
    ['absent', 'sealed']
    """
    words = ["present" if flags & FLAG_PRESENT else "absent"]
    words += ["sealed"] * bool(flags & FLAG_SEALED) + ["scrambled"] * bool(flags & FLAG_SCRAMBLED)
    return words


def describe(ssb: SsbFile) -> dict:
    """A JSON-able summary (what ``ssic inspect --json`` prints).

    ``bpp`` is the whole file's size in bits per image pixel; a group's ``bytes`` is its section.

    >>> from ssic_cli.mask import single_group
    >>> h = header_from_mask(64, 48, 3, single_group(64, 48), "tiny", bytes(16), 4.0)
    >>> d = describe(read_ssb(dump_ssb(h, [b"abc"])))
    >>> d["groups"][0]["bytes"], d["groups"][0]["flags"], d["total_bytes"] == d["header_bytes"] + 3
    (3, ['present'], True)
    """
    h = ssb.header
    return {
        "format": "ssb",
        "version": ssb.version,
        "width": h.width,
        "height": h.height,
        "channels": h.channels,
        "block_size": h.block_size,
        "model_id": h.model_id,
        "weights_hash": h.weights_hash.hex(),
        "quality": h.quality,
        "file_id": h.file_id.hex(),
        "tile_size": h.tile_size,
        "total_bytes": ssb.file_size,
        "header_bytes": ssb.header_size,
        "bpp": ssb.file_size * 8 / (h.width * h.height),
        "groups": [{"name": g.name, "label": g.label, "bbox": list(g.bbox),
                    "blocks": g.block_count, "bytes": ssb.index[i][1], "flags": flag_words(g.flags)}
                   for i, g in enumerate(h.groups)],
    }


# ---------------------------------------------------------------------- parsing, in detail


def _parse(src, max_pixels: int) -> SsbFile:
    """Structure first (lengths vs the bytes present), then the header CRC, then the meaning."""
    cur = _Cursor(src)
    _check_magic(src)
    cur.pos = len(MAGIC)
    (version,) = cur.unpack(_U16)
    if version in _RETIRED_VERSIONS:
        raise FormatError(f"this is a version-{version} .ssb file and this ssic reads versions "
                          f"{_versions()}: {_RETIRED_VERSIONS[version]}")
    if version not in READ_VERSIONS:
        raise FormatError(f"unsupported .ssb version {version} (this ssic reads versions {_versions()})")
    width, height, block_size, channels = cur.unpack(_IMAGE)
    model_id = cur.blob(_U8, MAX_TEXT_BYTES, "model id")
    weights_hash, quality, file_flags, file_id = cur.unpack(_CODING)
    (tile_size,) = cur.unpack(_U16) if file_flags & FILE_TILED else (0,)
    (count,) = cur.unpack(_U16)
    if not 1 <= count <= MAX_GROUPS:
        raise FormatError(f"group count {count} is out of range (1..{MAX_GROUPS})")
    raw_groups = [_read_raw_group(cur, i, version) for i in range(count)]
    (mask_len,) = cur.unpack(_U32)
    mask_at = cur.skip(mask_len)
    index = [cur.unpack(_INDEX_ENTRY[version]) for _ in range(count)]
    crc_at = cur.pos
    (stored_crc,) = cur.unpack(_U32)
    if src.crc(0, crc_at) != stored_crc:
        raise FormatError("header checksum mismatch: the file is damaged")

    if file_flags & ~KNOWN_FILE_FLAGS:
        raise FormatError(f"file uses features this ssic does not know (file flags "
                          f"0x{file_flags:08x}); a newer ssic may read it")
    if file_flags & FILE_TILED and not tile_size:
        raise FormatError("tiled file with a tile size of 0")
    _check_image(width, height, block_size, channels, max_pixels)
    rows, cols = grid_shape(width, height, block_size)
    if mask_len > rows * cols + (rows * cols >> 8) + 64:    # more than zlib could ever need
        raise FormatError(f"block mask is {mask_len} bytes, too large for "
                          f"{_dims((rows, cols))} blocks")
    ids = decode_block_ids(src.read(mask_at, mask_len), rows, cols, count)
    if version != 2:                         # bbox and block count: the mask's, as the writer's were
        gm = GroupMask(block_size, ids, [f"#{i}" for i in range(count)])
        raw_groups = [(name, label, gm.bbox_pixels(i, width, height), gm.block_count(i), flags, params)
                      for i, (name, label, _, _, flags, params) in enumerate(raw_groups)]
    header = SsbHeader(width, height, block_size, channels, _decode_text(model_id, "model id"),
                       weights_hash, quality, [_decode_group(i, *raw) for i, raw in
                                               enumerate(raw_groups)], ids, file_id, tile_size)
    _check_header(header, max_pixels)
    if version != 2:
        index = _with_offsets(header.groups, index)
    _check_index(header.groups, index, src, cur.pos, _payload_limit(width, height, count))
    return SsbFile(header, [tuple(e) for e in index], cur.pos, src.size, version, src)


def _available(src, end: int) -> int:
    """How many of the bytes [0, end) the source holds; a stream reads only that far."""
    available = getattr(src, "available", None)
    return available(end) if available is not None else min(end, src.size)


class _Cursor:
    """Walks the header, checking each length against the bytes that remain before reading."""

    def __init__(self, src):
        self.src, self.pos = src, 0

    def need(self, n: int) -> None:
        have = _available(self.src, self.pos + n)
        if have < self.pos + n:
            raise FormatError(f"file is truncated (header needs {self.pos + n} bytes, file has {have})")

    def take(self, n: int) -> bytes:
        self.need(n)
        data = self.src.read(self.pos, n)
        self.pos += n
        return data

    def skip(self, n: int) -> int:
        self.need(n)
        self.pos += n
        return self.pos - n

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))

    def blob(self, length: struct.Struct, limit: int, what: str) -> bytes:
        (n,) = self.unpack(length)
        if n > limit:
            raise FormatError(f"{what} is {n} bytes long, over the limit of {limit}")
        return self.take(n)


def _read_raw_group(cur: _Cursor, i: int, version: int) -> tuple:
    """(name, label, bbox, block count, flags, params); bbox and count are None after version 2."""
    name = cur.blob(_U8, MAX_TEXT_BYTES, f"name of group #{i}")
    label = cur.blob(_U8, MAX_TEXT_BYTES, f"label of group #{i}")
    bbox, blocks = None, None
    if version == 2:
        *bbox, blocks = cur.unpack(_GROUP_BOX_V2)
        bbox = tuple(bbox)
    (flags,) = cur.unpack(_U8)
    params = cur.blob(_U16, MAX_PARAMS_BYTES, f"params of group #{i}")
    return name, label, bbox, blocks, flags, params


def _with_offsets(groups: list[GroupEntry], entries: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Version-3 (length, CRC) entries as (offset, length, CRC): the canonical layout's offsets
    (absent groups: offset 0, their length and CRC kept for ``_check_index`` to refuse)."""
    out, offset = [], 0
    for g, (length, crc) in zip(groups, entries):
        if not g.present:
            out.append((0, length, crc))
            continue
        out.append((offset, length, crc))
        offset += length
    return out


def _decode_group(i: int, name: bytes, label: bytes, bbox: tuple, blocks: int, flags: int,
                  params: bytes) -> GroupEntry:
    return GroupEntry(_decode_text(name, f"name of group #{i}"),
                      _decode_text(label, f"label of group #{i}"), bbox, blocks, flags, params)


def _versions() -> str:
    return " and ".join(map(str, READ_VERSIONS))


def _check_magic(src) -> None:
    head = src.read(0, _available(src, len(MAGIC) + 2))
    if head[:len(MAGIC)] == MAGIC:
        return
    if not head:
        raise FormatError("not an .ssb file (the file is empty)")
    if len(head) < len(MAGIC) and MAGIC.startswith(head):
        raise FormatError(f"file is truncated (header needs {len(MAGIC)} bytes, "
                          f"file has {len(head)})")
    for damaged in (MAGIC.replace(b"\r\n", b"\n"), MAGIC.replace(b"\n", b"\r\n")):
        if head.startswith(damaged):
            raise FormatError("not a valid .ssb file: its line endings were converted "
                              "(copied in text mode); copy it again as binary")
    raise FormatError("not an .ssb file")


def _payload_limit(width: int, height: int, groups: int) -> int:
    """More payload than any encoder writes for such an image: 64 bits per pixel of the image
    padded to a 128-pixel grid (coded files stay below 16), plus 64 kB per group (seal tags,
    tile-part lengths). A header that claims more is forged, and a stream is not read that far."""
    return 8 * (-(-width // 128) * 128) * (-(-height // 128) * 128) + 65536 * groups


def _check_index(groups: list[GroupEntry], index: list[tuple], src, header_size: int, limit: int) -> None:
    """Sections are the present groups' bytes, in group order, back to back, to the end of file.

    So the index can never point outside the file, sections never overlap, and a file from
    ``extract`` holds no hidden bytes of the groups it dropped. A stream is read up to one byte
    past where the index says the file ends, never further.
    """
    expected = 0
    for g, (offset, length, crc) in zip(groups, index):
        if not g.present:
            if (offset, length, crc) != (0, 0, 0):
                raise FormatError(f"section index is inconsistent: absent group {g.name!r} "
                                  "has an entry")
            continue
        if offset != expected:
            raise FormatError(f"section index is inconsistent: group {g.name!r} starts at "
                              f"payload offset {offset}, expected {expected}")
        expected += length
    if expected > limit:
        raise FormatError(f"section index claims {expected} bytes of sections, more than any "
                          f"file of this image size holds ({limit})")
    payload_size = _available(src, header_size + expected + 1) - header_size
    if expected > payload_size:
        raise FormatError(f"file is truncated (sections need {expected} bytes after the header, "
                          f"file has {payload_size})")
    if expected < payload_size:
        extra = src.size - header_size - expected if src.size >= 0 else "more"    # -1: a stream not read to its end
        raise FormatError(f"file has {extra} unexpected bytes after the last section")


# ------------------------------------------------------------- checks shared by both sides


def _check_header(h: SsbHeader, max_pixels: Optional[int]) -> None:
    """Everything ``read_ssb`` requires of a header; ``dump_ssb`` runs it too."""
    _check_image(h.width, h.height, h.block_size, h.channels, max_pixels)
    _check_text(h.model_id, "model id", allow_empty=False)
    if len(h.weights_hash) != HASH_BYTES:
        raise FormatError(f"weights hash must be {HASH_BYTES} bytes, got {len(h.weights_hash)}")
    if len(h.file_id) != FILE_ID_BYTES:
        raise FormatError(f"file id must be {FILE_ID_BYTES} bytes, got {len(h.file_id)}")
    if h.tile_size and not (TILE_RANGE[0] <= h.tile_size <= TILE_RANGE[1] and h.tile_size % TILE_ALIGN == 0):
        raise FormatError(f"tile size {h.tile_size} is invalid (a multiple of {TILE_ALIGN} "
                          f"from {TILE_RANGE[0]} to {TILE_RANGE[1]})")
    lo, hi = QUALITY_MIN, QUALITY_MAX
    if not lo <= h.quality <= hi:
        raise FormatError(f"quality {h.quality} is out of range ({lo}..{hi})")
    if not 1 <= len(h.groups) <= MAX_GROUPS:
        raise FormatError(f"group count {len(h.groups)} is out of range (1..{MAX_GROUPS})")
    _check_block_ids(h)
    names = [g.name for g in h.groups]
    for i, g in enumerate(h.groups):
        _check_text(g.name, f"name of group #{i}", allow_empty=False)
        _check_text(g.label, f"label of group #{i}", allow_empty=True)
        if g.name in names[:i]:
            raise FormatError(f"group name {g.name!r} is used twice")
    gm = h.group_mask()
    counts = np.bincount(h.block_ids.ravel(), minlength=len(h.groups))
    for i, g in enumerate(h.groups):
        _check_group(g, gm, i, int(counts[i]), h.width, h.height)


def _check_image(width: int, height: int, block_size: int, channels: int,
                 max_pixels: Optional[int]) -> None:
    if not (0 < width <= 0xFFFFFFFF and 0 < height <= 0xFFFFFFFF):
        raise FormatError(f"image size {width}×{height} is invalid "
                          "(each side must be 1..4294967295 pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise FormatError(f"image is {width}×{height}, over the limit of {max_pixels} pixels")
    if block_size not in BLOCK_SIZES:
        raise FormatError(f"block size {block_size} is not supported "
                          f"({', '.join(map(str, BLOCK_SIZES))})")
    if channels not in CHANNELS:
        raise FormatError(f"channel count {channels} is not supported (1 or 3)")


def _check_block_ids(h: SsbHeader) -> None:
    ids, want = h.block_ids, grid_shape(h.width, h.height, h.block_size)
    if ids.shape != want:
        raise FormatError(f"block mask is {_dims(ids.shape)} blocks, a {h.width}×{h.height} image "
                          f"with {h.block_size}-pixel blocks needs {_dims(want)}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise FormatError(f"block mask must hold integers, got {ids.dtype}")
    if int(ids.min()) < 0 or int(ids.max()) >= len(h.groups):
        raise FormatError("block mask refers to a group missing from the group table")


def _check_group(g: GroupEntry, gm: GroupMask, i: int, blocks: int, width: int,
                 height: int) -> None:
    what = f"group {g.name!r}"
    if not 0 <= g.flags <= 0xFF or g.flags & ~KNOWN_GROUP_FLAGS:
        raise FormatError(f"{what} has unknown flags 0x{g.flags:02x}; a newer ssic may read it")
    if len(g.params) > MAX_PARAMS_BYTES:
        raise FormatError(f"params of {what} are {len(g.params)} bytes, over the limit of "
                          f"{MAX_PARAMS_BYTES}")
    if g.block_count != blocks:
        raise FormatError(f"{what} has {g.block_count} blocks in the group table but {blocks} "
                          "in the block mask")
    if len(g.bbox) != 4:
        raise FormatError(f"{what} has bbox {g.bbox}; it needs 4 numbers (x0, y0, x1, y1)")
    x0, y0, x1, y1 = g.bbox
    if blocks and not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise FormatError(f"{what} has bbox {g.bbox}, outside the {width}×{height} image")
    want = gm.bbox_pixels(i, width, height)
    if g.bbox != want:
        raise FormatError(f"{what} has bbox {g.bbox} but its blocks cover {want}")


def _check_text(s: str, what: str, *, allow_empty: bool) -> bytes:
    """Names are short, printable, NFC (so what a user types matches) and not padded."""
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, got {type(s).__name__}")
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{what} is not valid Unicode") from None
    if not raw and not allow_empty:
        raise FormatError(f"{what} is empty")
    if len(raw) > MAX_TEXT_BYTES:
        raise FormatError(f"{what} is {len(raw)} bytes long in UTF-8, over the limit of "
                          f"{MAX_TEXT_BYTES}")
    bad = next((c for c in s if unicodedata.category(c) in FORBIDDEN_CATEGORIES), None)
    if bad is not None:
        raise FormatError(f"{what} {s!r} contains the control character U+{ord(bad):04X}")
    if s != s.strip():
        raise FormatError(f"{what} {s!r} starts or ends with white space")
    if not unicodedata.is_normalized("NFC", s):
        raise FormatError(f"{what} {s!r} is not in Unicode normal form NFC")
    return raw


def _decode_text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not valid UTF-8") from None


def _pack_text(s: str) -> bytes:
    raw = s.encode("utf-8")       # already checked by _check_header
    return _U8.pack(len(raw)) + raw


def _as_float32(value: float) -> float:
    """The shortest decimal with the same float32 as ``value`` (1.3 stays 1.3, not 1.2999…)."""
    with np.errstate(over="ignore"):
        return float(str(np.float32(value)))


def _dims(shape: tuple) -> str:
    return "×".join(str(n) for n in shape)
