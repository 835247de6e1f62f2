"""Encoder effort levels (``ssic encode -e 0..9``): time and gain per level, real bytes on Kodak.

For each level, each image and each quality: encode at that level, decode, and record the file's
bytes, the RGB PSNR and the encode seconds (one row per case in ``rows.jsonl``, appended as it
goes, so a stopped run resumes where it stopped and runs on several machines can be merged).
The summary (``summary.json``, a markdown table on stdout) gives per level, over the images
measured at that level at every quality: steps, median seconds per megapixel, BD-rate against
``-e 0`` on the same images, and BD-rate against JPEG, WebP and AVIF on the same images (their
per-image rows come from ``bench/results/rd_kodak.json``, the classic encoders' run). With two
qualities a curve is a straight line in (log rate, PSNR) between them.

    python -m bench.effort --levels 0,1,2,3,4 --qualities 2,4,6,8 --threads 2
    python -m bench.effort --levels 9 --images kodim04,kodim08 --qualities 2,6   # a subset
    python -m bench.effort --summary-only                                       # re-read rows

Costly: level L spends EFFORT_LEVELS[L].steps gradient steps per group (2^(L−1)), each about a
decode and a backward pass: all levels on one Kodak image at two qualities take ~25 minutes on
2 threads of a 2-core AVX2 machine. docs/effort.md has what was measured and on which machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from bench.bdrate import bd_rate
from bench.common import RESULTS, kodak_files, load_rgb, log, psnr, write_json

OUT = RESULTS / "effort"
CLASSIC = ("jpeg", "webp", "avif")


def measure_case(rgb: np.ndarray, quality: float, level: int) -> dict:
    from ssic_cli import codec
    from ssic_cli.mask import single_group
    h, w = rgb.shape[:2]
    t = time.perf_counter()
    data = codec.encode(rgb, single_group(w, h), quality, effort=level)
    seconds = time.perf_counter() - t
    out = np.asarray(codec.decode(data).image.convert("RGB"))
    return {"bytes": len(data), "bpp": len(data) * 8 / (w * h), "psnr": psnr(rgb, out),
            "encode_s": seconds, "s_per_mp": seconds / (w * h / 1e6)}


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(levels: list[int], files: list[Path], qualities: list[float], rows_path: Path, host: dict) -> None:
    """Measure every (level, image, quality) not yet in ``rows_path``, image by image (so a
    stopped run leaves whole images, each with every level)."""
    done = {(r["level"], r["image"], r["q"]) for r in load_rows(rows_path)}
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    for f in files:
        rgb = None
        for level in sorted(levels):
            for q in qualities:
                if (level, f.name, q) in done:
                    continue
                rgb = load_rgb(f) if rgb is None else rgb
                row = {"level": level, "image": f.name, "q": q, **measure_case(rgb, q, level), **host}
                with rows_path.open("a") as out:
                    out.write(json.dumps(row) + "\n")
                log(f"e{level} {f.name} q{q:g}: {row['bpp']:.4f} bpp {row['psnr']:.2f} dB {row['encode_s']:.1f} s")


def curve(rows: list[dict], images: set[str], qualities: list[float]) -> list[dict]:
    """Mean bpp / PSNR per quality over ``images`` (the usual Kodak averaging)."""
    points = []
    for q in qualities:
        sel = [r for r in rows if r["q"] == q and r["image"] in images]
        points.append({"q": q, "bpp": float(np.mean([r["bpp"] for r in sel])),
                       "psnr": float(np.mean([r["psnr"] for r in sel]))})
    return points


def classic_curve(per_image: list[dict], images: set[str]) -> list[dict]:
    """A classic encoder's curve over ``images`` from its per-image rows (one point per setting)."""
    settings = sorted({r["q"] for r in per_image})
    return curve([{**r, "image": r["image"]} for r in per_image], images, settings)


