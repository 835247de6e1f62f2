"""What a detector returns: named regions. A policy (``ssic_cli.mask``) turns them into groups."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np


@dataclass
class Region:
    """One detected object (or user-given area) in image pixel coordinates.

    ``mask`` is a boolean H x W array (instance segmentation) or None when only a box is known.
    ``box`` is (x0, y0, x1, y1), half-open, in pixels; always set.
    """

    label: str                      # class name, e.g. "person"
    box: tuple[int, int, int, int]
    score: float = 1.0
    mask: Optional[np.ndarray] = None
    instance: int = 0               # 1-based instance number within its class (0 = not set)


class Detector(Protocol):
    """A detector plugin: ``detect(rgb uint8 H x W x 3) -> list[Region]``."""

    name: str

    def detect(self, image: np.ndarray) -> list[Region]: ...
