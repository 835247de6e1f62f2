"""Region-of-interest benchmark on the shared COCO subset: what a receiver pays for the people.

One run over ``$SSIC_SHARED/data/coco`` (default ``../shared``) measures, at every ssic quality
and every classic-codec setting of the ladders below:

* **ROI rate–distortion** for two ROIs — ``person`` (images with a person) and ``objects`` (the
  union of every annotated object, all images): bits a receiver must get ÷ ROI pixels (pooled
  over images) against the mean per-image PSNR inside the ROI — over the ground-truth mask, and
  over the union of the ground-truth boxes where the method delivers all of those pixels — for
  ``ssic`` (extract the ROI group, decode it), ``ssic-full`` (the same file sent whole: same ROI
  pixels, more bits), ``ssic-box`` (person ROI: groups made from the boxes instead of the masks,
  selective), ``jpeg`` / ``webp`` / ``avif`` (the whole image) and ``avif-crop`` (the ROI's
  bounding rectangle cut out and coded). Groups come from the ground truth; ``ssic-yolo`` (person
  ROI, qualities 2/4/8) groups with the YOLO detector instead (score ≥ 0.25) and reports how much
  of the true ROI its person group covers (PSNR over the covered part).
* **Boundary band** (person ROI, q 4): PSNR in a band ±4 px around the ROI boundary (inside the decoded
  blocks) for the selective decode, the full decode and the image coded as one group; whether
  the selective and full decodes give identical ROI pixels; file size against one group.
* **Downstream**: YOLOv8n-seg (int8 TFLite) person AP50 for boxes and masks with pycocotools on
  the person images, for the originals, the ssic selective decodes (other blocks grey), AVIF and
  the AVIF crop pasted on grey, at each setting (conf ≥ 0.001, ≤ 100 detections, crowds ignored).
* **Time**: selective vs full person decode at q 4 against the decoded area (1 torch thread per worker,
  ``--jobs`` workers running side by side).

Grouping: ``person`` ROI files have two groups (``person``, ``background``), ``objects`` ROI files
two (``object``, ``background``): the receiver fetches one group and every ROI pixel is in it
(class grouping of several classes could hand a person's block to a bicycle). The CLI's block
size (16; ``--block-size`` to change) and any-overlap coverage. Images whose ROI has fewer than 1024 pixels are skipped
for that ROI. Classic codecs: the Kodak benchmark's encoders and settings (``bench.classic``).

    python -m bench.roi --out bench/results/roi_coco.json
    python -m bench.roi --limit 6 --out /tmp/roi.json            # a quick look

Needs the classic tools (``bench/setup.sh``), pycocotools and the YOLO TFLite model in
``$SSIC_SHARED/models`` (without it the YOLO parts are skipped and say so). JSON to ``--out``,
a plot next to it, markdown tables on stdout, progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ssic_cli.mask import DEFAULT_BLOCK_SIZE  # numpy only: the workers import torch

from .bdrate import bd_rate_curves
from .classic import check_tools, get_classic, run_timed, tool_versions
from .coco_ap import ap50, load_ground_truth, person_detections
from .common import SHARED, coco_instances, load_rgb, log, write_json

QUALITIES = (1.0, 2.0, 4.0, 6.0, 8.0)
LADDERS = {"jpeg": (5, 10, 20, 40, 70), "webp": (2, 10, 30, 60, 90), "avif": (62, 55, 48, 40, 32)}
YOLO_QUALITIES = (2.0, 4.0, 8.0)      # detector-made groups: a secondary table, fewer points
BLOCK_SIZE = DEFAULT_BLOCK_SIZE          # the CLI's
BAND_PX = 4
MIN_ROI_PIXELS = 1024
DETAIL_Q = 4.0                 # quality of the boundary, timing and one-group measurements
GROUP_SCORE = 0.25             # YOLO score a region needs to become a group (the CLI default)
AP_SCORE = 0.001               # YOLO score floor for the AP evaluation (COCO practice)
GREY = 128
YOLO_MODEL = "yolov8n-seg_int8.tflite"
ROI_GROUP = {"person": "person", "objects": "object"}


# ----- ROIs ------------------------------------------------------------------------------------
@dataclass
class Roi:
    name: str              # "person" or "objects"
    regions: list          # the ground-truth regions that make it
    mask: np.ndarray       # bool H x W: union of the instance masks
    box: np.ndarray        # bool H x W: union of the instance boxes
    rect: tuple            # (x0, y0, x1, y1): bounding rectangle of the boxes


def make_roi(name: str, regions: list, width: int, height: int) -> Optional[Roi]:
    from ssic_cli.mask import clip_box, region_pixels
    if not regions:
        return None
    mask = np.zeros((height, width), bool)
    box = np.zeros((height, width), bool)
    for r in regions:
        mask |= region_pixels(r, width, height)
        x0, y0, x1, y1 = clip_box(r.box, width, height)
        box[y0:y1, x0:x1] = True
    if mask.sum() < MIN_ROI_PIXELS:
        return None
    ys, xs = np.nonzero(box)
    return Roi(name, regions, mask, box, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def image_rois(regions: list, width: int, height: int) -> dict[str, Roi]:
    people = [r for r in regions if r.label == "person"]
    rois = {"person": make_roi("person", people, width, height),
            "objects": make_roi("objects", regions, width, height)}
    return {k: v for k, v in rois.items() if v is not None}


def person_images(records: list[dict], shared: Path, coco: dict):
    """(file name, RGB array, person Roi) of every image with a person ROI in an earlier run's
    records, in their order (the probes under research/probes/ re-measure those images)."""
    from ssic_cli.detect.user import regions_from_coco
    for rec in records:
        if "points" not in rec or not any(p["roi"] == "person" for p in rec["points"]):
            continue
        with Image.open(Path(shared) / "data/coco/images" / rec["image"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = rgb.shape[:2]
        yield rec["image"], rgb, image_rois(regions_from_coco(None, rec["image"], w, h, data=coco), w, h)["person"]


def group_mask_for(roi_name: str, regions: list, width: int, height: int, boxes_only: bool):
    """Two groups: the ROI's (every region relabelled to one name) and ``background``."""
    from ssic_cli.detect.base import Region
    from ssic_cli.mask import regions_to_group_mask
    name = ROI_GROUP[roi_name]
    relabelled = [Region(name, r.box, 1.0, None if boxes_only else r.mask) for r in regions]
    return regions_to_group_mask(relabelled, width, height, block_size=BLOCK_SIZE)


