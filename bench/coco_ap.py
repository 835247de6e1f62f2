"""Person AP50 (boxes and masks) of detections against COCO annotations, with pycocotools.

Detections are plain dicts in COCO results format (``image_id``, ``bbox`` as x, y, w, h,
``score``, ``segmentation`` as RLE); ``person_detections`` makes them from ssic ``Region``s.
Crowd annotations are ignore regions, as in the COCO protocol.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np


def person_detections(regions, image_id: int, category_id: int) -> list[dict]:
    """COCO result records for the ``person`` regions of one image (box always, mask when known)."""
    from pycocotools import mask as mask_util
    out = []
    for r in regions:
        if r.label != "person":
            continue
        x0, y0, x1, y1 = (int(v) for v in r.box)
        rec = {"image_id": int(image_id), "category_id": int(category_id), "score": float(r.score),
               "bbox": [x0, y0, x1 - x0, y1 - y0]}
        if r.mask is not None:
            rle = mask_util.encode(np.asfortranarray(r.mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")      # JSON-friendly, pycocotools accepts str
            rec["segmentation"] = rle
        out.append(rec)
    return out


def _quiet(fn, *args):
    """pycocotools prints progress on stdout; keep the benchmark's stdout for its tables."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def load_ground_truth(path):
    from pycocotools.coco import COCO
    return _quiet(COCO, str(path))


def ap50(gt, detections: list[dict], image_ids: list[int], category_id: int, iou_type: str) -> float:
    """AP at IoU 0.5 (COCO's 101-point interpolation, all areas, ≤ 100 detections per image)."""
    from pycocotools.cocoeval import COCOeval
    if iou_type == "segm":
        detections = [d for d in detections if "segmentation" in d]
    if not detections:
        return 0.0
    dt = _quiet(gt.loadRes, [dict(d) for d in detections])    # loadRes mutates its records
    ev = COCOeval(gt, dt, iou_type)
    ev.params.imgIds = sorted(image_ids)
    ev.params.catIds = [category_id]
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return float(ev.stats[1])
