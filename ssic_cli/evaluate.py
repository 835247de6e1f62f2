"""Rate–distortion evaluation with real bitstreams (actual .ssb bytes, not likelihoods).

Emits plain data (JSON-able dicts); plotting and tables live in the benchmark scripts.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

from . import codec
from .imageio import load_image
from .mask import GroupMask, single_group
from .model import entropy as em
from .weights import LoadedModel, freeze


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def rd_cost(rgb: np.ndarray, data: bytes, quality: float, weights=None) -> dict:
    """What encoder effort minimises, measured on a real file and its decoded pixels: bpp of the
    whole file, PSNR, and the training loss of the quality, cost = λ(q)·255²·MSE + bpp."""
    out = np.asarray(codec.decode(data, weights=weights).image.convert("RGB")).astype(np.float64)
    mse = float(np.mean((out - rgb.astype(np.float64)) ** 2)) / 255.0 ** 2
    bpp = len(data) * 8 / (rgb.shape[0] * rgb.shape[1])
    lam = float(em.quality_lambda(torch.tensor([quality])))
    return {"bpp": bpp, "psnr": psnr(rgb, out), "cost": lam * 255.0 ** 2 * mse + bpp}


def evaluate_image(rgb: np.ndarray, quality: float, weights, group_mask: Optional[GroupMask] = None,
                   effort: int = 0) -> dict:
    h, w = rgb.shape[:2]
    gm = group_mask or single_group(w, h)
    t0 = time.perf_counter()
    data = codec.encode(rgb, gm, quality, weights=weights, effort=effort)
    t1 = time.perf_counter()
    out = np.asarray(codec.decode(data, weights=weights).image.convert("RGB"))
    t2 = time.perf_counter()
    return {"bytes": len(data), "bpp": len(data) * 8 / (w * h), "psnr": psnr(rgb, out),
            "encode_s": t1 - t0, "decode_s": t2 - t1}


def evaluate_files(files: Iterable[Path], qualities: Iterable[float], weights=None) -> dict:
    """Mean bpp / PSNR per quality over ``files`` (single-group coding)."""
    images = [(Path(f).name, load_image(f).rgb) for f in files]
    results = []
    for q in qualities:
        rows = [dict(image=name, **evaluate_image(rgb, q, weights)) for name, rgb in images]
        results.append({"quality": q, "bpp": float(np.mean([r["bpp"] for r in rows])),
                        "psnr": float(np.mean([r["psnr"] for r in rows])),
                        "encode_s": float(np.median([r["encode_s"] for r in rows])),
                        "decode_s": float(np.median([r["decode_s"] for r in rows])), "images": rows})
    summary = {f"q{r['quality']:g}": [round(r["bpp"], 4), round(r["psnr"], 3)] for r in results}
    return {"results": results, "summary": summary}


def evaluate_model(model, model_id: str, files, qualities) -> dict:
    """Evaluate a model in training: a frozen copy with its tables built, real bitstreams."""
    loaded: LoadedModel = freeze(model, model_id)
    return evaluate_files(files, qualities, weights=loaded)
