"""Shared test data and region helpers for the pre-analysis tests (test_detect, test_mask).

Shared data (COCO subset, YOLO models) is found through ``$SSIC_SHARED`` (default: the ``shared``
folder next to the repository); tests that need it skip without it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ssic_cli.detect.base import Region
from ssic_cli.detect.user import regions_from_coco
from ssic_cli.mask import GroupMask

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSIC_SHARED", REPO.parent / "shared"))
MODELS = Path(os.environ.get("SSIC_MODELS", SHARED / "models"))
COCO = SHARED / "data" / "coco"
COCO_JSON = COCO / "instances.json"
KODAK = SHARED / "data" / "kodak"
EXAMPLE = REPO / "examples" / "coco_000000005001"      # the README photo, with its label map

needs_coco = pytest.mark.skipif(not COCO_JSON.exists(), reason=f"no COCO subset at {COCO}")


def load_rgb(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_coco() -> dict:
    """The COCO annotations (for a module-scoped ``coco`` fixture); skips the test without them."""
    if not COCO_JSON.exists():
        pytest.skip(f"no COCO subset at {COCO}")
    return json.loads(COCO_JSON.read_text())


def coco_regions(coco, file_name):
    img = load_rgb(COCO / "images" / file_name)
    h, w = img.shape[:2]
    return img, regions_from_coco(COCO_JSON, file_name, w, h, data=coco)


def pixel_groups(gm: GroupMask, width: int, height: int) -> np.ndarray:
    """Group index of every pixel (H x W)."""
    b = gm.block_size
    return np.repeat(np.repeat(gm.ids, b, axis=0), b, axis=1)[:height, :width]


def box(label, x0, y0, x1, y1, score=1.0, instance=0):
    return Region(label, (x0, y0, x1, y1), score, None, instance)


def coco_sample(coco, n=20):
    """``n`` annotated COCO file names, evenly spread over the subset."""
    images = [im for im in coco["images"]
              if any(a["image_id"] == im["id"] for a in coco["annotations"])]
    step = max(1, len(images) // n)
    return [im["file_name"] for im in images[::step][:n]]