def group_area(group_mask, names: list[str], width: int, height: int) -> np.ndarray:
    """Bool H x W: the pixels of the blocks of the named groups (what their decode produces)."""
    wanted = [group_mask.index_of(n) for n in names if n in group_mask.names]
    return np.isin(group_mask.pixel_ids(width, height), wanted)


def masked_psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> Optional[float]:
    """PSNR over the ``where`` pixels; None when there are none, 99 dB (not inf: JSON) when equal."""
    from ssic_cli.evaluate import psnr
    return min(psnr(a[where], b[where]), 99.0) if where.any() else None


def boundary_band(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    m = mask.astype(np.uint8)
    return (cv2.dilate(m, kernel) > 0) & ~(cv2.erode(m, kernel) > 0)


# ----- worker state (one per process) ----------------------------------------------------------
_W: dict = {}


def init_worker(shared: str, weights: Optional[str], threads: int, block_size: int = BLOCK_SIZE) -> None:
    global BLOCK_SIZE
    BLOCK_SIZE = block_size                   # workers are spawned: the option travels here
    warnings.simplefilter("ignore")           # library deprecation chatter, once per worker
    import torch
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    from ssic_cli.weights import load_weights
    _W["weights"] = load_weights(weights)
    _W["coco"] = coco_instances(Path(shared) / "data/coco")
    _W["work"] = Path(tempfile.mkdtemp(prefix="ssic-roi-"))
    _W["yolo"] = None
    model = Path(shared) / "models" / YOLO_MODEL
    if model.exists():
        from ssic_cli.detect import get_detector
        _W["yolo"] = get_detector("yolo", weights=str(model), conf=AP_SCORE, threads=threads, max_det=100)


def detect(rgb: np.ndarray) -> list:
    return _W["yolo"].detect(rgb) if _W["yolo"] is not None else []


# ----- codecs ----------------------------------------------------------------------------------
def ssic_encode(rgb, group_mask, q) -> tuple[bytes, float]:
    from ssic_cli import codec
    t0 = time.perf_counter()
    data = codec.encode(rgb, group_mask, q, weights=_W["weights"])
    return data, time.perf_counter() - t0


def ssic_decode(data: bytes) -> tuple[np.ndarray, float]:
    from ssic_cli import codec
    t0 = time.perf_counter()
    img = codec.decode(data, weights=_W["weights"], background="gray").image.convert("RGB")
    return np.asarray(img), time.perf_counter() - t0


def classic_roundtrip(name: str, setting, rgb: np.ndarray, tag: str) -> tuple[int, np.ndarray]:
    """Code an array with a command-line codec: (bytes, decoded array); files removed."""
    c = get_classic(name)
    work = _W["work"]
    src, comp, dec = (work / f"{tag}.{c.source_ext}", work / f"{tag}.{c.ext}", work / f"{tag}-out.{c.decoded_ext}")
    try:
        Image.fromarray(rgb).save(src)
        run_timed(c.encode(setting, str(src), str(comp)))
        run_timed(c.decode(str(comp), str(dec)))
        return comp.stat().st_size, load_rgb(dec)
    finally:
        for f in (src, comp, dec):
            f.unlink(missing_ok=True)


# ----- one image -------------------------------------------------------------------------------
def point(method: str, roi: Roi, setting, bits: int, rgb, decoded, delivered: np.ndarray, **extra) -> dict:
    """One measurement: bits and PSNR over the ROI mask / boxes (None where not delivered)."""
    in_mask = roi.mask & delivered
    return {"method": method, "roi": roi.name, "setting": setting, "bits": int(bits),
            "roi_pixels": int(roi.mask.sum()),
            "psnr_mask": masked_psnr(rgb, decoded, in_mask),
            "psnr_box": masked_psnr(rgb, decoded, roi.box) if not (roi.box & ~delivered).any() else None,
            "coverage": float(in_mask.sum() / roi.mask.sum()), **extra}


def measure_ssic(rgb, roi: Roi, q: float, methods: tuple[str, ...], out: dict) -> None:
    """ssic (mask groups, selective), ssic-full (the same file whole), ssic-box (box groups)."""
    from ssic_cli import container
    h, w = rgb.shape[:2]
    name = ROI_GROUP[roi.name]
    for method in methods:
        gm = group_mask_for(roi.name, roi.regions, w, h, boxes_only=method == "ssic-box")
        data, _ = ssic_encode(rgb, gm, q)
        part = container.extract(data, [name])
        area = group_area(gm, [name], w, h)
        decoded, _ = ssic_decode(part)
        out["points"].append(point(method, roi, q, len(part) * 8, rgb, decoded, area, area=float(area.mean())))
        if method == "ssic":
            # The whole file gives the ROI exactly these pixels (each group is decoded on its own;
            # tested in tests/, re-checked at DETAIL_Q on every image), so only its size differs.
            out["points"].append(point("ssic-full", roi, q, len(data) * 8, rgb, decoded, area))
            out.setdefault("decodes", {})[(roi.name, q)] = (data, part, decoded, area)


def measure_yolo_groups(rgb, roi: Roi, detections: list, q: float, out: dict) -> None:
    """Person groups from the detector (score >= GROUP_SCORE) instead of the annotations."""
    from ssic_cli import container
    h, w = rgb.shape[:2]
    found = [r for r in detections if r.label == "person" and r.score >= GROUP_SCORE]
    gm = group_mask_for("person", found, w, h, boxes_only=False)
    data, _ = ssic_encode(rgb, gm, q)
    if "person" in gm.names:
        part = container.extract(data, ["person"])
        decoded, _ = ssic_decode(part)
        area = group_area(gm, ["person"], w, h)
    else:                                     # nothing found: the receiver gets a header only
        part = container.extract_ssb(container.read_ssb(data), [])
        decoded, area = np.full_like(rgb, GREY), np.zeros((h, w), bool)
    out["points"].append(point("ssic-yolo", roi, q, len(part) * 8, rgb, decoded, area))


def measure_classic(rgb, rois: dict[str, Roi], tag: str, out: dict) -> None:
    """JPEG / WebP / AVIF on the whole image; AVIF on each ROI's bounding rectangle."""
    h, w = rgb.shape[:2]
    everything = np.ones((h, w), bool)
    for name, ladder in LADDERS.items():
        for s in ladder:
            size, decoded = classic_roundtrip(name, s, rgb, f"{tag}-{name}-{s}")
            for roi in rois.values():
                out["points"].append(point(name, roi, s, size * 8, rgb, decoded, everything))
            if name == "avif" and "person" in rois:
                out["images"][f"avif@{s}"] = decoded
    for roi in rois.values():
        x0, y0, x1, y1 = roi.rect
        inside = np.zeros((h, w), bool)
        inside[y0:y1, x0:x1] = True
        for s in LADDERS["avif"]:
            size, crop = classic_roundtrip("avif", s, np.ascontiguousarray(rgb[y0:y1, x0:x1]), f"{tag}-crop-{s}")
            canvas = np.full_like(rgb, GREY)
            canvas[y0:y1, x0:x1] = crop
            out["points"].append(point("avif-crop", roi, s, size * 8, rgb, canvas, inside))
            if roi.name == "person":
                out["images"][f"avif-crop@{s}"] = canvas


def measure_detail(rgb, roi: Roi, out: dict) -> dict:
    """At DETAIL_Q: selective vs full pixels and decode time, boundary band, one-group coding."""
    from ssic_cli.mask import single_group
    data, part, _, area = out["decodes"][(roi.name, DETAIL_Q)]
    selective, sel_s = ssic_decode(part)
    full, full_s = ssic_decode(data)
    h, w = rgb.shape[:2]
    one, _ = ssic_encode(rgb, single_group(w, h, BLOCK_SIZE), DETAIL_Q)
    unstructured, _ = ssic_decode(one)
    band = boundary_band(roi.mask, BAND_PX) & area
    interior = roi.mask & ~band
    return {"roi": roi.name, "area": float(area.mean()), "selective_s": sel_s, "full_s": full_s,
            "identical": bool(np.array_equal(selective[area], full[area])),
            "band_pixels": int(band.sum()),
            "band_psnr": {"selective": masked_psnr(rgb, selective, band), "full": masked_psnr(rgb, full, band),
                          "one_group": masked_psnr(rgb, unstructured, band)},
            "interior_psnr": {"selective": masked_psnr(rgb, selective, interior),
                              "one_group": masked_psnr(rgb, unstructured, interior)},
            "bits": {"selective": len(part) * 8, "full": len(data) * 8, "one_group": len(one) * 8}}


def downstream(rgb, image_id: int, person_id: int, detections: list, out: dict) -> dict[str, list]:
    """YOLO person detections on the original and on every decoded variant of this image."""
    dets = {"original": person_detections(detections, image_id, person_id)}
    for (roi_name, q), (_, _, selective, _) in out["decodes"].items():
        if roi_name == "person":          # the selective decode as it comes out: other blocks grey
            dets[f"ssic@{q:g}"] = person_detections(detect(selective), image_id, person_id)
    for key, img in out["images"].items():
        dets[key] = person_detections(detect(img), image_id, person_id)
    return dets


def measure_image(task: tuple[str, str]) -> dict:
    """Everything for one COCO image (runs in a worker process)."""
    from ssic_cli.detect.user import regions_from_coco
    shared, file_name = task
    t0 = time.perf_counter()
    with Image.open(Path(shared) / "data/coco/images" / file_name) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    coco = _W["coco"]
    regions = regions_from_coco(None, file_name, w, h, data=coco)
    rois = image_rois(regions, w, h)
    out = {"image": file_name, "width": w, "height": h, "points": [], "images": {},
           "roi_pixels": {k: int(r.mask.sum()) for k, r in rois.items()}}
    if not rois:
        return {"image": file_name, "skipped": "no ROI of >= 1024 pixels"}
    person = rois.get("person")
    detections = detect(rgb) if person is not None else []
    for q in QUALITIES:
        for roi in rois.values():
            measure_ssic(rgb, roi, q, ("ssic", "ssic-box") if roi.name == "person" else ("ssic",), out)
        if person is not None and _W["yolo"] is not None and q in YOLO_QUALITIES:
            measure_yolo_groups(rgb, person, detections, q, out)
    measure_classic(rgb, rois, Path(file_name).stem, out)
    details = [measure_detail(rgb, person, out)] if person is not None else []
    record = {"image": file_name, "width": w, "height": h, "roi_pixels": out["roi_pixels"],
              "points": out["points"], "details": details}
    if person is not None and _W["yolo"] is not None:
        image_id = record["image_id"] = next(im["id"] for im in coco["images"] if im["file_name"] == file_name)
        person_id = next(c["id"] for c in coco["categories"] if c["name"] == "person")
        record["detections"] = downstream(rgb, image_id, person_id, detections, out)
    record["seconds"] = time.perf_counter() - t0
    return record


# ----- aggregation -----------------------------------------------------------------------------
def curves(records: list[dict]) -> dict:
    """{roi: {method: [points sorted by bpp]}}: pooled ROI bpp, mean per-image PSNRs."""
    rows = [p for r in records for p in r.get("points", [])]
    out: dict = {}
    for roi in sorted({p["roi"] for p in rows}):
        for method in sorted({p["method"] for p in rows if p["roi"] == roi}):
            mine = [p for p in rows if p["roi"] == roi and p["method"] == method]
            pts = []
            for s in sorted({p["setting"] for p in mine}):
                at = [p for p in mine if p["setting"] == s]
                box = [p["psnr_box"] for p in at if p["psnr_box"] is not None]
                pts.append({"setting": s, "images": len(at),
                            "bpp": sum(p["bits"] for p in at) / sum(p["roi_pixels"] for p in at),
                            "psnr": float(np.mean([p["psnr_mask"] for p in at if p["psnr_mask"] is not None])),
                            "psnr_box": float(np.mean(box)) if len(box) == len(at) else None,
                            "coverage": float(np.mean([p["coverage"] for p in at]))})
            out.setdefault(roi, {})[method] = sorted(pts, key=lambda p: p["bpp"])
    return out


def bd(reference: list[dict], test: list[dict], key: str = "psnr") -> Optional[float]:
    ref = [{"bpp": p["bpp"], "psnr": p[key]} for p in reference if p.get(key) is not None]
    tst = [{"bpp": p["bpp"], "psnr": p[key]} for p in test if p.get(key) is not None]
    if len(ref) < 2 or len(tst) < 2:
        return None
    v = bd_rate_curves(ref, tst)
    return None if v != v else round(v, 1)


COMPARISONS = [("ssic", "ssic-full"), ("ssic", "ssic-box"), ("ssic", "avif-crop"), ("ssic", "avif"),
               ("ssic", "webp"), ("ssic", "jpeg"), ("ssic-full", "jpeg"), ("avif-crop", "avif"), ("ssic-yolo", "ssic")]


def bd_table(c: dict) -> dict:
    """BD-rate of the first method against the second (negative: the first needs fewer bits)."""
    out = {}
    for roi, methods in c.items():
        for test, ref in COMPARISONS:
            if test in methods and ref in methods:
                out[f"{roi}: {test} vs {ref}"] = {"mask": bd(methods[ref], methods[test]),
                                                  "box": bd(methods[ref], methods[test], "psnr_box")}
    return out


def detail_summary(records: list[dict]) -> dict:
    out = {}
    for roi in ("person", "objects"):
        ds = [d for r in records for d in r.get("details", []) if d["roi"] == roi]
        if not ds:
            continue

        def mean(f):
            vals = [f(d) for d in ds if f(d) is not None]
            return round(float(np.mean(vals)), 3) if vals else None
        areas = np.array([d["area"] for d in ds])
        sel = np.array([d["selective_s"] for d in ds])
        bins = [(0, .1), (.1, .25), (.25, .5), (.5, 1.01)]
        out[roi] = {
            "images": len(ds), "identical_pixels": sum(d["identical"] for d in ds),
            "band_psnr": {k: mean(lambda d, k=k: d["band_psnr"][k]) for k in ("selective", "full", "one_group")},
            "interior_psnr": {k: mean(lambda d, k=k: d["interior_psnr"][k]) for k in ("selective", "one_group")},
            "bits_vs_one_group": round(float(sum(d["bits"]["full"] for d in ds) / sum(d["bits"]["one_group"] for d in ds)), 4),
            "full_decode_s": round(float(np.median([d["full_s"] for d in ds])), 3),
            "selective_decode_s": [{"area": f"{lo:.0%}-{min(hi, 1):.0%}", "images": int(((areas >= lo) & (areas < hi)).sum()),
                                    "median_s": round(float(np.median(sel[(areas >= lo) & (areas < hi)])), 3)}
                                   for lo, hi in bins if ((areas >= lo) & (areas < hi)).any()]}
    return out


def downstream_table(records: list[dict], shared: Path, c: dict) -> dict:
    """Person AP50 (boxes, masks) per decoded variant, next to its ROI bpp."""
    with_dets = [r for r in records if "detections" in r]
    if not with_dets:
        return {}
    gt = load_ground_truth(shared / "data/coco/instances.json")
    person_id = gt.getCatIds(catNms=["person"])[0]
    ids = sorted(r["image_id"] for r in with_dets)
    bpp = {}
    for method in ("ssic", "avif", "avif-crop"):
        for p in c.get("person", {}).get(method, []):
            bpp[f"{method}@{p['setting']:g}"] = p["bpp"]
    out = {}
    for variant in with_dets[0]["detections"]:
        dets = [d for r in with_dets for d in r["detections"].get(variant, [])]
        out[variant] = {"bpp": bpp.get(variant), "ap50_box": round(ap50(gt, dets, ids, person_id, "bbox"), 4),
                        "ap50_mask": round(ap50(gt, dets, ids, person_id, "segm"), 4)}
    return {"images": len(ids), "variants": out}


# ----- report ----------------------------------------------------------------------------------
def fmt(v, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:+.{digits}f}{unit}" if unit == " %" else f"{v:.{digits}f}{unit}"


def markdown(results: dict) -> str:
    c, lines = results["curves"], []
    for roi, methods in c.items():
        lines += [f"\n**ROI = {roi}** ({results['meta']['images'][roi]} images): ROI bpp / PSNR over the mask "
                  "(/ PSNR over the boxes)\n", "| method | points (bpp / dB) |", "|---|---|"]
        for method, pts in methods.items():
            cells = ", ".join(f"{p['bpp']:.2f} / {p['psnr']:.2f}" + (f" ({p['psnr_box']:.2f})" if p["psnr_box"] else "")
                              + (f" [{p['coverage']:.0%} of ROI]" if p["coverage"] < 0.999 else "") for p in pts)
            lines.append(f"| {method} | {cells} |")
    lines += ["\n| BD-rate (mask PSNR / box PSNR) | value |", "|---|---|"]
    for k, v in results["bd_rate"].items():
        lines.append(f"| {k} | {fmt(v['mask'], ' %')} / {fmt(v['box'], ' %')} |")
    for roi, d in results["details"].items():
        lines += [f"\n**Boundary and time, ROI = {roi}, q {DETAIL_Q:g}** ({d['images']} images; selective = full "
                  f"pixels in {d['identical_pixels']}/{d['images']})\n",
                  "| | selective | full | one group |", "|---|---|---|---|",
                  f"| PSNR in ±{BAND_PX} px band | {fmt(d['band_psnr']['selective'], ' dB', 2)} | "
                  f"{fmt(d['band_psnr']['full'], ' dB', 2)} | {fmt(d['band_psnr']['one_group'], ' dB', 2)} |",
                  f"| PSNR inside, off the band | {fmt(d['interior_psnr']['selective'], ' dB', 2)} | same | "
                  f"{fmt(d['interior_psnr']['one_group'], ' dB', 2)} |",
                  f"\nfile bits / one-group bits: {d['bits_vs_one_group']:.3f}; median full decode "
                  f"{d['full_decode_s']:.3f} s; selective decode by area: " +
                  ", ".join(f"{b['area']}: {b['median_s']:.3f} s ({b['images']})" for b in d["selective_decode_s"])]
    ds = results.get("downstream", {})
    if ds:
        lines += [f"\n**Person AP50, YOLOv8n-seg int8, {ds['images']} images**\n",
                  "| input | person ROI bpp | AP50 box | AP50 mask |", "|---|---|---|---|"]
        for k, v in ds["variants"].items():
            lines.append(f"| {k} | {fmt(v['bpp'], '', 2)} | {v['ap50_box']:.3f} | {v['ap50_mask']:.3f} |")
    return "\n".join(lines)


def report(results: dict, tables: str, out: Path) -> str:
    """The protocol next to the results: what was run, on what, and every table."""
    m = results["meta"]
    options = f"--block-size {m['block_size']} " if m["block_size"] != DEFAULT_BLOCK_SIZE else ""
    took = f"in {m['seconds']} s" if m["seconds"] is not None else "(re-analysed from the records of the run)"
    return (f"# COCO region-of-interest benchmark\n\nProduced by `python -m bench.roi {options}"
            f"--out {out.as_posix()}` (`make bench-roi`; block size {m['block_size']}) "
            f"{took} "
            f"on {m['machine']}; weights {m['weights']}; "
            f"ssic qualities {', '.join(f'{q:g}' for q in m['qualities'])}; Debian tools: "
            f"{', '.join(f'{k} {v}' for k, v in m['tools'].items())}.\n"
            f"Plot: `{out.with_suffix('.png').name}`; all numbers: `{out.name}`; per-image records (kept out of "
            f"git): `{out.with_suffix('.records.json').name}`.\n\n"
            f"## Protocol\n\n{m['protocol'].strip()}\n\n## Results\n{tables}\n")


STYLE = {"ssic": ("C3", "-", "o"), "ssic-full": ("C3", "--", "o"), "ssic-box": ("C1", "-", "s"),
         "ssic-yolo": ("C6", ":", "^"), "jpeg": ("0.5", "-", "x"), "webp": ("C2", "-", "x"),
         "avif": ("C0", "-", "x"), "avif-crop": ("C0", "--", "d")}


def _log_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Log-rate axis with plain tick labels (1, 2, 5 rather than 10^0), grid, legend."""
    import matplotlib.ticker
    ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel, title=title)   # set_xscale resets formatters
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c = results["curves"]
    fig, axes = plt.subplots(1, len(c) + bool(results.get("downstream")), figsize=(6 * (len(c) + 1), 4.5))
    for ax, (roi, methods) in zip(axes, c.items()):
        for m, pts in methods.items():
            colour, line, marker = STYLE.get(m, ("k", "-", "."))
            ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], line, color=colour, marker=marker, label=m, ms=4)
        _log_axes(ax, "bits / ROI pixel", "PSNR over ROI mask (dB)",
                  f"ROI = {roi} ({results['meta']['images'][roi]} COCO images)")
    ds = results.get("downstream")
    if ds:
        ax = axes[-1]
        for m in ("ssic", "avif", "avif-crop"):
            pts = sorted((v["bpp"], v["ap50_mask"]) for k, v in ds["variants"].items()
                         if k.split("@")[0] == m and v["bpp"])
            if pts:
                colour, line, marker = STYLE[m]
                ax.plot(*zip(*pts), line, color=colour, marker=marker, label=m, ms=4)
        ax.axhline(ds["variants"]["original"]["ap50_mask"], color="k", lw=.8, label="original")
        _log_axes(ax, "bits / person pixel", "person mask AP50", f"YOLOv8n-seg on decodes ({ds['images']} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----- main ------------------------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.roi", description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="shared data folder (default: $SSIC_SHARED or ../shared)")
    ap.add_argument("--out", type=Path, required=True, help="results JSON (the plot goes next to it as .png)")
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each (default: %(default)s)")
    ap.add_argument("--weights", help="ssic weights file (default: the shipped one)")
    ap.add_argument("--block-size", type=int, choices=(16, 32, 64), default=BLOCK_SIZE,
                    help="block size of the ssic group masks (default: %(default)s, the CLI's)")
    ap.add_argument("--from-records", type=Path, help="re-analyse the raw records of an earlier run "
                    "(the --out name with .records.json) instead of measuring; pass that run's --block-size")
    return ap.parse_args(argv)


def run(args) -> list[dict]:
    coco = coco_instances(args.shared / "data/coco")
    files = sorted(im["file_name"] for im in coco["images"])
    files = files[:args.limit] if args.limit else files
    records, t0 = [], time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=init_worker,
                             initargs=(str(args.shared), args.weights, 1, args.block_size)) as pool:
        for i, rec in enumerate(pool.map(measure_image, [(str(args.shared), f) for f in files]), 1):
            records.append(rec)
            if i % 10 == 0 or i == len(files):
                log(f"{i}/{len(files)} images, {time.perf_counter() - t0:.0f} s")
    return records


def main(argv=None) -> int:
    args = parse_args(argv)
    check_tools()
    t0 = time.perf_counter()
    raw = args.out.with_suffix(".records.json")
    if args.from_records:
        records = json.loads(args.from_records.read_text())
    else:
        records = run(args)
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(records, default=float) + "\n")     # before analysis can fail
    done = [r for r in records if "points" in r]
    from ssic_cli.weights import load_weights
    lm = load_weights(args.weights)
    c = curves(done)
    results = {
        "meta": {"protocol": __doc__, "qualities": QUALITIES, "ladders": LADDERS, "block_size": args.block_size,
                 "band_px": BAND_PX, "min_roi_pixels": MIN_ROI_PIXELS, "detail_q": DETAIL_Q,
                 "weights": lm.path.name, "weights_hash": lm.weights_hash.hex(),
                 "images": {roi: sum(roi in r["roi_pixels"] for r in done) for roi in ("person", "objects")},
                 "skipped": [r["image"] for r in records if "skipped" in r],
                 "yolo": YOLO_MODEL if any("detections" in r for r in done) else None,
                 "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                 "tools": tool_versions(),
                 "seconds": None if args.from_records else round(time.perf_counter() - t0)},
        "curves": c, "bd_rate": bd_table(c), "details": detail_summary(done),
        "downstream": downstream_table(done, args.shared, c)}     # per-image rows: the records file
    write_json(args.out, results)
    plot(results, args.out.with_suffix(".png"))
    tables = markdown(results)
    args.out.with_suffix(".md").write_text(report(results, tables, args.out))
    print(tables)
    log(f"wrote {args.out} and {args.out.with_suffix('.png')} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