def bd(reference: list[dict], test: list[dict]) -> Optional[float]:
    value = bd_rate([p["bpp"] for p in reference], [p["psnr"] for p in reference],
                    [p["bpp"] for p in test], [p["psnr"] for p in test])
    return None if np.isnan(value) else round(value, 2)


def complete_images(rows: list[dict], level: int, qualities: list[float]) -> set[str]:
    """The images measured at ``level`` at every one of ``qualities``."""
    have = {(r["image"], r["q"]) for r in rows if r["level"] == level}
    return {i for i, _ in have if all((i, q) in have for q in qualities)}


def summarise(rows: list[dict], classic_rows: dict) -> dict:
    """Per level, over the images measured at that level at every quality (and at level 0, its
    reference on the same images): the table row."""
    from ssic_cli.refine import EFFORT_LEVELS
    qualities = sorted({r["q"] for r in rows})
    plain_images = complete_images(rows, 0, qualities)
    table = []
    for lv in sorted({r["level"] for r in rows}):
        images = complete_images(rows, lv, qualities) & plain_images
        if not images:
            continue
        mine = [r for r in rows if r["level"] == lv and r["image"] in images]
        points = curve(mine, images, qualities)
        plain = curve([r for r in rows if r["level"] == 0], images, qualities)
        entry = {"level": lv, "steps": EFFORT_LEVELS[lv].steps, "images": sorted(images),
                 "s_per_mp": round(statistics.median(r["s_per_mp"] for r in mine), 2),
                 "points": points, "vs_plain": bd(plain, points) if lv else 0.0}
        for name in CLASSIC:
            if name in classic_rows:
                entry[f"vs_{name}"] = bd(classic_curve(classic_rows[name], images), points)
        table.append(entry)
    return {"levels": table, "qualities": qualities,
            "hosts": sorted({f"{r.get('cpu', '?')} ({r.get('threads', '?')} threads)" for r in rows})}


def markdown(summary: dict) -> str:
    head = ("| level | steps | s/MP | images | BD-rate vs -e 0 | vs JPEG | vs WebP | vs AVIF |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|")
    fmt = lambda v: "—" if v is None else f"{v:+.1f} %"          # noqa: E731
    lines = [head] + [f"| {e['level']} | {e['steps']} | {e['s_per_mp']:.0f} | {len(e['images'])} | "
                      f"{fmt(e['vs_plain'])} | {fmt(e.get('vs_jpeg'))} | {fmt(e.get('vs_webp'))} | "
                      f"{fmt(e.get('vs_avif'))} |" for e in summary["levels"]]
    lines.append(f"\nKodak images (each level's own set, level 0 on the same ones), qualities "
                 f"{', '.join(f'{q:g}' for q in summary['qualities'])}; machines: {', '.join(summary['hosts'])}")
    return "\n".join(lines)


def host_info(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "threads": threads}


def parse_list(text: str, kind=float) -> list:
    return [kind(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.effort", description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="0,1,2,3,4,5,6,7,8,9", help="effort levels (default: %(default)s)")
    ap.add_argument("--images", help="Kodak names, comma-separated (default: all 24)")
    ap.add_argument("--qualities", default="2,4,6,8", help="default: %(default)s")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="folder of rows.jsonl and summary.json")
    ap.add_argument("--summary-only", action="store_true", help="only summarise the rows already measured")
    args = ap.parse_args(argv)
    rows_path = args.out / "rows.jsonl"
    if not args.summary_only:
        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)
        files = kodak_files()
        if args.images:
            wanted = {n if n.endswith(".png") else n + ".png" for n in args.images.split(",")}
            files = [f for f in files if f.name in wanted]
        run(parse_list(args.levels, int), files, parse_list(args.qualities), rows_path, host_info(args.threads))
    classic = json.loads((RESULTS / "rd_kodak.json").read_text())["per_image"]
    summary = summarise(load_rows(rows_path), {k: classic[k] for k in CLASSIC if k in classic})
    write_json(args.out / "summary.json", summary)
    print(markdown(summary))


if __name__ == "__main__":
    main()
