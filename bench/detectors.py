"""Detector speed and group-area statistics on the shared COCO subset.

For each detector: load time, detection time per image (mean / median / p90, on ``--threads``
threads), regions per image, and for person-capable detectors the fraction of images with an
annotated person larger than 32 x 32 px in which a ``person`` was found. For ground truth (COCO
masks vs COCO boxes) and every detector: the fraction of image area in non-background groups for
block sizes 16 / 32 / 64 (class grouping, every class, any-overlap coverage).

    python -m bench.detectors                       # all images, writes bench/results/detectors.json
    python -m bench.detectors --limit 20 --detectors saliency,grid

JSON goes to ``--out``; a markdown table is printed on stdout, progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ssic_cli.detect import get_detector
from ssic_cli.detect.user import coco_boxes_only, regions_from_coco
from ssic_cli.errors import SsicError
from ssic_cli.mask import BACKGROUND, BLOCK_SIZES, regions_to_group_mask

from .common import RESULTS, SHARED, coco_instances, log
PERSON_DETECTORS = {"yolo-seg", "yolo-det", "people"}


def area_in_groups(regions, width: int, height: int, block_size: int) -> float:
    """Fraction of the image's pixels that lie in non-background blocks."""
    gm = regions_to_group_mask(regions, width, height, block_size=block_size, max_groups=255)
    if BACKGROUND not in gm.names:
        return 1.0
    bg = gm.index_of(BACKGROUND)
    b = block_size
    heights = np.minimum(b, height - b * np.arange(gm.ids.shape[0]))
    widths = np.minimum(b, width - b * np.arange(gm.ids.shape[1]))
    pixels = np.outer(heights, widths)
    return float(pixels[gm.ids != bg].sum() / (width * height))


def pixel_area(regions, width: int, height: int) -> float:
    from ssic_cli.mask import region_pixels
    fg = np.zeros((height, width), bool)
    for r in regions:
        fg |= region_pixels(r, width, height)
    return float(fg.mean())


def detector_specs(names: list[str], models: Path, threads: int) -> dict[str, tuple[str, dict]]:
    specs = {
        "yolo-seg": ("yolo", {"weights": str(models / "yolov8n-seg_int8.tflite"), "threads": threads}),
        "yolo-det": ("yolo", {"weights": str(models / "yolov8n_int8.tflite"), "threads": threads}),
        "saliency": ("saliency", {}),
        "people": ("people", {}),
        "faces": ("faces", {}),
        "grid": ("grid", {"rows": 2, "cols": 2}),
    }
    return {n: specs[n] for n in names}


