"""Large images in bounded memory: peak RSS and time of whole `ssic` processes on a 24 MP image,
and the rate-distortion cost of tile seams.

    python -m bench.tiles                      # writes bench/results/tiles.json, prints tables

1. A 6000×4000 photo mosaic (Kodak images, 8 × 8, cropped) is encoded and decoded by the CLI
   (default settings: tiles of 1024) with one group per 256-pixel grid cell (``--detector grid``)
   and as one group; each in its own process, peak RSS from ``getrusage(RUSAGE_CHILDREN)``.
2. Seam cost: BD-rate of tiled against untiled coding of the same images (real bytes), on
   Kodak upscaled 2× (1536×1024, two 768-wide tiles at the default 1024) and on Kodak at its own
   size with 256-pixel tiles (6 tiles per image: the worst case a user can ask for).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .bdrate import bd_rate_curves
from .common import KODAK, RESULTS, ROOT, kodak_files, psnr, write_json

SSIC = [sys.executable, "-m", "ssic_cli"]


def log(message: str) -> None:
    print(f"[tiles] {message}", file=sys.stderr, flush=True)


def mosaic(files: list[Path], width: int, height: int) -> np.ndarray:
    """Kodak images side by side (landscape ones only, in order, repeated) cropped to size."""
    tiles = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    tiles = [t for t in tiles if t.shape[:2] == (512, 768)]
    rows, cols = -(-height // 512), -(-width // 768)
    grid = [[tiles[(r * cols + c) % len(tiles)] for c in range(cols)] for r in range(rows)]
    return np.concatenate([np.concatenate(row, axis=1) for row in grid], axis=0)[:height, :width]


def run_measured(argv: list[str], threads: int) -> dict:
    """One process: wall seconds and its peak RSS (a fresh measurement per call: fork a helper)."""
    helper = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
              "rc = subprocess.run(sys.argv[1:]).returncode; "
              "print(json.dumps({'rc': rc, 's': time.perf_counter() - t, "
              "'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SSIC_MAX_PIXELS": "30000000"}
    out = subprocess.run([sys.executable, "-c", helper, *argv], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result['rc']}: {out.stderr[-500:]}")
    return {"seconds": round(result["s"], 1), "peak_mb": round(result["peak_mb"])}


def large_image(files: list[Path], work: Path, threads: int, quality: float) -> dict:
    src = work / "mosaic-6000x4000.png"
    Image.fromarray(mosaic(files, 6000, 4000)).save(src)
    rows = {}
    for name, groups in (("one group", ["--detector", "none"]), ("grid groups", ["--detector", "grid"])):
        ssb, png = work / "big.ssb", work / "big.png"
        enc = run_measured([*SSIC, "encode", str(src), "-o", str(ssb), "-q", str(quality), *groups], threads)
        dec = run_measured([*SSIC, "decode", str(ssb), "-o", str(png)], threads)
        ref = np.asarray(Image.open(src).convert("RGB"))
        out = np.asarray(Image.open(png).convert("RGB"))
        info = json.loads(subprocess.run([*SSIC, "inspect", str(ssb), "--json"], capture_output=True, text=True,
                                         cwd=ROOT, check=True).stdout)
        rows[name] = {"encode": enc, "decode": dec, "bytes": ssb.stat().st_size, "groups": len(info["groups"]),
                      "tile_size": info["tile_size"], "bpp": round(ssb.stat().st_size * 8 / 24e6, 4),
                      "psnr": round(psnr(ref, out), 2)}
        log(f"24 MP, {name}: {rows[name]}")
    return rows


def seam_cost(images: dict[str, np.ndarray], tile: int, qualities: list[float]) -> dict:
    """BD-rate of tiled (``tile``) against untiled coding of ``images``, one group each."""
    from ssic_cli import codec
    from ssic_cli.mask import single_group
    curves: dict[str, list] = {"untiled": [], "tiled": []}
    for q in qualities:
        for label, size in (("untiled", 0), ("tiled", tile)):
            bpp, dist = [], []
            for rgb in images.values():
                h, w = rgb.shape[:2]
                data = codec.encode(rgb, single_group(w, h), q, tile_size=size)
                bpp.append(len(data) * 8 / (w * h))
                dist.append(psnr(rgb, np.asarray(codec.decode(data).image)))
            curves[label].append({"q": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(dist))})
        log(f"tile {tile}, q {q:g}: untiled {curves['untiled'][-1]}, tiled {curves['tiled'][-1]}")
    rate = bd_rate_curves(curves["untiled"], curves["tiled"])
    return {"tile_size": tile, "images": len(images), "bd_rate_pct": round(rate, 2), "curves": curves}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tiles", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "tiles.json")
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--images", type=int, default=8, help="Kodak images for the seam cost (default: %(default)s)")
    ap.add_argument("--qualities", default="1,3,5,8")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    files = kodak_files(args.kodak, None)
    qualities = [float(q) for q in args.qualities.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        big = large_image(files, Path(tmp), args.threads, 4.0)
    kodak = {f.name: np.asarray(Image.open(f).convert("RGB")) for f in files[:args.images]}
    upscaled = {k: np.asarray(Image.fromarray(v).resize((v.shape[1] * 2, v.shape[0] * 2), Image.BICUBIC))
                for k, v in kodak.items()}
    seams = {"kodak_x2_tile1024": seam_cost(upscaled, 1024, qualities),
             "kodak_tile256": seam_cost(kodak, 256, qualities)}
    from ssic_cli.weights import load_weights
    lm = load_weights()
    result = {"meta": {"host": f"{platform.node()} ({os.cpu_count()} cpus)", "date": time.strftime("%Y-%m-%d %H:%M"),
                       "threads": args.threads, "weights": lm.path.name,
                       "large_image": "6000×4000 mosaic of Kodak photos, quality 4, whole `ssic` processes"},
              "large_image": big, "seam_cost": seams}
    write_json(args.out, result)
    print("| 6000×4000 | groups | tiles | encode s | encode peak MB | decode s | decode peak MB | bpp | PSNR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in big.items():
        print(f"| {name} | {r['groups']} | {r['tile_size']} | {r['encode']['seconds']} | {r['encode']['peak_mb']} | "
              f"{r['decode']['seconds']} | {r['decode']['peak_mb']} | {r['bpp']} | {r['psnr']} |")
    for name, s in seams.items():
        print(f"seam cost {name}: BD-rate {s['bd_rate_pct']:+.2f} % over {s['images']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
