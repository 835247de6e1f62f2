"""Kodak rate–distortion: ssic (real .ssb bytes) against the classic encoders and published curves.

In one run, on the 24 Kodak images in ``$SSIC_SHARED/data/kodak`` (default ``../shared``):

* ssic with the shipped weights at each ``--qualities`` point, coded as one group (the RD
  curve) and with an irregular 3–5 group mask (the structuring cost);
* the classic encoders a user would pick instead, run here with Debian's tools and the settings
  and quality ladders of ``anchors/kodak_classic_measured.json`` (``bench.classic``;
  ``bench/setup.sh`` installs them), each decoded back and measured the same way, at most
  ``--jobs`` processes at a time;
* published learned-codec curves read from ``anchors/kodak_published_rd.json`` (CompressAI's
  results files; only the points plotted are copied into the results, with their source).

Every point is the mean bpp (whole file · 8 / pixels) and mean RGB PSNR (8-bit, all three
channels) over the images. Writes ``--out`` (JSON: curves, BD-rates, structuring cost,
per-image records), a plot next to it (``.png``), and prints markdown tables on stdout;
progress goes to stderr.

    python -m bench.rd --out bench/results/rd_kodak.json
    python -m bench.rd --images 3 --qualities 2,5,8 --skip-classic --out /tmp/rd.json
    python -m bench.rd --photos runs/holdout --out bench/results/rd_holdout.json   # held out
    python -m bench.rd --photos runs/holdout --effort 7 --single-only \\
        --classic-from bench/results/rd_holdout.json --out /tmp/rd_e7.json   # classic curves reused
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ssic_cli.mask import DEFAULT_BLOCK_SIZE

from .bdrate import bd_psnr_curves, bd_rate_curves, rate_gaps
from .classic import CLASSICS, Classic, anchors, check_tools, run_timed, tool_versions
from .common import KODAK, RESULTS, kodak_files, load_rgb, log, photo_files, psnr, write_json

DEFAULT_QUALITIES = "1,2,3,4,5,6,7,8"
# Published curves shown by default: CompressAI's models and the reference codecs from its
# results files (VTM is what the ssic paper compares against).
DEFAULT_PUBLISHED = ("bmshj2018-factorized,bmshj2018-hyperprior,mbt2018-mean,mbt2018,"
                     "cheng2020-anchor,bpg,vtm")
PUBLISHED_NOTE = ("copied from anchors/kodak_published_rd.json: CompressAI's results files "
                  "(github.com/InterDigitalInc/CompressAI, results/image/kodak); learned models "
                  "are float reconstructions, ~0.005-0.06 dB above 8-bit output")
BLOCK_SIZE = DEFAULT_BLOCK_SIZE       # the CLI's
MASK_GROUPS = (3, 5)


def mean_point(q, rows: list[dict]) -> dict:
    """One curve point: mean bpp / PSNR, median encode / decode seconds."""
    return {"q": q, "bpp": float(np.mean([r["bpp"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "enc_s": float(statistics.median(r["enc_s"] for r in rows)),
            "dec_s": float(statistics.median(r["dec_s"] for r in rows))}


# ----- classic encoders --------------------------------------------------------------------------
def classic_point(codec: Classic, q, image: Path, source: Path, rgb: np.ndarray, work: Path) -> dict:
    """Encode one image at one setting, decode it back, measure; temporary files removed."""
    stem = f"{image.stem}-{codec.name}-{q}"
    compressed, decoded = work / f"{stem}.{codec.ext}", work / f"{stem}.{codec.decoded_ext}"
    try:
        enc_s = run_timed(codec.encode(q, str(source), str(compressed)))
        dec_s = run_timed(codec.decode(str(compressed), str(decoded)))
        size = compressed.stat().st_size
        quality = psnr(rgb, load_rgb(decoded))
    finally:
        compressed.unlink(missing_ok=True)
        decoded.unlink(missing_ok=True)
    h, w = rgb.shape[:2]
    return {"q": q, "image": image.name, "bytes": size, "bpp": size * 8 / (w * h), "psnr": quality,
            "enc_s": enc_s, "dec_s": dec_s}


def prepare_sources(files: list[Path], work: Path) -> dict[str, Path]:
    """PPM copies of the images for cjpeg (it reads no PNG); the PNGs serve everyone else."""
    sources = {}
    for f in files:
        ppm = work / f"{f.stem}.ppm"
        Image.open(f).convert("RGB").save(ppm)
        sources[f.name] = ppm
    return sources


def run_codec(pool: ThreadPoolExecutor, codec: Classic, files: list[Path], images: dict[str, np.ndarray],
              ppm: dict[str, Path], work: Path) -> list[dict]:
    """One codec over its whole ladder and every image, ``pool``'s workers at a time."""
    def one(task):
        q, f = task
        source = ppm[f.name] if codec.source_ext == "ppm" else f
        return classic_point(codec, q, f, source, images[f.name], work)
    return list(pool.map(one, [(q, f) for q in codec.ladder for f in files]))