def summarise(times: list[float]) -> dict:
    t = np.asarray(times) * 1000
    return {"mean_ms": round(float(t.mean()), 1), "median_ms": round(float(np.median(t)), 1),
            "p90_ms": round(float(np.percentile(t, 90)), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.detectors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="shared data folder (default: $SSIC_SHARED or ../shared)")
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--detectors", default="yolo-seg,yolo-det,saliency,people,faces,grid")
    ap.add_argument("--out", type=Path, default=RESULTS / "detectors.json")
    args = ap.parse_args(argv)

    import cv2
    cv2.setNumThreads(args.threads)
    from PIL import Image

    coco_json = args.shared / "data" / "coco" / "instances.json"
    coco = coco_instances(coco_json.parent)
    images = coco["images"][: args.limit or None]

    # Ground truth, loaded once.
    data = []
    for im in images:
        with Image.open(coco_json.parent / "images" / im["file_name"]) as f:
            rgb = np.asarray(f.convert("RGB"))
        h, w = rgb.shape[:2]
        gt = regions_from_coco(coco_json, im["file_name"], w, h, data=coco)
        big_person = any(a["image_id"] == im["id"] and a["category_id"] == 1 and not a["iscrowd"]
                         and a["bbox"][2] > 32 and a["bbox"][3] > 32 for a in coco["annotations"])
        data.append((im["file_name"], rgb, gt, big_person))
    log(f"{len(data)} images")

    area = {"gt-pixels": [pixel_area(gt, rgb.shape[1], rgb.shape[0]) for _, rgb, gt, _ in data]}
    results: dict = {"area_in_groups": {}, "detectors": {}}
    for src in ("gt-masks", "gt-boxes"):
        for b in BLOCK_SIZES:
            area[f"{src}@{b}"] = [
                area_in_groups(gt if src == "gt-masks" else coco_boxes_only(gt), rgb.shape[1], rgb.shape[0], b)
                for _, rgb, gt, _ in data]

    for name, (det_name, options) in detector_specs(args.detectors.split(","), args.shared / "models",
                                                     args.threads).items():
        t0 = time.perf_counter()
        try:
            det = get_detector(det_name, **options)
        except SsicError as exc:
            log(f"{name}: skipped ({exc})")
            results["detectors"][name] = {"skipped": str(exc)}
            continue
        det.detect(data[0][1])            # ultralytics builds its predictor on the first call
        load_s = time.perf_counter() - t0
        times, counts, found_person, per_b = [], [], [], {b: [] for b in BLOCK_SIZES}
        for i, (fn, rgb, gt, big_person) in enumerate(data):
            t = time.perf_counter()
            regions = det.detect(rgb)
            times.append(time.perf_counter() - t)
            regions = [r for r in regions if r.score >= 0.25]
            counts.append(len(regions))
            if big_person:
                found_person.append(any(r.label == "person" for r in regions))
            for b in BLOCK_SIZES:
                per_b[b].append(area_in_groups(regions, rgb.shape[1], rgb.shape[0], b))
            if (i + 1) % 50 == 0:
                log(f"{name}: {i + 1}/{len(data)}")
        # load_s: construction + first (untimed) call
        entry = {"load_s": round(load_s, 2), **summarise(times),
                 "regions_per_image": round(float(np.mean(counts)), 2)}
        if name in PERSON_DETECTORS:
            entry["person_recall_images"] = round(float(np.mean(found_person)), 3) if found_person else None
            entry["person_images"] = len(found_person)
        results["detectors"][name] = entry
        for b in BLOCK_SIZES:
            area[f"{name}@{b}"] = per_b[b]
        log(f"{name}: {entry}")

    results["area_in_groups"] = {k: {"mean": round(float(np.mean(v)), 4), "median": round(float(np.median(v)), 4)}
                                 for k, v in area.items()}
    out = {
        "name": "detectors",
        "description": "detector time per image and fraction of image area in non-background groups "
                       "(class grouping, all classes, coverage 0, min score 0.25 for detectors)",
        "dataset": f"shared COCO subset, {len(data)} images",
        "threads": args.threads,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(out))
    return 0


def markdown(out: dict) -> str:
    res = out["results"]
    lines = [f"Detectors on {out['dataset']}, {out['threads']} threads:", "",
             "| detector | load + 1st call s | mean ms/img | median | p90 | regions/img | person found* |",
             "|---|---|---|---|---|---|---|"]
    for name, e in res["detectors"].items():
        if "skipped" in e:
            lines.append(f"| {name} | skipped: {e['skipped']} | | | | | |")
            continue
        pr = e.get("person_recall_images")
        person = "" if pr is None else f"{pr:.1%} of {e['person_images']}"
        lines.append(f"| {name} | {e['load_s']} | {e['mean_ms']} | {e['median_ms']} | {e['p90_ms']} | "
                     f"{e['regions_per_image']} | {person} |")
    lines += ["", "*images with an annotated person > 32x32 px in which a `person` region was found", "",
              "Fraction of image area in non-background groups (mean over images; median in brackets):", "",
              "| source | pixels | B=16 | B=32 | B=64 |", "|---|---|---|---|---|"]
    area = res["area_in_groups"]
    srcs = ["gt-masks", "gt-boxes"] + list(res["detectors"])
    for s in srcs:
        if f"{s}@32" not in area:
            continue
        pix = f"{area['gt-pixels']['mean']:.1%}" if s == "gt-masks" else ""
        cells = [f"{area[f'{s}@{b}']['mean']:.1%} ({area[f'{s}@{b}']['median']:.1%})" for b in BLOCK_SIZES]
        lines.append(f"| {s} | {pix} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
