"""Fuzz the .ssb reader and the whole decoder with damaged and forged files.

Every case takes a small, real .ssb (plain, sealed + scrambled, grayscale, extracted), applies
one mutation (truncation, bit flips, forged header fields with the header CRC recomputed,
forged mask, index, flags or params, garbage sections with their CRC-32 recomputed so the
rANS decoder sees them, splices of two files) and runs ``read_ssb`` + ``codec.decode``.
Format-aware forgeries (issue 41) keep the file consistent up to the one thing they forge, so
the checks past the CRCs are reached: masks that lie about the groups (a present group without
blocks, every block in one group), geometry with a matching mask (thin and huge canvases),
hostile texts (paths as model ids, control characters), scrypt settings at the reader's bounds,
up to 255 (sealed) groups, index lengths claiming huge sections; and before the random cases,
a deterministic sweep forges every header field of every corpus file in turn (``field_sweep``).
A case must end in a decode or in an ``SsicError`` (or subclass); anything else is a crash.

Cases run in a worker process with a time limit each; a case over the limit, or one that kills
the worker, is counted (``timeout``, ``crash: worker died``) and the worker is restarted.

    python -m bench.fuzz --cases 10000 --out bench/results/fuzz.json

The mutation engine (``Raw``, ``MUTATIONS``, ``mutate``) is also driven by hypothesis in
``tests/test_fuzz.py``; it only needs a ``random.Random``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import struct
import sys
import time
import traceback
import zlib
from collections import Counter, defaultdict
from pathlib import Path

from .common import ROOT

KEY1 = b"fuzz key one, 32 bytes long ...."
KEY2 = b"fuzz key two, 32 bytes long ...."


# ----- the header as a list of fields ---------------------------------------------------------------
class Raw:
    """A parsed valid .ssb: ordered header fields [name, kind, value] + the sections.

    ``kind`` is a struct code (``B``, ``H``, ``I``, ``Q``) for integers, ``s`` for byte strings.
    ``dump`` writes the fields back as they are (so forged lengths stay forged), recomputing the
    header CRC unless told not to. Quality is kept as its raw 32 bits, so NaN can be forged.
    """

    def __init__(self, data: bytes):
        self.fields: list[list] = []
        pos = 0

        def take(name, kind, n=None):
            nonlocal pos
            if kind == "s":
                value = data[pos:pos + n]
                pos += n
            else:
                (value,) = struct.unpack_from("<" + kind, data, pos)
                pos += struct.calcsize(kind)
            self.fields.append([name, kind, value])
            return value

        take("magic", "s", 8)
        self.version = take("version", "H")
        v2 = self.version == 2              # version 2 also stores bboxes, block counts, offsets
        for f, k in (("width", "I"), ("height", "I"), ("block_size", "H"), ("channels", "B")):
            take(f, k)
        take("model_id", "s", take("model_id_len", "B"))
        take("weights_hash", "s", 16)
        take("quality", "I")
        tiled = take("file_flags", "I") & 1
        take("file_id", "s", 16)
        if tiled:
            take("tile_size", "H")
        self.count = take("group_count", "H")
        for g in range(self.count):
            take(f"g{g}.name", "s", take(f"g{g}.name_len", "B"))
            take(f"g{g}.label", "s", take(f"g{g}.label_len", "B"))
            for f in ("x0", "y0", "x1", "y1", "blocks") if v2 else ():
                take(f"g{g}.{f}", "I")
            take(f"g{g}.flags", "B")
            take(f"g{g}.params", "s", take(f"g{g}.params_len", "H"))
        take("mask", "s", take("mask_len", "I"))
        for g in range(self.count):
            if v2:
                take(f"i{g}.offset", "Q")
            take(f"i{g}.length", "I")
            take(f"i{g}.crc", "I")
        take("header_crc", "I")
        self.sections, offset = [], 0
        for g in range(self.count):
            length = self.get(f"i{g}.length")
            if v2:
                offset = self.get(f"i{g}.offset")
            present = self.get(f"g{g}.flags") & 1
            self.sections.append(data[pos + offset:pos + offset + length] if present else None)
            offset += length if present else 0

    def field(self, name: str) -> list:
        return next(f for f in self.fields if f[0] == name)

    def get(self, name: str):
        return self.field(name)[2]

    def set(self, name: str, value) -> None:
        self.field(name)[2] = value

    def set_blob(self, name: str, value: bytes, fix_length: bool = True) -> None:
        self.set(name, value)
        if fix_length:
            self.set(f"{name}_len", len(value))

    def reindex(self) -> None:
        """Index entries and PRESENT flags that follow ``sections`` (canonical layout)."""
        offset = 0
        for g, data in enumerate(self.sections):
            flags = self.get(f"g{g}.flags")
            if data is None:
                self.set(f"g{g}.flags", flags & ~1)
                entry = (0, 0, 0)
            else:
                self.set(f"g{g}.flags", flags | 1)
                entry = (offset, len(data), zlib.crc32(data))
                offset += len(data)
            for f, v in zip(("offset", "length", "crc"), entry):
                if f != "offset" or self.version == 2:
                    self.set(f"i{g}.{f}", v)

    def dump(self, fix_crc: bool = True) -> bytes:
        out = bytearray()
        for name, kind, value in self.fields:
            if name == "header_crc" and fix_crc:
                value = zlib.crc32(out)
            out += value if kind == "s" else struct.pack("<" + kind, value & _MASKS[kind])
        return bytes(out) + b"".join(s for s in self.sections if s is not None)


_MASKS = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF, "Q": 0xFFFFFFFFFFFFFFFF}


def _interesting(rng: random.Random, old: int, kind: str) -> int:
    top = _MASKS[kind]
    return rng.choice([0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 64, 255, 256, 1024, 60000, 65535, 1 << 24,
                       top, top - 1, top >> 1, old + 1, old - 1, old * 2, old // 2, old + 4, old - 4,
                       rng.randrange(top + 1), rng.randrange(min(top, 4096) + 1)]) & top


# ----- mutations: each returns (bytes, description) ---------------------------------------------------
def m_truncate(rng, data, corpus):
    n = rng.randrange(len(data))
    return data[:n], f"truncate to {n}"


def m_bitflip(rng, data, corpus):
    buf = bytearray(data)
    spots = [rng.randrange(len(buf) * 8) for _ in range(rng.choice([1, 1, 2, 4, 8, 32]))]
    for bit in spots:
        buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf), f"flip bits {spots[:4]}"


def m_header_bitflip(rng, data, corpus):
    raw = Raw(data)
    head = bytearray(raw.dump())
    size = len(head) - sum(len(s) for s in raw.sections if s is not None)
    for _ in range(rng.choice([1, 2, 3])):
        bit = rng.randrange((size - 4) * 8)
        head[bit // 8] ^= 1 << (bit % 8)
    head[size - 4:size] = struct.pack("<I", zlib.crc32(head[:size - 4]))
    return bytes(head), "header bit flips, CRC fixed"


def m_forge_int(rng, data, corpus):
    raw = Raw(data)
    f = rng.choice([f for f in raw.fields if f[1] != "s" and f[0] != "header_crc"])
    old = f[2]
    f[2] = _interesting(rng, old, f[1])
    fix = rng.random() < 0.9
    return raw.dump(fix), f"{f[0]}: {old} -> {f[2]}" + ("" if fix else ", CRC stale")


def m_forge_dims(rng, data, corpus):
    raw = Raw(data)
    w, h = raw.get("width"), raw.get("height")
    picks = [0, 1, 16, w - 1, w + 1, w + 32, 2 * w, 60000, 200_000_000, 0xFFFFFFFF]
    raw.set("width", rng.choice(picks + [w]) & 0xFFFFFFFF)
    raw.set("height", rng.choice([0, 1, h - 1, h + 1, h + 32, 2 * h, 60000, 0xFFFFFFFF, h]) & 0xFFFFFFFF)
    if rng.random() < 0.3:
        raw.set("block_size", rng.choice([0, 8, 16, 32, 64, 128, 65535]))
    return raw.dump(), f"dims {raw.get('width')}x{raw.get('height')} block {raw.get('block_size')}"


def m_forge_blob(rng, data, corpus):
    raw = Raw(data)
    f = rng.choice([f for f in raw.fields if f[1] == "s" and f[0] not in ("magic", "weights_hash")])
    n = rng.choice([0, 1, 2, len(f[2]) - 1, len(f[2]) + 1, 64, 65, 200, rng.randrange(300)])
    value = bytes(rng.randrange(256) for _ in range(max(n, 0)))
    if f[0].endswith(("name", "label", "model_id")) and rng.random() < 0.5:
        value = rng.choice(["person", "", " x", "a\u202eb", "\x00", "é" * 40, "background", "car"]).encode()
    fix = f[0] != "mask" and rng.random() < 0.8
    raw.set_blob(f[0], value, fix_length=fix and f"{f[0]}_len" in [x[0] for x in raw.fields])
    return raw.dump(), f"{f[0]} <- {len(value)} bytes" + ("" if fix else ", length field stale")


def m_forge_mask(rng, data, corpus):
    raw = Raw(data)
    rows_cols = len(zlib.decompress(raw.get("mask")))
    ids = bytearray(zlib.decompress(raw.get("mask")))
    how = rng.choice(["values", "values", "shorter", "longer", "garbage", "bomb"])
    if how == "values":
        for _ in range(rng.choice([1, 2, 5])):
            ids[rng.randrange(len(ids))] = rng.choice([0, 1, 2, raw.count - 1, raw.count, 255])
        blob = zlib.compress(bytes(ids))
    elif how == "shorter":
        blob = zlib.compress(bytes(ids[:rng.randrange(len(ids))]))
    elif how == "longer":
        blob = zlib.compress(bytes(ids) + bytes(rng.randrange(1, 64)))
    elif how == "garbage":
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    else:                                   # a zip bomb: tiny stream, huge output
        blob = zlib.compress(bytes(1 << 24), 9)
    raw.set_blob("mask", blob)
    return raw.dump(), f"mask {how} ({rows_cols} blocks)"


def m_forge_index(rng, data, corpus):
    raw = Raw(data)
    g = rng.randrange(raw.count)
    f = rng.choice(["offset", "length", "crc"] if raw.version == 2 else ["length", "crc"])
    name = f"i{g}.{f}"
    old = raw.get(name)
    raw.set(name, _interesting(rng, old, "Q" if f == "offset" else "I"))
    return raw.dump(), f"{name}: {old} -> {raw.get(name)}"


def m_forge_flags(rng, data, corpus):
    raw = Raw(data)
    g = rng.randrange(raw.count)
    flags = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 0x81, 0xFF, raw.get(f"g{g}.flags") ^ 2, raw.get(f"g{g}.flags") ^ 4])
    raw.set(f"g{g}.flags", flags)
    if rng.random() < 0.5:                  # keep the index consistent with PRESENT
        if not flags & 1:
            raw.sections[g] = None
        elif raw.sections[g] is None:
            raw.sections[g] = b""
        raw.reindex()
        raw.set(f"g{g}.flags", flags)
    return raw.dump(), f"g{g}.flags -> 0x{flags:02x}"


def m_forge_params(rng, data, corpus):
    raw = Raw(data)
    g = rng.randrange(raw.count)
    params = bytearray(raw.get(f"g{g}.params"))
    how = rng.choice(["flip", "flip", "truncate", "extend", "kdf", "random"])
    if how == "flip" and params:
        for _ in range(rng.choice([1, 2, 4])):
            params[rng.randrange(len(params))] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        params = params[:rng.randrange(len(params) + 1)]
    elif how == "extend":
        params += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    elif how == "kdf" and len(params) > 6:
        params[2:6] = bytes([rng.choice([0, 1, 2]), rng.choice([0, 9, 10, 15, 20, 21, 31, 255]),
                             rng.choice([0, 1, 8, 32, 33, 255]), rng.choice([0, 1, 2, 16, 17, 255])])
    else:
        params = bytearray(rng.randrange(256) for _ in range(rng.randrange(80)))
    raw.set_blob(f"g{g}.params", bytes(params))
    return raw.dump(), f"g{g}.params {how}"


def m_section_garbage(rng, data, corpus):
    """Damage one section and fix its CRC-32 (and the index), so the rANS decoder sees it."""
    raw = Raw(data)
    present = [g for g, s in enumerate(raw.sections) if s is not None]
    if not present:
        return m_bitflip(rng, data, corpus)
    g = rng.choice(present)
    sec = bytearray(raw.sections[g])
    how = rng.choice(["flip", "flip", "flip", "random", "zeros", "ones", "truncate", "extend", "empty",
                      "swap", "shuffle", "one word"])
    if how == "flip" and sec:
        for _ in range(rng.choice([1, 1, 2, 8])):
            sec[rng.randrange(len(sec))] ^= 1 << rng.randrange(8)
    elif how == "random":
        sec = bytearray(rng.randrange(256) for _ in range(len(sec)))
    elif how == "zeros":
        sec = bytearray(len(sec))
    elif how == "ones":
        sec = bytearray(b"\xff" * len(sec))
    elif how == "truncate":
        sec = sec[:rng.randrange(len(sec) + 1)]
    elif how == "extend":
        sec += bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 4, 8, 64])))
    elif how == "empty":
        sec = bytearray()
    elif how == "swap":
        sec = bytearray(raw.sections[rng.choice(present)])
    elif how == "shuffle" and len(sec) >= 8:
        words = [sec[i:i + 4] for i in range(0, len(sec) - len(sec) % 4, 4)]
        rng.shuffle(words)
        sec = bytearray(b"".join(words))
    else:
        sec = bytearray(struct.pack("<I", rng.randrange(1 << 32)))
    raw.sections[g] = bytes(sec)
    raw.reindex()
    return raw.dump(), f"section {g} {how}, CRC fixed"


def m_splice(rng, data, corpus):
    """Header of one file with sections of another (same group count), index and CRC fixed."""
    other = Raw(rng.choice(list(corpus.values())))
    raw = Raw(data)
    for g in range(min(raw.count, other.count)):
        if rng.random() < 0.5 and raw.sections[g] is not None and other.sections[g] is not None:
            raw.sections[g] = other.sections[g]
    raw.reindex()
    return raw.dump(), "sections spliced from another file"


# ----- format-aware forgeries (issue 41): what someone who read docs/FORMAT.md writes --------------
# Each keeps the file consistent up to the one thing it forges (mask size matching the geometry,
# index and section CRC-32s matching the sections, header CRC recomputed), so the checks past the
# CRCs — the pixel budget, the payload limit, the mask's meaning, text rules, KDF settings, the
# KDF budget, the weights lookup — are what the case reaches.
HOSTILE_TEXT = ["../../etc/passwd", "/etc/passwd", "..", "a\x1b[2Jb", "bell\x07", "nul\x00", "rtl\u202eplay",
                "zero\u200bwidth", "line\u2028two", "del\x7f", "c1\x9b", "a,b", "a:b", "e\u0301", " pad",
                "x" * 64, "x" * 65, "é" * 32, "background", "person", ""]
# (log2 N, r, p): inside and just outside the reader's bounds (memory 128·r·N ≤ 64 MiB, work
# r·p·N ≤ 2^20, N < 2^(16·r)); (19, 1, 2) is the one OpenSSL refused with MemoryError.
KDF_SETTINGS = [(19, 1, 2), (16, 8, 2), (15, 8, 4), (20, 1, 1), (16, 1, 1), (17, 8, 1), (10, 32, 16),
                (10, 1, 1), (9, 8, 1), (21, 1, 1), (15, 0, 1), (15, 8, 0), (15, 33, 1), (15, 8, 17)]
GEOMETRIES = [(1_000_000, 1, 64), (25_000_000, 1, 64), (1, 1_000_000, 64), (20000, 20000, 64),
              (10000, 10000, 64), (5001, 5000, 64), (4097, 1, 16), (1, 1, 16), (17, 33, 16), (129, 129, 32)]


def _ids(raw: Raw) -> bytearray:
    return bytearray(zlib.decompress(raw.get("mask")))


def _grid(raw: Raw) -> tuple[int, int]:
    b = raw.get("block_size")
    return -(-raw.get("height") // b), -(-raw.get("width") // b)


def _set_ids(raw: Raw, ids: bytes) -> None:
    raw.set_blob("mask", zlib.compress(bytes(ids), 9))


def m_forge_mask_meaning(rng, data, corpus):
    """A mask of the right size that lies about the groups: a group emptied (PRESENT, with its
    section, no blocks), every block given to one group, groups swapped, random valid ids."""
    raw = Raw(data)
    ids, n = _ids(raw), raw.count
    how = rng.choice(["empty one", "all to one", "swap two", "random", "one block each"])
    g = rng.randrange(n)
    if how == "empty one":
        other = (g + 1) % n
        ids = bytearray(other if v == g else v for v in ids)
    elif how == "all to one":
        ids = bytearray([g]) * len(ids)
    elif how == "swap two":
        h = rng.randrange(n)
        ids = bytearray(h if v == g else g if v == h else v for v in ids)
    elif how == "random":
        ids = bytearray(rng.randrange(n) for _ in ids)
    else:
        ids = bytearray(i % n for i in range(len(ids)))
    _set_ids(raw, ids)
    return raw.dump(), f"mask {how} (group {g})"


def m_forge_geometry(rng, data, corpus):
    """Width, height, block size forged together with a mask of the matching grid: thin images,
    huge canvases, odd sizes reach the pixel budget and the decoder, not just the mask check."""
    raw = Raw(data)
    w, h, b = rng.choice(GEOMETRIES + [(raw.get("width") * 2, raw.get("height"), raw.get("block_size"))])
    if rng.random() < 0.3:
        b = rng.choice([16, 32, 64])
    raw.set("width", w)
    raw.set("height", h)
    raw.set("block_size", b)
    rows, cols = _grid(raw)
    old = _ids(raw)
    how = rng.choice(["zeros", "tiled"])
    ids = bytes(rows * cols) if how == "zeros" else bytes(old[i % len(old)] for i in range(rows * cols))
    _set_ids(raw, ids)
    if raw.version == 2:                      # keep the stored bboxes and counts consistent too
        _fix_v2_boxes(raw, ids, cols)
    return raw.dump(), f"geometry {w}x{h} block {b}, mask {how}"


def _fix_v2_boxes(raw: Raw, ids: bytes, cols: int) -> None:
    b, w, h = raw.get("block_size"), raw.get("width"), raw.get("height")
    for g in range(raw.count):
        at = [i for i, v in enumerate(ids) if v == g]
        if at:
            rs, cs = [i // cols for i in at], [i % cols for i in at]
            box = (min(cs) * b, min(rs) * b, min((max(cs) + 1) * b, w), min((max(rs) + 1) * b, h))
        else:
            box = (0, 0, 0, 0)
        for f, v in zip(("x0", "y0", "x1", "y1", "blocks"), (*box, len(at))):
            raw.set(f"g{g}.{f}", v)


def m_forge_text(rng, data, corpus):
    """A model id, group name or label replaced by hostile text (paths, control and format
    characters, separators, not NFC, padded, too long), its length field kept true."""
    raw = Raw(data)
    f = rng.choice(["model_id"] + [f"g{g}.{k}" for g in range(raw.count) for k in ("name", "label")])
    text = rng.choice(HOSTILE_TEXT)
    raw.set_blob(f, text.encode("utf-8"))
    return raw.dump(), f"{f} <- {text!r}"


def m_forge_kdf(rng, data, corpus):
    """A group (re)protected with scrypt settings at and past the reader's bounds: sealed or
    scrambled, fresh salts (so nothing is memoised), the section kept as it is."""
    from ssic_cli import crypto
    raw = Raw(data)
    g = rng.randrange(raw.count)
    log2_n, r, p = rng.choice(KDF_SETTINGS)
    kdf = crypto.KdfParams(log2_n, r, p, rng.randbytes(16))
    seal = rng.random() < 0.6
    scramble = not seal or rng.random() < 0.3
    params = crypto.GroupParams(seal=crypto.SealParams(kdf, rng.randbytes(8), rng.randbytes(12)) if seal else None,
                                scramble=crypto.ScrambleParams(kdf, rng.randbytes(8)) if scramble else None)
    flags = raw.get(f"g{g}.flags") & 1 | (2 if seal else 0) | (4 if scramble else 0)
    raw.set(f"g{g}.flags", flags)
    raw.set_blob(f"g{g}.params", params.pack())
    return raw.dump(), f"g{g} kdf N=2^{log2_n} r={r} p={p} flags {flags}"


def m_forge_many_groups(rng, data, corpus):
    """Up to 255 groups: the table grown with copies of a record (sealed ones at the highest
    accepted scrypt cost, each with its own salt), the mask spreading blocks over them, the
    index and the CRCs consistent: stresses the per-group loop and the KDF budget."""
    from ssic_cli import crypto
    raw = Raw(data)
    if raw.version == 2:
        return m_forge_mask_meaning(rng, data, corpus)
    rows, cols = _grid(raw)
    total = rng.choice([8, 32, 255])
    sealed = rng.random() < 0.5
    at = next(i for i, f in enumerate(raw.fields) if f[0] == "mask_len")
    new_fields, new_sections = [], []
    for g in range(raw.count, total):
        params = b""
        if sealed:
            kdf = crypto.KdfParams(16, 8, 2, rng.randbytes(16))
            params = crypto.GroupParams(seal=crypto.SealParams(kdf, rng.randbytes(8), rng.randbytes(12))).pack()
        name = f"x{g}".encode()
        new_fields += [[f"g{g}.name_len", "B", len(name)], [f"g{g}.name", "s", name],
                       [f"g{g}.label_len", "B", 0], [f"g{g}.label", "s", b""],
                       [f"g{g}.flags", "B", 3 if sealed else 1], [f"g{g}.params_len", "H", len(params)],
                       [f"g{g}.params", "s", params]]
        new_sections.append(rng.randbytes(rng.choice([16, 32, 64])))
    raw.fields[at:at] = new_fields
    crc_at = next(i for i, f in enumerate(raw.fields) if f[0] == "header_crc")
    raw.fields[crc_at:crc_at] = [x for g in range(raw.count, total)
                                 for x in ([f"i{g}.length", "I", 0], [f"i{g}.crc", "I", 0])]
    raw.sections += new_sections
    raw.count = total
    raw.set("group_count", total)
    ids = _ids(raw)
    _set_ids(raw, bytes(v if rng.random() < 0.5 else rng.randrange(total) for v in ids))
    raw.reindex()
    return raw.dump(), f"{total} groups{' sealed at the highest cost' if sealed else ''}"


def m_forge_index_claims(rng, data, corpus):
    """Index lengths claiming far more than the file holds (one group or all together), the
    header CRC fixed: refused from the index alone, before anything is read."""
    raw = Raw(data)
    present = [g for g, s in enumerate(raw.sections) if s is not None]
    if not present:
        return m_forge_index(rng, data, corpus)
    targets = present if rng.random() < 0.3 else [rng.choice(present)]
    value = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 24, 1 << 20])
    for g in targets:
        raw.set(f"i{g}.length", value)
    return raw.dump(), f"index lengths {value} for groups {targets}"


def field_sweep(data: bytes) -> list[tuple[str, bytes]]:
    """Field by field, every header field of ``data`` forged to a few values that matter for its
    kind (0, 1, ±1, the largest value; for blobs: empty, one byte longer, hostile text), the
    header CRC recomputed. Deterministic: the same cases on every run."""
    raw = Raw(data)
    cases = []
    for i, (name, kind, old) in enumerate(raw.fields):
        if name in ("header_crc", "magic"):
            continue
        if kind == "s":
            values = [b"", old + b"\0", old[:-1]] if old else [b"", b"\0" * 16]
            if name.endswith(("name", "label", "model_id")):
                values += [b"../../etc/passwd", b"a\x1b[2Jb", "rtl\u202eplay".encode(), b"a,b"]
        else:
            top = _MASKS[kind]
            values = sorted({0, 1, (old + 1) & top, (old - 1) & top, top, old ^ 0x80 & top} - {old})
        for value in values:
            forged = Raw(data)
            if kind == "s" and f"{name}_len" in [f[0] for f in forged.fields]:
                forged.set_blob(name, value)
            else:
                forged.set(name, value)
            cases.append((f"{name} <- {value!r}"[:80], forged.dump()))
    return cases


MUTATIONS = {
    "truncate": m_truncate, "bitflip": m_bitflip, "header_bitflip": m_header_bitflip,
    "forge_int": m_forge_int, "forge_dims": m_forge_dims, "forge_blob": m_forge_blob,
    "forge_mask": m_forge_mask, "forge_index": m_forge_index, "forge_flags": m_forge_flags,
    "forge_params": m_forge_params, "section_garbage": m_section_garbage, "splice": m_splice,
    # format-aware forgeries (issue 41)
    "forge_mask_meaning": m_forge_mask_meaning, "forge_geometry": m_forge_geometry, "forge_text": m_forge_text,
    "forge_kdf": m_forge_kdf, "forge_many_groups": m_forge_many_groups, "forge_index_claims": m_forge_index_claims,
}
# Section damage reaches the model; weight it up (those cases are the expensive, interesting ones).
WEIGHTS = {"section_garbage": 4, "forge_params": 2, "forge_flags": 2, "forge_int": 3, "forge_blob": 2,
           "forge_mask_meaning": 2, "forge_geometry": 2, "forge_text": 2, "forge_kdf": 2, "forge_index_claims": 1,
           "forge_many_groups": 1}


def mutate(rng: random.Random, corpus: dict[str, bytes]) -> tuple[str, str, str, bytes]:
    """(corpus name, mutation name, description, mutated bytes)."""
    name = rng.choice(sorted(corpus))
    kinds = sorted(MUTATIONS)
    kind = rng.choices(kinds, weights=[WEIGHTS.get(k, 1) for k in kinds])[0]
    data, what = MUTATIONS[kind](rng, corpus[name], corpus)
    return name, kind, what, data


# ----- corpus and one case ---------------------------------------------------------------------------
def build_corpus() -> dict[str, bytes]:
    """Small real files: 3 groups (plain; person sealed + car scrambled; the same in the older
    format version 2), grayscale, extracted, tiled."""
    import numpy as np
    from PIL import Image

    from ssic_cli import codec, container, crypto
    from ssic_cli.mask import GroupMask, single_group
    crypto.DEFAULT_KDF = crypto.FAST_KDF       # cheap derivations; forged params may ask for more
    rgb = np.asarray(Image.open(ROOT / "examples" / "kodim23.png").convert("RGB"))[200:296, 250:378].copy()
    ids = np.zeros((3, 4), np.uint8)
    ids[0:2, 1:3] = 1
    ids[2, 0] = 2
    gm = GroupMask(32, ids, ["background", "person", "car"], ["background", "person", "car"])
    k1, k2 = crypto.key_from_bytes(KEY1), crypto.key_from_bytes(KEY2)
    protected = codec.encode(rgb, gm, 3.0, seal={"person": k1}, scramble={"car": k2})
    # Tiled (file flag TILED): 256×384 in tiles of 256 (cut at x = 128), the person across the cut.
    wide = np.asarray(Image.open(ROOT / "examples" / "kodim23.png").convert("RGB"))[150:278, 200:584].copy()
    wide_ids = np.zeros((4, 12), np.uint8)
    wide_ids[1:3, 2:6] = 1
    wide_ids[3, 8:] = 2
    wide_gm = GroupMask(32, wide_ids, ["background", "person", "car"], ["background", "person", "car"])
    return {
        "plain": codec.encode(rgb, gm, 3.0),
        "protected": protected,
        "gray16": codec.encode(rgb[:, :64], single_group(64, 96, 16), 5.0, channels=1),
        "extracted": container.extract(protected, ["person", "car"]),
        "protected-v2": _as_version_2(protected),
        "tiled": codec.encode(wide, wide_gm, 3.0, tile_size=256, seal={"person": k1}),
    }


def _as_version_2(data: bytes) -> bytes:
    from ssic_cli import container
    ssb = container.read_ssb(data)
    return container.dump_ssb(ssb.header, [ssb.section(i) for i in range(len(ssb.header.groups))], version=2)


def crypto_key(secret: bytes):
    from ssic_cli import crypto
    return crypto.key_from_bytes(secret, "fuzz key")


def run_case(data: bytes, with_keys: bool) -> str:
    """Outcome of reading and decoding ``data``: ok / ok-lost / error class / crash: type."""
    from ssic_cli import codec, container
    from ssic_cli.errors import SsicError
    keys = [crypto_key(KEY1), crypto_key(KEY2)] if with_keys else None
    try:
        ssb = container.read_ssb(data)
        res = codec.decode(ssb, keys=keys)
    except SsicError as exc:
        return type(exc).__name__
    hdr = ssb.header
    if res.image.size != (hdr.width, hdr.height):
        return "crash: wrong image size"
    # every group in the header is decoded, lost, unavailable, or absent (not carried by an extract)
    if len(res.decoded) + len(res.lost) + len(res.unavailable) + len(res.absent) != len(hdr.groups):
        return "crash: groups unaccounted for"
    return "ok-lost" if res.lost else "ok"


def _worker(conn) -> None:
    import warnings
    warnings.filterwarnings("ignore")
    import torch
    torch.set_num_threads(1)
    from ssic_cli.weights import load_weights
    load_weights()
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        data, with_keys = msg
        try:
            conn.send((run_case(data, with_keys), ""))
        except Exception as exc:  # noqa: BLE001 - that is what we are counting
            conn.send((f"crash: {type(exc).__name__}", traceback.format_exc(limit=6)))


class Worker:
    def __init__(self, ctx):
        self.ctx = ctx
        self.start()

    def start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        if not self.conn.poll(300) or self.conn.recv() != "ready":
            raise RuntimeError("fuzz worker did not start")

    def run(self, data: bytes, with_keys: bool, timeout: float) -> tuple[str, str]:
        try:
            self.conn.send((data, with_keys))
            if self.conn.poll(timeout):
                return self.conn.recv()
            outcome = "timeout"
        except (EOFError, BrokenPipeError, ConnectionResetError):
            outcome = "crash: worker died"
        self.proc.kill()
        self.proc.join()
        self.start()
        return outcome, ""

    def close(self):
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    ap.add_argument("--out", type=Path, help="write the counts as JSON here")
    ap.add_argument("--no-sweep", dest="sweep", action="store_false",
                    help="skip the field-by-field sweep (every header field of every corpus file forged, "
                         "CRCs fixed) that runs before the random cases")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    corpus = build_corpus()
    ctx = mp.get_context("spawn")
    worker = Worker(ctx)
    rng = random.Random(args.seed)
    counts: Counter = Counter()
    by_mutation: dict[str, Counter] = defaultdict(Counter)
    slowest: list = []
    crashes: list = []
    start = time.time()
    for name in sorted(corpus):                      # the unmutated files must decode
        for with_keys in (False, True):
            outcome, _ = worker.run(corpus[name], with_keys, args.timeout)
            assert outcome == "ok", (name, with_keys, outcome)
    sweep = [(name, "field_sweep", what, data) for name in sorted(corpus) for what, data in field_sweep(corpus[name])]
    if not args.sweep:
        sweep = []
    for case in range(len(sweep) + args.cases):
        if case < len(sweep):
            source, kind, what, data = sweep[case]
            with_keys = case % 2 == 1
        else:
            source, kind, what, data = mutate(rng, corpus)
            with_keys = rng.random() < 0.5
        t = time.time()
        outcome, tb = worker.run(data, with_keys, args.timeout)
        took = time.time() - t
        counts[outcome] += 1
        by_mutation[kind][outcome] += 1
        slowest = sorted(slowest + [(round(took, 3), case, source, what)], reverse=True)[:5]
        if outcome.startswith("crash") or outcome == "timeout":
            crashes.append({"case": case, "source": source, "mutation": what, "keys": with_keys,
                            "outcome": outcome, "traceback": tb})
        if (case + 1) % 500 == 0:
            print(f"{case + 1} cases, {time.time() - start:.0f} s: {dict(counts)}", file=sys.stderr, flush=True)
    worker.close()
    elapsed = time.time() - start
    result = {
        "cases": args.cases + len(sweep), "random_cases": args.cases, "sweep_cases": len(sweep),
        "seed": args.seed, "timeout_s": args.timeout, "elapsed_s": round(elapsed, 1),
        "corpus": {k: len(v) for k, v in corpus.items()},
        "outcomes": dict(counts.most_common()),
        "by_mutation": {k: dict(v.most_common()) for k, v in sorted(by_mutation.items())},
        "slowest_cases": [{"seconds": s, "case": c, "source": src, "mutation": w} for s, c, src, w in slowest],
        "crashes": crashes[:50],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