def run_classic(files: list[Path], images: dict[str, np.ndarray], jobs: int) -> tuple[dict, dict]:
    """All classic codecs over all settings and images: (curves, per-image rows)."""
    curves, per_image = {}, {}
    with tempfile.TemporaryDirectory(prefix="ssic-rd-") as tmp, ThreadPoolExecutor(jobs) as pool:
        work = Path(tmp)
        ppm = prepare_sources(files, work)
        for codec in CLASSICS:
            t0 = time.perf_counter()
            rows = run_codec(pool, codec, files, images, ppm, work)
            per_image[codec.name] = rows
            curves[codec.name] = sorted((mean_point(q, [r for r in rows if r["q"] == q]) for q in codec.ladder),
                                        key=lambda p: p["bpp"])
            log(f"{codec.name}: {len(rows)} encodes in {time.perf_counter() - t0:.0f} s")
    return curves, per_image


def anchor_classic_curves() -> dict:
    """The anchors' own classic run, used in place of a re-run with --skip-classic."""
    return {name: [{"q": p["q"], "bpp": p["bpp"], "psnr": p["psnr"]} for p in pts]
            for name, pts in anchors("kodak_classic_measured.json").items()}


def earlier_classic(path: Path, names: list[str]) -> tuple[dict, dict, dict]:
    """The classic curves, per-image rows and their meta from an earlier result of this script,
    refused unless it measured exactly these images with the encoders run (not the anchors)."""
    try:
        earlier = json.loads(path.read_text())
        classic, rows = earlier["meta"]["classic"], earlier["per_image"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"--classic-from {path}: not a result of this script ({e})")
    if not isinstance(classic, dict):
        raise SystemExit(f"--classic-from {path}: its classic curves are the anchors', not a run")
    measured = sorted({r["image"] for name in classic for r in rows.get(name, [])})
    if measured != names:
        raise SystemExit(f"--classic-from {path}: it measured {len(measured)} other images, not these {len(names)}")
    curves = {name: earlier["curves"][name] for name in classic}
    return curves, {name: rows[name] for name in classic}, earlier["meta"]


def published_curves(names: list[str]) -> dict:
    data = anchors("kodak_published_rd.json")
    unknown = [n for n in names if n not in data]
    if data and unknown:
        raise SystemExit(f"not in kodak_published_rd.json: {', '.join(unknown)}; it has: {', '.join(data)}")
    return {f"published:{n}": [{"bpp": p["bpp"], "psnr": p["psnr"]} for p in data[n]] for n in names if n in data}


# ----- ssic ------------------------------------------------------------------------------------
def irregular_mask(rgb: np.ndarray, index: int, seed: int, block_size: int = BLOCK_SIZE):
    """A seeded irregular mask of 3–5 connected groups (the training sampler's flood fill)."""
    from ssic_cli.mask import GroupMask, grid_shape
    from ssic_cli.train_data import random_group_blocks
    rows, cols = grid_shape(rgb.shape[1], rgb.shape[0], block_size)
    rng = np.random.default_rng([seed, index])
    while True:
        ids = random_group_blocks(rows, cols, rng, max_groups=MASK_GROUPS[1])
        groups = int(ids.max()) + 1
        if MASK_GROUPS[0] <= groups <= MASK_GROUPS[1]:
            return GroupMask(block_size, ids, ["background"] + [f"region#{g}" for g in range(1, groups)])


