"""Tiles: how a large image is cut so that coding it needs bounded memory (no torch).

A tiled file (file flag ``TILED``, see ``docs/FORMAT.md``) codes its canvas as a grid of tiles
of at most ``tile_size`` pixels a side. Each tile is coded like an image of its own, so the
transforms and entropy models never hold more than one tile; group independence holds inside
every tile exactly as in an untiled file. A group's section is then a short table of part
lengths followed by one part (one rANS stream) per tile the group touches, in raster order.

>>> tile_grid(1280, 2048, 1024)
[(0, 0, 640, 1024), (0, 1024, 640, 2048), (640, 0, 1280, 1024), (640, 1024, 1280, 2048)]
>>> split_parts(join_parts([b"abcd", b"", b"xy"]), 3)
[b'abcd', b'', b'xy']
"""
from __future__ import annotations

import struct

import numpy as np

from .container import TILE_ALIGN as TILE_UNIT, TILE_RANGE
from .errors import FormatError, SsicError

# Default: images whose canvas is over 1.5 MP are cut into tiles of at most 1024² (measured:
# ~1.2-1.4 GB peak to encode or decode one 1024² tile with the residual-block models; an untiled
# 1.5 MP canvas stays under ~1.7 GB). Smaller images are one tile: no seams.
DEFAULT_TILE = 1024
UNTILED_MAX_PIXELS = 1_572_864
_LENGTH = struct.Struct("<I")


def default_tile_size(canvas_h: int, canvas_w: int) -> int:
    """The tile size ssic picks for a canvas: 0 (one tile) up to 1.5 MP, else ``DEFAULT_TILE``."""
    return 0 if canvas_h * canvas_w <= UNTILED_MAX_PIXELS else DEFAULT_TILE


def check_tile_size(tile_size: int, align: int) -> None:
    """A tile size an encoder may use with a model of this alignment (0 = untiled)."""
    lo, hi = TILE_RANGE
    if tile_size and not (lo <= tile_size <= hi and tile_size % TILE_UNIT == 0 and tile_size % align == 0):
        raise SsicError(f"tile size must be 0 (one tile) or a multiple of {max(TILE_UNIT, align)} "
                        f"from {lo} to {hi}, got {tile_size}")


def _cuts(extent: int, tile_size: int) -> list[int]:
    """Boundaries along one side: n = ⌈U/t⌉ tiles, cut i at TILE_UNIT·⌊i·U/n⌋ (U, t in units)."""
    units, per_tile = extent // TILE_UNIT, tile_size // TILE_UNIT
    n = -(-units // per_tile)
    return [TILE_UNIT * (i * units // n) for i in range(n + 1)]


def tile_grid(canvas_h: int, canvas_w: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of every tile in canvas pixels, raster order; one tile when
    ``tile_size`` is 0. Tiles of a row (column) have equal heights (widths) to within 128."""
    if not tile_size:
        return [(0, 0, canvas_h, canvas_w)]
    rows, cols = _cuts(canvas_h, tile_size), _cuts(canvas_w, tile_size)
    return [(rows[i], cols[j], rows[i + 1], cols[j + 1])
            for i in range(len(rows) - 1) for j in range(len(cols) - 1)]


def join_parts(parts: list[bytes]) -> bytes:
    """A tiled group's section: the u32 length of every part, then the parts."""
    return b"".join([_LENGTH.pack(len(p)) for p in parts] + list(parts))


def split_parts(section: bytes, count: int) -> list[bytes]:
    """The ``count`` parts of a tiled group's section; ``FormatError`` if they do not add up."""
    head = _LENGTH.size * count
    if len(section) < head:
        raise FormatError(f"section is {len(section)} bytes, too short for its {count} tile parts")
    lengths = [_LENGTH.unpack_from(section, _LENGTH.size * i)[0] for i in range(count)]
    if head + sum(lengths) != len(section):
        raise FormatError("section's tile-part lengths do not add up to its size")
    cuts = np.cumsum([head] + lengths).tolist()
    return [bytes(section[cuts[i]:cuts[i + 1]]) for i in range(count)]
