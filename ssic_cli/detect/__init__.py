"""Pre-analysis: image -> named regions (detector plugins or user input) -> ``GroupMask``.

``build_group_mask`` is what ``ssic encode`` / ``ssic mask`` call. It picks the source of
regions, runs it, and hands the regions to the policy ``ssic_cli.mask.regions_to_group_mask``.
Heavy packages (ultralytics, OpenCV) load only when a detector is built.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import DetectorUnavailable, SsicError
from ..mask import DEFAULT_BLOCK_SIZE, GroupMask, regions_to_group_mask
from ._util import check_image
from .base import Detector, Region
from .registry import (DetectorInfo, available_detectors, detector_names, detector_options,
                       get_detector, register_detector)
from .user import regions_from_boxes, regions_from_coco, regions_from_label_map

__all__ = [
    "Region", "Detector", "DetectorInfo", "register_detector", "get_detector", "available_detectors",
    "detector_names", "detector_options", "build_group_mask", "default_detector_name", "detect_regions", "print_to_stderr",
    "regions_from_label_map", "regions_from_boxes", "regions_from_coco", "WEIGHT_FREE",
]

# Weight-free detectors in order of preference when YOLO cannot run: saliency finds the main
# object(s) of any photo; grid needs nothing at all.
WEIGHT_FREE = ("saliency", "grid")


def print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _check(name: str, weights=None) -> tuple[bool, str]:
    if name == "yolo":
        from . import yolo
        path, why = yolo.find_local_weights(weights)
        if path is None:
            return False, f"{why}; {yolo.HINT}"
        ok, reason = yolo.check_runtime(str(path))
        return (True, f"weights {path}") if ok else (False, reason)
    info = {i.name: i for i in available_detectors()}.get(name)
    return (info.available, info.reason) if info else (False, "not registered")


def default_detector_name(weights=None) -> tuple[str, str]:
    """``(name, reason)`` of the detector used when none is named.

    YOLO when its weights are on this machine (``weights``, ``$SSIC_YOLO_WEIGHTS``, or a stock
    name in the current / Ultralytics weights directory) and its runtime is installed; never a
    download. Otherwise the first usable of ``WEIGHT_FREE``, with the reason YOLO was skipped.
    """
    ok, why = _check("yolo", weights)
    if ok:
        return "yolo", why
    for name in WEIGHT_FREE:
        ok2, why2 = _check(name)
        if ok2:
            return name, f"YOLO skipped: {why}"
    return "grid", f"YOLO skipped: {why}"


def _detector_options(name: str, weights, min_score: float, block_size: int, extra: dict) -> dict:
    """Options for ``get_detector``: ``weights`` (strict), plus hints the detector may take."""
    options = dict(extra or {})
    params = set(detector_options(name))
    if weights is not None:
        if name in detector_names() and "weights" not in params:
            raise SsicError(f"detector {name!r} takes no weights (detector weights are for yolo)")
        options.setdefault("weights", weights)
    if "conf" in params:           # detect down to the policy's threshold (not below 0.05)
        options.setdefault("conf", min(1.0, max(float(min_score), 0.05)))
    if "align" in params:          # grid: tile edges on block boundaries
        options.setdefault("align", block_size)
    return options


def detect_regions(image_rgb: np.ndarray, name: str, *, weights=None, min_score: float = 0.25,
                   block_size: int = DEFAULT_BLOCK_SIZE, options: Optional[dict] = None) -> list[Region]:
    """Run the detector ``name`` on an RGB uint8 image."""
    det = get_detector(name, **_detector_options(name, weights, min_score, block_size, options or {}))
    return list(det.detect(check_image(image_rgb)))


def build_group_mask(image_rgb: np.ndarray, *, detector: Optional[str] = None, mask_path=None,
                     names_path=None, boxes_path=None, coco_path=None, image_name=None,
                     weights=None, block_size: int = DEFAULT_BLOCK_SIZE, coverage: float = 0.0,
                     group_by: str = "class", classes=None, min_score: float = 0.25,
                     max_groups: int = 32, log: Optional[Callable[[str], None]] = print_to_stderr,
                     detector_options: Optional[dict] = None, priority=None) -> GroupMask:
    """The group mask of an image, from the best source available.

    Sources, in order: user inputs (``mask_path`` + ``names_path`` label map, ``boxes_path``,
    ``coco_path`` with ``image_name`` picking the image; several may be combined) and the
    detector named by ``detector``. With neither, the default detector is used
    (``default_detector_name``: YOLO when its weights are here, else a weight-free one; if
    the default YOLO fails to load, it falls back too). ``weights`` alone implies ``yolo``;
    ``detector="none"`` means user inputs only (or the single group ``background``).
    The ``grid`` detector is always grouped by instance (one group per tile).

    ``log`` (None = silent) receives one line saying where the regions came from and which
    groups resulted (and which regions had to be folded into another group). ``priority``:
    classes that claim every block they touch and win every conflict (what is sealed). The remaining arguments are the policy's (``regions_to_group_mask``).
    Raises ``SsicError`` for bad input and ``DetectorUnavailable`` for a named detector that
    cannot run here.
    """
    image = check_image(image_rgb)
    height, width = image.shape[:2]
    if names_path is not None and mask_path is None:
        raise SsicError("a names file goes with a label map (--mask)")

    regions: list[Region] = []
    sources: list[str] = []
    if mask_path is not None:
        regions += regions_from_label_map(mask_path, names_path, width, height)
        sources.append(f"label map {Path(mask_path).name}")
    if boxes_path is not None:
        regions += regions_from_boxes(boxes_path, width, height)
        sources.append(f"boxes {Path(boxes_path).name}")
    if coco_path is not None:
        regions += regions_from_coco(coco_path, image_name, width, height)
        sources.append(f"COCO {Path(coco_path).name}")

    name = detector
    use_default = name is None and not sources and weights is None
    if name == "none":                      # user regions only (or the single background group)
        name = None
        if not sources:
            sources.append("no detector (--detector none)")
    elif name is None and weights is not None:
        name = "yolo"
    if name is not None:
        regions += detect_regions(image, name, weights=weights, min_score=min_score,
                                  block_size=block_size, options=detector_options)
        sources.append(f"detector {name}")
    elif use_default:
        name, reason = default_detector_name()
        try:
            found = detect_regions(image, name, min_score=min_score, block_size=block_size,
                                   options=detector_options if name != "yolo" else None)
        except DetectorUnavailable as exc:
            if name != "yolo":
                raise
            name, reason = WEIGHT_FREE[0], f"YOLO failed: {exc}"
            found = detect_regions(image, name, min_score=min_score, block_size=block_size)
        regions += found
        sources.append(f"detector {name} (default; {reason})")

    if name == "grid" and group_by == "class":
        group_by = "instance"
    gm = regions_to_group_mask(regions, width, height, block_size=block_size, coverage=coverage,
                               group_by=group_by, classes=classes, min_score=min_score,
                               max_groups=max_groups, priority=priority)
    if log is not None:
        folded = "".join(f"; {name} merged into {into} (its blocks went to {into})" for name, into in gm.merged.items())
        log(f"regions from {' + '.join(sources)}: {len(regions)} found -> "
            f"{gm.num_groups} group{'s' * (gm.num_groups != 1)}: {', '.join(gm.names)}{folded}")
    return gm