def saliency_mask(rgb: np.ndarray, index: int, seed: int, block_size: int = BLOCK_SIZE):
    """The weight-free saliency detector, one group per salient blob (2–4 groups on Kodak)."""
    from ssic_cli.detect import build_group_mask
    return build_group_mask(rgb, detector="saliency", group_by="instance", block_size=block_size, log=None)


MASKS = {"irregular": irregular_mask, "saliency": saliency_mask}


def ssic_row(rgb: np.ndarray, q: float, name: str, group_mask=None, effort: int = 0) -> dict:
    from ssic_cli.evaluate import evaluate_image
    r = evaluate_image(rgb, q, weights=None, group_mask=group_mask, effort=effort)
    return {"q": q, "image": name, "bytes": r["bytes"], "bpp": r["bpp"], "psnr": r["psnr"],
            "enc_s": r["encode_s"], "dec_s": r["decode_s"],
            "groups": group_mask.num_groups if group_mask is not None else 1}


def run_ssic(images: dict[str, np.ndarray], masks: Optional[dict], qualities: list[float],
             effort: int = 0) -> tuple[dict, dict]:
    """ssic single-group and (unless ``masks`` is None) grouped at every quality: (curves, per-image rows)."""
    single, grouped = [], []
    for q in qualities:
        t0 = time.perf_counter()
        for name, rgb in images.items():
            single.append(ssic_row(rgb, q, name, effort=effort))
            if masks is not None:
                grouped.append(ssic_row(rgb, q, name, masks[name], effort))
        last = [r for r in single if r["q"] == q]
        log(f"ssic q={q:g}: {np.mean([r['bpp'] for r in last]):.3f} bpp, "
            f"{np.mean([r['psnr'] for r in last]):.2f} dB ({time.perf_counter() - t0:.0f} s)")
    curves = {"ssic": [mean_point(q, [r for r in single if r["q"] == q]) for q in qualities]}
    if masks is None:
        return curves, {"ssic": single}
    curves["ssic-grouped"] = [mean_point(q, [r for r in grouped if r["q"] == q]) for q in qualities]
    return curves, {"ssic": single, "ssic-grouped": grouped}


def weights_info() -> dict:
    from ssic_cli.weights import load_weights
    lm = load_weights()
    return {"path": lm.path.name, "model_id": lm.model_id, "hash": lm.weights_hash.hex(),
            "card": {k: v for k, v in lm.card.items() if isinstance(v, (str, int, float))}}


# ----- analysis --------------------------------------------------------------------------------
def _clean(value: float, digits: int) -> Optional[float]:
    return None if np.isnan(value) else round(float(value), digits)


def compare(curves: dict, reference: str, test: str) -> dict:
    """BD-rate (%) and BD-PSNR (dB) of ``test`` against ``reference``, and the shared PSNR range."""
    a, b = curves[reference], curves[test]
    lo = max(min(p["psnr"] for p in a), min(p["psnr"] for p in b))
    hi = min(max(p["psnr"] for p in a), max(p["psnr"] for p in b))
    return {"bd_rate": _clean(bd_rate_curves(a, b), 2), "bd_psnr": _clean(bd_psnr_curves(a, b), 3),
            "psnr_overlap": [round(lo, 2), round(hi, 2)] if hi > lo else None}


def bd_tables(curves: dict, anchor_classic: dict) -> dict:
    """Every codec vs JPEG; ssic vs every other codec; this run's classic curves vs the anchors'
    run (``anchor_classic`` empty when that comparison means nothing: a subset, or no re-run)."""
    tables = {"vs_jpeg": {}, "ssic_vs": {}, "measured_vs_anchors": {}}
    if "jpeg" in curves:
        tables["vs_jpeg"] = {n: compare(curves, "jpeg", n) for n in curves if n != "jpeg"}
    if "ssic" in curves:
        tables["ssic_vs"] = {n: compare(curves, n, "ssic") for n in curves if not n.startswith("ssic")}
    for name, pts in anchor_classic.items():
        if name in curves:
            tables["measured_vs_anchors"][name] = compare({"anchor": pts, "here": curves[name]}, "anchor", "here")
    return tables


