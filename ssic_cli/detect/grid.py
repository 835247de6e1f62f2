"""``grid``: uniform tiles (``rows`` x ``cols``), labelled ``tile``; no weights, no packages.

Useful for spatial random access without semantics. Tile edges are snapped to multiples of
``align`` pixels (``build_group_mask`` passes the block size) so no block straddles two tiles.
Tiles are one class, so group them by instance: ``tile``, ``tile#2``, … in row-major order.
"""
from __future__ import annotations

import numpy as np

from ._util import as_int, check_image
from .base import Region
from .registry import register_detector

LABEL = "tile"


def _edges(n: int, size: int, align: int) -> list[int]:
    cuts = [min(size, round(i * size / n / align) * align) for i in range(n + 1)]
    cuts[0], cuts[-1] = 0, size
    return sorted(set(cuts))          # tiles thinner than one aligned step disappear


class GridDetector:
    """Uniform grid of ``rows`` x ``cols`` tiles labelled ``tile``."""

    name = "grid"

    def __init__(self, rows=2, cols=2, align=1):
        self.rows = as_int("rows", rows, 1, 64)
        self.cols = as_int("cols", cols, 1, 64)
        self.align = as_int("align", align, 1, 4096)

    def detect(self, image: np.ndarray) -> list[Region]:
        image = check_image(image)
        h, w = image.shape[:2]
        ys, xs = _edges(self.rows, h, self.align), _edges(self.cols, w, self.align)
        regions = []
        for y0, y1 in zip(ys, ys[1:]):
            for x0, x1 in zip(xs, xs[1:]):
                regions.append(Region(LABEL, (x0, y0, x1, y1), 1.0, None, len(regions) + 1))
        return regions


@register_detector("grid", "uniform rows x cols tiles (label tile); no weights")
def make_grid(rows=2, cols=2, align=1) -> GridDetector:
    """Uniform rows x cols tiles (label tile); no weights."""
    return GridDetector(rows, cols, align)
