"""Pre-analysis: image -> named regions (detector plugins or user input) -> ``GroupMask``.

``build_group_mask`` is what ``ssic encode`` / ``ssic mask`` call. It picks the source of
regions, runs it, and hands the regions to the policy ``ssic_cli.mask.regions_to_group_mask``.
Heavy packages (ultralytics, OpenCV) load only when a detector is built.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import DetectorUnavailable, SsicError
from ..mask import DEFAULT_BLOCK_SIZE, DEFAULT_MIN_SCORE, GroupMask, GroupPolicy, regions_to_group_mask
from ._util import check_image
from .base import Detector, Region
from .registry import (DetectorInfo, available_detectors, detector_names, detector_options,
                       get_detector, register_detector)
from .user import regions_from_boxes, regions_from_coco, regions_from_label_map

__all__ = [
    "Region", "Detector", "DetectorInfo", "register_detector", "get_detector", "available_detectors",
    "detector_names", "detector_options", "build_group_mask", "default_detector_name", "detect_regions", "print_to_stderr",
    "regions_from_label_map", "regions_from_boxes", "regions_from_coco", "WEIGHT_FREE", "RegionSources",
    "choose_detector", "GroupPolicy",
]

# Weight-free detectors in order of preference when YOLO cannot run: saliency finds the main
# object(s) of any photo; grid needs nothing at all.
WEIGHT_FREE = ("saliency", "grid")


def print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class RegionSources:
    """Where an image's regions come from: the user's own (label map, boxes, COCO) and a detector.

    ``detector``: a registered name, ``"none"`` (user regions only) or ``None`` (the default
    detector unless user regions or ``weights`` are given; ``weights`` alone mean ``yolo``).
    ``default_reason`` is set by ``choose_detector`` on the detector it picked as the default.
    """

    detector: Optional[str] = None
    weights: Optional[str | os.PathLike] = None
    mask_path: Optional[str | os.PathLike] = None
    names_path: Optional[str | os.PathLike] = None
    boxes_path: Optional[str | os.PathLike] = None
    coco_path: Optional[str | os.PathLike] = None
    detector_options: Optional[dict] = field(default=None, hash=False)
    default_reason: str = ""

    @property
    def uses_default(self) -> bool:
        """Whether the detector is still to be picked (nothing named, no user regions, no weights)."""
        return (self.detector is None and self.weights is None
                and not any((self.mask_path, self.boxes_path, self.coco_path)))


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


def _downloadable() -> tuple[bool, str]:
    """Whether Ultralytics can fetch the default YOLO weights here (runtime installed, network up)."""
    from . import yolo
    ok, reason = yolo.check_runtime(yolo.DOWNLOAD_NAME)
    if not ok:
        return False, reason
    if not yolo.network_reachable():
        return False, "no YOLO weights found and no network to download them"
    return True, (f"no YOLO weights here: ultralytics downloads {yolo.DOWNLOAD_NAME} (~7 MB) into "
                  f"{yolo.cache_dir()} once")


def default_detector_name(weights=None, *, download: bool = True) -> tuple[str, str]:
    """``(name, reason)`` of the detector used when none is named.

    YOLO when its weights are on this machine (``weights``, ``$SSIC_YOLO_WEIGHTS``, or a stock
    name in the current directory, ssic's cache or the Ultralytics weights directory) and its
    runtime is installed; else, with ``download`` and a network, YOLO with weights Ultralytics
    downloads into ssic's cache on first use. Otherwise the first usable of ``WEIGHT_FREE``,
    with a reason that says why YOLO was skipped and how to get person groups.
    """
    from . import yolo
    ok, why = _check("yolo", weights)
    if ok:
        return "yolo", why
    if download and weights is None and yolo.find_local_weights()[0] is None:
        ok, reason = _downloadable()
        if ok:
            return "yolo", reason
        why = reason if "not installed" in reason or "network" in reason else why
    fallback = next((name for name in WEIGHT_FREE if _check(name)[0]), WEIGHT_FREE[-1])
    return fallback, _fallback_reason(why.split("; ")[0], fallback)


def _fallback_reason(why: str, fallback: str) -> str:
    from . import yolo
    return f"YOLO skipped ({why}), so no person groups; for them, {yolo.how_to_get_weights()}"


def choose_detector(sources: RegionSources = RegionSources(), *, min_score: float = DEFAULT_MIN_SCORE,
                    block_size: int = DEFAULT_BLOCK_SIZE,
                    log: Optional[Callable[[str], None]] = print_to_stderr) -> RegionSources:
    """``sources`` with the default detector picked, said once through ``log``; others unchanged.

    A batch calls this once (so the probe for weights and network, a first-use download of the
    YOLO weights, and the notice happen once per run, not per file) and hands the result to
    ``build_group_mask`` for each image. When the default YOLO cannot load, a weight-free
    detector is used instead.
    """
    if not sources.uses_default:
        return sources
    name, reason = default_detector_name()
    weights = None
    if name == "yolo":
        from . import yolo
        downloading = yolo.find_local_weights()[0] is None
        if downloading and log is not None:
            log(f"ssic: {reason}")
        try:
            det = get_detector("yolo", **_detector_options("yolo", None, min_score, block_size, {}))
            weights = det.weights
        except DetectorUnavailable as exc:
            name = next((n for n in WEIGHT_FREE if _check(n)[0]), WEIGHT_FREE[-1])
            reason = _fallback_reason(f"YOLO failed: {str(exc).split('; ')[0]}", name)
    if name != "yolo" and log is not None:
        log(f"ssic: grouping with the {name} detector: {reason}")
    options = sources.detector_options if name != "yolo" else None
    return dataclasses.replace(sources, detector=name, weights=weights, detector_options=options,
                               default_reason=reason)


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


def detect_regions(image_rgb: np.ndarray, name: str, *, weights=None, min_score: float = DEFAULT_MIN_SCORE,
                   block_size: int = DEFAULT_BLOCK_SIZE, options: Optional[dict] = None) -> list[Region]:
    """Run the detector ``name`` on an RGB uint8 image."""
    det = get_detector(name, **_detector_options(name, weights, min_score, block_size, options or {}))
    return list(det.detect(check_image(image_rgb)))


_SOURCE_FIELDS = {f.name for f in dataclasses.fields(RegionSources)}
_POLICY_FIELDS = {f.name for f in dataclasses.fields(GroupPolicy)}


def build_group_mask(image_rgb: np.ndarray, sources: Optional[RegionSources] = None,
                     policy: Optional[GroupPolicy] = None, *, image_name=None,
                     log: Optional[Callable[[str], None]] = print_to_stderr, **options) -> GroupMask:
    """The group mask of an image: regions from ``sources`` (default: the default detector)
    turned into blocks by ``policy`` (default ``GroupPolicy()``; see ``regions_to_group_mask``).

    Keyword ``options`` change single fields of either (``detector="grid"``, ``block_size=32``).
    Sources combine: user inputs (``mask_path`` + ``names_path`` label map, ``boxes_path``,
    ``coco_path`` with ``image_name`` picking the image) and the detector named by
    ``detector``. With neither, the default detector is picked (``choose_detector``, which says
    so through ``log``). ``detector="none"`` means user inputs only (or the single group
    ``background``). The ``grid`` detector is always grouped by instance (one group per tile).

    ``log`` (None = silent) receives one line saying where the regions came from and which
    groups resulted (and which regions had to be folded into another group). Raises
    ``SsicError`` for bad input and ``DetectorUnavailable`` for a named detector that cannot
    run here.
    """
    unknown = set(options) - _SOURCE_FIELDS - _POLICY_FIELDS
    if unknown:
        raise TypeError(f"build_group_mask() got unexpected option(s): {', '.join(sorted(unknown))}")
    sources = dataclasses.replace(sources or RegionSources(),
                                  **{k: v for k, v in options.items() if k in _SOURCE_FIELDS})
    policy = (policy or GroupPolicy()).replace(**{k: v for k, v in options.items() if k in _POLICY_FIELDS})
    image = check_image(image_rgb)
    height, width = image.shape[:2]
    if sources.names_path is not None and sources.mask_path is None:
        raise SsicError("a names file goes with a label map (--mask)")
    sources = choose_detector(sources, min_score=policy.min_score, block_size=policy.block_size, log=log)

    regions: list[Region] = []
    said: list[str] = []
    if sources.mask_path is not None:
        regions += regions_from_label_map(sources.mask_path, sources.names_path, width, height)
        said.append(f"label map {Path(sources.mask_path).name}")
    if sources.boxes_path is not None:
        regions += regions_from_boxes(sources.boxes_path, width, height)
        said.append(f"boxes {Path(sources.boxes_path).name}")
    if sources.coco_path is not None:
        regions += regions_from_coco(sources.coco_path, image_name, width, height)
        said.append(f"COCO {Path(sources.coco_path).name}")

    name = sources.detector
    if name == "none":                      # user regions only (or the single background group)
        name = None
        if not said:
            said.append("no detector (--detector none)")
    elif name is None and sources.weights is not None:
        name = "yolo"
    if name is not None:
        regions += detect_regions(image, name, weights=sources.weights, min_score=policy.min_score,
                                  block_size=policy.block_size, options=sources.detector_options)
        said.append(f"detector {name}" + (" (default)" if sources.default_reason else ""))

    if name == "grid" and policy.group_by == "class":
        policy = policy.replace(group_by="instance")
    gm = regions_to_group_mask(regions, width, height, policy)
    if log is not None:
        folded = "".join(f"; {name} merged into {into} (its blocks went to {into})" for name, into in gm.merged.items())
        log(f"regions from {' + '.join(said)}: {len(regions)} found -> "
            f"{gm.num_groups} group{'s' * (gm.num_groups != 1)}: {', '.join(gm.names)}{folded}")
    return gm