# Codecs the per-quality table sets ssic against (those of them in the run): the classic ones
# and the plain learned hyperprior, whose gap to WebP is nearly flat along its curve.
PER_QUALITY_REFERENCES = ("jpeg", "webp", "avif", "jxl", "published:bmshj2018-hyperprior")


def per_quality_gaps(curves: dict) -> dict:
    """ssic's rate change against each reference at each of its qualities (None outside the
    reference's measured PSNR range): where along the curve the BD-rate's mean comes from."""
    refs = [n for n in PER_QUALITY_REFERENCES if n in curves]
    return {"q": [p["q"] for p in curves["ssic"]],
            "vs": {n: [None if g is None else round(g, 2) for g in rate_gaps(curves[n], curves["ssic"])]
                   for n in refs}}


def structuring_cost(per_image: dict, curves: dict) -> dict:
    """Grouped vs single-group ssic: BD-rate and mean bytes overhead at each quality."""
    single = {(r["q"], r["image"]): r for r in per_image["ssic"]}
    rows = []
    for p_single, p_grouped in zip(curves["ssic"], curves["ssic-grouped"]):
        q = p_single["q"]
        pairs = [(single[(r["q"], r["image"])], r) for r in per_image["ssic-grouped"] if r["q"] == q]
        extra = [g["bytes"] - s["bytes"] for s, g in pairs]
        rows.append({"q": q, "bytes_single": float(np.mean([s["bytes"] for s, _ in pairs])),
                     "bytes_grouped": float(np.mean([g["bytes"] for _, g in pairs])),
                     "overhead_bytes": float(np.mean(extra)),
                     "overhead_pct": float(np.mean([100 * e / s["bytes"] for e, (s, _) in zip(extra, pairs)])),
                     "psnr_delta_db": p_grouped["psnr"] - p_single["psnr"]})
    return {"bd_rate_grouped_vs_single": compare(curves, "ssic", "ssic-grouped")["bd_rate"],
            "mean_groups": float(np.mean([r["groups"] for r in per_image["ssic-grouped"]])),
            "per_quality": rows}


# ----- output ----------------------------------------------------------------------------------
def fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f} %" if unit == "%" else f"{value:+.2f} dB"


def fmt_range(r: Optional[list]) -> str:
    return "none" if r is None else f"{r[0]:.1f}–{r[1]:.1f}"


def ssic_table(points: list[dict]) -> list[str]:
    lines = ["### ssic (single group)", "", "| quality | bpp | PSNR (dB) | encode s | decode s |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {p['q']:g} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['enc_s']:.2f} | {p['dec_s']:.2f} |"
              for p in points]
    return lines + [""]


def vs_jpeg_table(rows: dict, anchored: dict) -> list[str]:
    lines = ["### Every codec vs JPEG (BD-rate: negative = fewer bits at equal PSNR)", "",
             "| codec | BD-rate | BD-PSNR | PSNR overlap (dB) | this run vs the anchors' run |",
             "|---|---:|---:|---|---:|"]
    order = sorted(rows, key=lambda n: (rows[n]["bd_rate"] is None, rows[n]["bd_rate"] or 0))
    for n in order:
        r, a = rows[n], anchored.get(n)
        lines.append(f"| {n} | {fmt(r['bd_rate'], '%')} | {fmt(r['bd_psnr'], 'dB')} | "
                     f"{fmt_range(r['psnr_overlap'])} | {fmt(a['bd_rate'], '%') if a else ''} |")
    return lines + [""]


def ssic_vs_table(rows: dict) -> list[str]:
    lines = ["### ssic vs each codec (BD-rate: negative = ssic needs fewer bits; BD-PSNR: "
             "ssic's PSNR gain at equal rate)", "",
             "| reference | ssic BD-rate | ssic BD-PSNR | PSNR overlap (dB) |", "|---|---:|---:|---|"]
    lines += [f"| {n} | {fmt(r['bd_rate'], '%')} | {fmt(r['bd_psnr'], 'dB')} | {fmt_range(r['psnr_overlap'])} |"
              for n, r in rows.items()]
    return lines + [""]


