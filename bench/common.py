"""What the benchmarks share: where the data and results are, loading images, writing results.

The shared data (Kodak, the COCO subset, anchors, detector models) live in ``$SSIC_SHARED``,
by default ``../shared`` beside the repository.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSIC_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "bench" / "results"
KODAK = SHARED / "data" / "kodak"
COCO = SHARED / "data" / "coco"


def log(message: str) -> None:
    """Progress on stderr (stdout is for the tables)."""
    print(message, file=sys.stderr, flush=True)


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def kodak_files(directory: Path = KODAK, limit: Optional[int] = None) -> list[Path]:
    """The Kodak images (``kodim*.png``), the first ``limit`` of them if given."""
    files = sorted(Path(directory).glob("kodim*.png"))
    if not files:
        raise SystemExit(f"no Kodak images (kodim*.png) in {directory}; set SSIC_SHARED or --kodak")
    return files[:limit] if limit else files


def photo_files(directory: Path, limit: Optional[int] = None) -> list[Path]:
    """A held-out set (``python -m bench.holdout``): every PNG in the folder."""
    files = sorted(Path(directory).glob("*.png"))
    if not files:
        raise SystemExit(f"no PNG images in {directory}; build them with python -m bench.holdout")
    return files[:limit] if limit else files


def coco_instances(coco: Path = COCO) -> dict:
    """The COCO subset's annotations (``instances.json``: images, annotations, categories)."""
    return json.loads((Path(coco) / "instances.json").read_text())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR of two 8-bit images (the codec's own measure)."""
    from ssic_cli.evaluate import psnr as rgb_psnr
    return rgb_psnr(a, b)


def write_json(path: Path, data: dict) -> None:
    """Write a result atomically (a stopped run never leaves half a file), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)
