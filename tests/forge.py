"""A check-free writer of ``.ssb`` bytes, for building forgeries in tests.

``container.dump_ssb`` refuses what a forger would write (a present group without blocks, a
model id that is a path, control characters in names, params it cannot read, index entries
that do not match the sections …). ``forge`` writes the layout of docs/FORMAT.md (version 3,
and version 2 with ``version=2``) field by field and checks nothing: every value, length,
count and CRC can be given. By default the derived fields (lengths, group count, mask length,
index entries, header CRC) are computed from what is given, so a forgery changes only what it
names.

    >>> data = forge(64, 48, mask=np.zeros((2, 2), np.uint8), groups=[Group("bg")], sections=[b"abcd"])
    >>> from ssic_cli.container import read_ssb
    >>> read_ssb(data).section(0)
    b'abcd'
    >>> fields = fields_of(data)        # a real file's fields, to forge one thing of it
    >>> forge(**fields) == data, forge(**{**fields, "header_crc": 0}) == data
    (True, False)
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import numpy as np

MAGIC = b"\x89SSB\r\n\x1a\n"
PRESENT, SEALED, SCRAMBLED = 1, 2, 4
TILED = 1

Text = Union[str, bytes]


def _raw(text: Text) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


@dataclass
class Group:
    """One group record. ``*_len`` override the written lengths (None: the true length);
    ``bbox`` / ``blocks`` are written by version 2 only (None: derived from the mask)."""

    name: Text = "background"
    label: Text = ""
    flags: int = PRESENT
    params: bytes = b""
    name_len: Optional[int] = None
    label_len: Optional[int] = None
    params_len: Optional[int] = None
    bbox: Optional[tuple] = None
    blocks: Optional[int] = None


def mask_blob(ids: np.ndarray) -> bytes:
    """The block mask as the format stores it: zlib of the uint8 grid, row-major."""
    return zlib.compress(np.ascontiguousarray(ids, np.uint8).tobytes(), 9)


def _v2_box(ids: Optional[np.ndarray], g: int, width: int, height: int, block: int) -> tuple:
    if ids is None:
        return (0, 0, 0, 0), 0
    rows, cols = np.nonzero(np.asarray(ids) == g)
    if not rows.size:
        return (0, 0, 0, 0), 0
    b = block
    box = (int(cols.min()) * b, int(rows.min()) * b,
           min((int(cols.max()) + 1) * b, width), min((int(rows.max()) + 1) * b, height))
    return box, int(rows.size)


def forge(width: int = 64, height: int = 64, *, block_size: int = 32, channels: int = 3,
          model_id: Text = "ssic", weights_hash: bytes = bytes(16),
          quality: Union[float, int] = 4.0, file_flags: int = 0, file_id: bytes = bytes(16),
          tile_size: Optional[int] = None, groups: Sequence[Group] = (Group(),),
          group_count: Optional[int] = None, mask: Optional[np.ndarray] = None,
          mask_bytes: Optional[bytes] = None, mask_len: Optional[int] = None,
          sections: Optional[Sequence[Optional[bytes]]] = None,
          index: Optional[Sequence[tuple]] = None, header_crc: Optional[int] = None,
          version: int = 3, magic: bytes = MAGIC, model_id_len: Optional[int] = None,
          trailing: bytes = b"") -> bytes:
    """The bytes of an ``.ssb`` file, written exactly as told.

    ``quality`` is a float (packed as float32) or, as an int, its raw 32 bits (NaN, ∞ …).
    ``mask`` is the (rows, cols) group of each block (default: all group 0 on the true grid);
    ``mask_bytes`` replaces the zlib stream itself. ``sections[i]`` is group i's payload (None:
    nothing; default: ``b""`` for every group with the PRESENT flag). ``index`` gives the
    entries as written: version 3 ``(length, crc)``, version 2 ``(offset, length, crc)``
    (default: the canonical entries of ``sections``; absent groups ``(0, 0)``). ``tile_size`` is
    written when ``file_flags`` has TILED (default 1024). ``header_crc`` None computes it.
    ``trailing`` is appended after the payload.
    """
    groups = list(groups)
    if mask is None and mask_bytes is None:
        rows, cols = -(-height // block_size) if block_size else 1, -(-width // block_size) if block_size else 1
        mask = np.zeros((max(rows, 0), max(cols, 0)), np.uint8)
    blob = mask_blob(mask) if mask_bytes is None else bytes(mask_bytes)
    if sections is None:
        sections = [b"" if g.flags & PRESENT else None for g in groups]
    sections = list(sections)

    out = bytearray(magic) + struct.pack("<H", version & 0xFFFF)
    out += struct.pack("<IIHB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, block_size & 0xFFFF, channels & 0xFF)
    mid = _raw(model_id)
    out += struct.pack("<B", (len(mid) if model_id_len is None else model_id_len) & 0xFF) + mid
    out += bytes(weights_hash)
    out += struct.pack("<I", quality & 0xFFFFFFFF) if isinstance(quality, int) else struct.pack("<f", quality)
    out += struct.pack("<I", file_flags & 0xFFFFFFFF) + bytes(file_id)
    if file_flags & TILED:
        out += struct.pack("<H", (1024 if tile_size is None else tile_size) & 0xFFFF)
    out += struct.pack("<H", (len(groups) if group_count is None else group_count) & 0xFFFF)
    for i, g in enumerate(groups):
        for text, n in ((_raw(g.name), g.name_len), (_raw(g.label), g.label_len)):
            out += struct.pack("<B", (len(text) if n is None else n) & 0xFF) + text
        if version == 2:
            box, blocks = _v2_box(mask, i, width, height, block_size)
            box = box if g.bbox is None else g.bbox
            blocks = blocks if g.blocks is None else g.blocks
            out += struct.pack("<IIIII", *(v & 0xFFFFFFFF for v in (*box, blocks)))
        params = bytes(g.params)
        out += struct.pack("<BH", g.flags & 0xFF, (len(params) if g.params_len is None else g.params_len) & 0xFFFF)
        out += params
    out += struct.pack("<I", (len(blob) if mask_len is None else mask_len) & 0xFFFFFFFF) + blob
    if index is None:
        index, offset = [], 0
        for data in sections:
            if data is None:
                index.append((0, 0, 0))
            else:
                index.append((offset, len(data), zlib.crc32(data)))
                offset += len(data)
        index = [e if version == 2 else e[1:] for e in index]
    for entry in index:
        if version == 2:
            out += struct.pack("<QII", *(v & m for v, m in zip(entry, (2**64 - 1, 2**32 - 1, 2**32 - 1))))
        else:
            out += struct.pack("<II", *(v & 0xFFFFFFFF for v in entry))
    out += struct.pack("<I", (zlib.crc32(out) if header_crc is None else header_crc) & 0xFFFFFFFF)
    return bytes(out) + b"".join(s for s in sections if s is not None) + bytes(trailing)


def fields_of(data: bytes) -> dict:
    """The keyword arguments of ``forge`` that write ``data`` (a valid file, read with
    ``read_ssb``) again byte for byte: change one of them to forge one field of a real file."""
    from ssic_cli.container import read_ssb
    ssb = read_ssb(data)
    h = ssb.header
    q_bits = struct.unpack_from("<I", struct.pack("<f", h.quality))[0]
    groups = [Group(g.name, g.label, g.flags, g.params, bbox=g.bbox if ssb.version == 2 else None,
                    blocks=g.block_count if ssb.version == 2 else None) for g in h.groups]
    sections = [ssb.section(i) if g.present else None for i, g in enumerate(h.groups)]
    out = dict(width=h.width, height=h.height, block_size=h.block_size, channels=h.channels,
               model_id=h.model_id, weights_hash=h.weights_hash, quality=q_bits,
               file_flags=TILED if h.tile_size else 0, file_id=h.file_id,
               tile_size=h.tile_size or None, groups=groups, mask=np.array(h.block_ids, np.uint8),
               sections=sections, version=ssb.version)
    return out


def with_group(fields: dict, i: int, **changes) -> dict:
    """``fields`` with group ``i``'s record changed (``Group`` attributes)."""
    groups = list(fields["groups"])
    groups[i] = replace(groups[i], **changes)
    return {**fields, "groups": groups}
