"""Small helpers shared by the detector modules (no heavy imports at module level)."""
from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import DetectorUnavailable, SsicError

CV2_HINT = "OpenCV is not installed: pip install opencv-python-headless"


def has_module(name: str) -> bool:
    """True when ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_cv2() -> tuple[bool, str]:
    return (True, "") if has_module("cv2") else (False, CV2_HINT)


def import_cv2():
    try:
        import cv2
    except ImportError:
        raise DetectorUnavailable(CV2_HINT) from None
    return cv2


def as_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """Coerce a detector option (possibly a string from the command line) to an int in [lo, hi]."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise SsicError(f"option {name} must be an integer, got {value!r}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise SsicError(f"option {name} must be in {lo}..{hi}, got {v}")
    return v


def as_float(name: str, value, lo: float | None = None, hi: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SsicError(f"option {name} must be a number, got {value!r}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise SsicError(f"option {name} must be in [{lo}, {hi}], got {v}")
    return v


def check_image(image) -> np.ndarray:
    """The image as an H x W x 3 uint8 array, or a clear error."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
        raise SsicError(f"expected an RGB uint8 image (H x W x 3), got {a.dtype} array {a.shape}")
    return a


def box_from_xyxy(x0, y0, x1, y1, width: int, height: int) -> tuple[int, int, int, int]:
    """Float box -> integer half-open box that contains it, clipped to the image."""
    return (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))),
            min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1))))


def number_instances(regions: list) -> list:
    """Set ``Region.instance`` to 1, 2, … within each label, in list order."""
    seen: dict[str, int] = {}
    for r in regions:
        seen[r.label] = seen.get(r.label, 0) + 1
        r.instance = seen[r.label]
    return regions


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; boxes (N, 4) as x0, y0, x1, y1. Returns kept indices."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = np.asarray(order, dtype=int)
        if rest.size == 0:
            break
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        ious = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = [int(j) for j, o in zip(rest, ious) if o <= iou]
    return keep