def per_quality_table(curve: list[dict], gaps: dict) -> list[str]:
    refs = list(gaps["vs"])
    lines = ["### ssic against each codec at each quality (rate change at equal PSNR, the "
             "reference interpolated between its measured points; blank: outside its range)", "",
             "| quality | bpp | PSNR (dB) | " + " | ".join(refs) + " |", "|---:|---:|---:|" + "---:|" * len(refs)]
    for i, p in enumerate(curve):
        cells = ["" if gaps["vs"][n][i] is None else f"{gaps['vs'][n][i]:+.1f} %" for n in refs]
        lines.append(f"| {p['q']:g} | {p['bpp']:.3f} | {p['psnr']:.2f} | " + " | ".join(cells) + " |")
    return lines + [""]


def structuring_table(s: dict, mask: str) -> list[str]:
    lines = [f"### Structuring cost: {mask} mask (mean {s['mean_groups']:.2f} groups) vs one group", "",
             f"BD-rate grouped vs single group: **{fmt(s['bd_rate_grouped_vs_single'], '%')}** (target ≤ +3 %)", "",
             "| quality | bytes (1 group) | bytes (grouped) | overhead bytes | overhead % | ΔPSNR (dB) |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['q']:g} | {r['bytes_single']:.0f} | {r['bytes_grouped']:.0f} | {r['overhead_bytes']:+.0f} | "
              f"{r['overhead_pct']:+.2f} | {r['psnr_delta_db']:+.3f} |" for r in s["per_quality"]]
    return lines + [""]


def markdown(results: dict) -> str:
    curves, tables = results["curves"], results["bd_rate"]
    lines = ssic_table(curves["ssic"]) if "ssic" in curves else []
    if tables["vs_jpeg"]:
        lines += vs_jpeg_table(tables["vs_jpeg"], tables["measured_vs_anchors"])
    if tables["ssic_vs"]:
        lines += ssic_vs_table(tables["ssic_vs"])
    if results.get("per_quality", {}).get("vs"):
        lines += per_quality_table(curves["ssic"], results["per_quality"])
    if "structuring" in results:
        lines += structuring_table(results["structuring"], results["meta"]["group_mask"])
    return "\n".join(lines)


def plot(curves: dict, path: Path, title: str, classic_here: bool) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 6.5), dpi=110)
    others = [n for n in curves if not n.startswith("ssic")]
    tab10 = plt.get_cmap("tab10").colors
    palette = [c for i, c in enumerate(tab10) if i != 3] + list(plt.get_cmap("Dark2").colors)   # red is ssic's
    for i, name in enumerate(others):
        pts = curves[name]
        published = name.startswith("published:")
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], color=palette[i % len(palette)],
                lw=1.0 if published else 1.5, ls="--" if published else "-", marker="." if published else "s",
                ms=6 if published else 3.5,
                label=name.replace("published:", "") + (" (published)" if published else
                                                        " (run here)" if classic_here else " (anchors)"))
    for name, color, ls in (("ssic", "crimson", "-"), ("ssic-grouped", "black", ":")):
        if name in curves:
            ax.plot([p["bpp"] for p in curves[name]], [p["psnr"] for p in curves[name]], color=color, ls=ls,
                    lw=2.2, marker="o", ms=4, zorder=5, label=name)
    ours = [p for n in ("ssic", "ssic-grouped") for p in curves.get(n, [])]
    ax.set_xlim(0, max([2.0] + [1.1 * p["bpp"] for p in ours]))
    ax.set_ylim(min([24.0] + [np.floor(p["psnr"]) - 1 for p in ours]), 42)
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel("RGB PSNR (dB, 8-bit)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_title(meta: dict) -> str:
    title = f"{meta.get('set', 'Kodak')} ({meta['images']} images), mean RGB PSNR vs mean bpp"
    if "weights" in meta:
        w = meta["weights"]
        steps = w["card"].get("steps")
        title += f" — ssic weights {w['path']}" + (f" ({steps} training steps)" if steps else "")
    return title


# ----- main ------------------------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.rd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--qualities", default=DEFAULT_QUALITIES,
                    help="ssic qualities, comma-separated, 1..8 (default: %(default)s)")
    ap.add_argument("--images", type=int, metavar="N", help="only the first N Kodak images (quick runs)")
    ap.add_argument("--skip-classic", action="store_true",
                    help="do not run the classic encoders; use the anchors' measured curves instead")
    ap.add_argument("--skip-ssic", action="store_true", help="classic encoders and published curves only")
    ap.add_argument("--classic-from", type=Path, metavar="JSON",
                    help="do not run the classic encoders; reuse their curves from an earlier result of "
                         "this script on the same images (e.g. a plain run, for an --effort run)")
    ap.add_argument("--out", type=Path, default=RESULTS / "rd_kodak.json",
                    help="JSON output (default: bench/results/rd_kodak.json)")
    ap.add_argument("--plot", type=Path, help="RD plot PNG (default: --out with .png)")
    ap.add_argument("--kodak", type=Path, default=KODAK,
                    help="directory of kodim*.png (default: $SSIC_SHARED/data/kodak)")
    ap.add_argument("--photos", type=Path, metavar="DIR",
                    help="measure on this folder of PNGs (e.g. the held-out set of python -m bench.holdout) "
                         "instead of Kodak: classic encoders run here, no published or anchor curves")
    ap.add_argument("--group-mask", choices=sorted(MASKS), default="irregular",
                    help="mask for the structuring cost: a seeded 3-5 group flood fill, or the "
                         "saliency detector's blobs (default: %(default)s)")
    ap.add_argument("--block-size", type=int, choices=(16, 32, 64), default=BLOCK_SIZE,
                    help="block size of the structuring-cost masks (default: %(default)s, the CLI's)")
    ap.add_argument("--single-only", action="store_true",
                    help="ssic as one group only (no grouped run, no structuring cost): half the time")
    ap.add_argument("--effort", type=int, choices=range(10), default=0, metavar="0-9",
                    help="ssic encoder effort level (`ssic encode -e`; default: %(default)s)")
    ap.add_argument("--seed", type=int, default=2023, help="seed of the irregular masks (default: %(default)s)")
    ap.add_argument("--published", default=DEFAULT_PUBLISHED,
                    help="curves from anchors/kodak_published_rd.json, comma-separated, '' for none "
                         "(default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="classic encoder processes at a time (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for ssic (default: %(default)s)")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="measure nothing: join runs of the same images that split the ssic qualities "
                         "between processes (e.g. --qualities 1,3,5,7 and 2,4,6,8) into --out")
    ap.add_argument("--reanalyse", action="store_true",
                    help="measure nothing: recompute tables and plot from the measurements in --out")
    args = ap.parse_args(argv)
    if args.photos and args.skip_classic:
        ap.error("--photos needs the classic encoders run here (the anchors are Kodak's); "
                 "--classic-from reuses an earlier run's")
    if args.classic_from and args.skip_classic:
        ap.error("--classic-from and --skip-classic both replace the classic run; give one")
    if args.photos:
        args.published = ""
    return args


def measure(args, files: list[Path]) -> dict:
    """Run everything asked for; the raw results (meta, curves, per-image rows)."""
    qualities = [float(q) for q in args.qualities.split(",") if q.strip()]
    images = {f.name: load_rgb(f) for f in files}
    started = time.perf_counter()
    curves, per_image = {}, {}
    if args.skip_classic:
        curves.update(anchor_classic_curves())
    elif args.classic_from:
        got, rows, classic_meta = earlier_classic(args.classic_from, sorted(images))
        curves.update(got)
        per_image.update(rows)
    else:
        check_tools()
        got, rows = run_classic(files, images, args.jobs)
        curves.update(got)
        per_image.update(rows)
    curves.update(published_curves([n for n in args.published.split(",") if n]))
    full_set = not args.photos and len(files) == len(kodak_files(args.kodak, None))
    meta = {"set": args.photos.name if args.photos else "Kodak", "images": len(files), "full_set": full_set,
            "qualities": qualities,
            "metric": "mean bpp (whole file) and mean RGB PSNR (8-bit, 3 channels) over the images",
            "classic": "anchors file (not re-run)" if args.skip_classic else
                       classic_meta["classic"] if args.classic_from else
                       {c.name: {"command": c.command, "settings": list(c.ladder)} for c in CLASSICS},
            "tool_versions": {} if args.skip_classic else
                             classic_meta["tool_versions"] if args.classic_from else tool_versions(),
            **({"classic_from": str(args.classic_from)} if args.classic_from else {}),
            "published_source": PUBLISHED_NOTE, "group_mask": args.group_mask,
            "host": f"{platform.node()} ({os.cpu_count()} cpus)", "date": time.strftime("%Y-%m-%d %H:%M")}
    if not args.skip_ssic:
        import torch
        torch.set_num_threads(args.threads)
        mask_fn = MASKS[args.group_mask]
        masks = None if args.single_only else {name: mask_fn(rgb, i, args.seed, args.block_size)
                                               for i, (name, rgb) in enumerate(images.items())}
        meta["weights"] = weights_info()
        meta["group_mask_detail"] = (
            f"seeded flood fill (ssic_cli.train_data.random_group_blocks, seed [{args.seed}, image index]), "
            f"{MASK_GROUPS[0]}-{MASK_GROUPS[1]} connected groups, {args.block_size}px blocks"
            if args.group_mask == "irregular" else
            f"saliency detector, one group per blob (group_by=instance), {args.block_size}px blocks")
        meta["effort"] = args.effort
        got, rows = run_ssic(images, masks, qualities, args.effort)
        curves.update(got)
        per_image.update(rows)
    meta["run_s"] = round(time.perf_counter() - started, 1)
    return {"meta": meta, "curves": curves, "per_image": per_image}


def merge_runs(runs: list[dict]) -> dict:
    """One raw result from runs of the same images and settings that measured different ssic
    qualities (two processes use both cores; one process per quality subset)."""
    first = runs[0]
    keys = ("set", "images", "effort", "group_mask", "weights")
    for other in runs[1:]:
        if any(other["meta"].get(k) != first["meta"].get(k) for k in keys):
            raise SystemExit(f"--merge: the runs differ in one of {', '.join(keys)}")
    meta = dict(first["meta"], run_s=sum(r["meta"]["run_s"] for r in runs),
                qualities=sorted(q for r in runs for q in r["meta"]["qualities"]))
    curves = dict(first["curves"])
    per_image = {k: list(v) for k, v in first["per_image"].items()}
    for other in runs[1:]:
        for name, points in other["curves"].items():
            if name.startswith("ssic"):
                curves[name] = sorted(curves.get(name, []) + points, key=lambda p: p["q"])
        for name, rows in other["per_image"].items():
            if name.startswith("ssic"):
                per_image[name] = per_image.get(name, []) + rows
    return {"meta": meta, "curves": curves, "per_image": per_image}


def analyse(raw: dict) -> dict:
    """Raw results + BD-rate tables and the structuring cost (per-image rows last)."""
    meta, curves, per_image = raw["meta"], raw["curves"], raw["per_image"]
    rerun = isinstance(meta["classic"], dict)
    anchored = anchor_classic_curves() if rerun and meta["full_set"] else {}
    results = {"meta": meta, "curves": curves, "bd_rate": bd_tables(curves, anchored)}
    if "ssic" in curves:
        results["per_quality"] = per_quality_gaps(curves)
    if "ssic-grouped" in curves:
        results["structuring"] = structuring_cost(per_image, curves)
    results["per_image"] = per_image
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)      # torch.jit deprecation noise
    if args.reanalyse:
        raw = json.loads(args.out.read_text())
    elif args.merge:
        raw = merge_runs([json.loads(Path(f).read_text()) for f in args.merge])
    else:
        files = photo_files(args.photos, args.images) if args.photos else kodak_files(args.kodak, args.images)
        raw = measure(args, files)
        write_json(args.out, raw)                                    # keep the measurements first
    results = analyse(raw)
    write_json(args.out, results)
    plot_path = args.plot or args.out.with_suffix(".png")
    meta = results["meta"]
    plot(results["curves"], plot_path, plot_title(meta), isinstance(meta["classic"], dict))
    print(markdown(results))
    log(f"wrote {args.out} and {plot_path} (measurements took {meta['run_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
