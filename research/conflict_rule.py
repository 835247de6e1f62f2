"""Which group a block shared by several objects goes to: the conflict rule, measured on COCO.

A block belongs to one group only, so where objects of two classes meet, one class's pixels are
coded (sealed, extracted, dropped) with the other's group. For every class this counts the
fraction of its annotated pixels (COCO ground-truth masks, crowds included) that land in a block
of a group of another class (or background), under two rules:

* ``largest coverage`` — the rule before ssic 0.5: the group covering most of the block wins
  (``priority=()``);
* ``person first`` — the default since: ``person`` claims every block any of its pixels touches
  and wins every block it shares (``GroupPolicy()``).

Run from the repository root (numpy only, about a minute)::

    python -m research.conflict_rule --out research/results/conflict_rule.json

It also measures the README's example photo (its label map, and YOLO where the shared model is).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from ssic_cli.detect.user import regions_from_coco, regions_from_label_map
from ssic_cli.mask import GroupPolicy, region_pixels, regions_to_group_mask

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSIC_SHARED", ROOT.parent / "shared"))
COCO = SHARED / "data" / "coco"
EXAMPLE = ROOT / "examples" / "coco_000000005001"
SEG_MODEL = SHARED / "models" / "yolov8n-seg_int8.tflite"
RULES = {"largest coverage": GroupPolicy(priority=(), min_score=0.0, max_groups=255),
         "person first": GroupPolicy(min_score=0.0, max_groups=255)}
SETTINGS = [(16, "class"), (32, "class"), (64, "class"), (16, "instance")]


def outside_by_class(regions, width: int, height: int, policy: GroupPolicy) -> dict[str, tuple[int, int]]:
    """{class: (object pixels, of them in a block of another class's group or of background)}."""
    gm = regions_to_group_mask(regions, width, height, policy)
    labels = np.asarray(gm.labels)[gm.pixel_ids(width, height)]
    masks: dict[str, np.ndarray] = {}
    for r in regions:
        m = region_pixels(r, width, height)
        masks[r.label] = masks[r.label] | m if r.label in masks else m
    return {c: (int(m.sum()), int((m & (labels != c)).sum())) for c, m in masks.items()}


def add(total: dict, counts: dict) -> None:
    for c, (n, out) in counts.items():
        t = total.setdefault(c, [0, 0, 0])
        t[0] += n
        t[1] += out
        t[2] += out > 0                       # images where some of it is outside


def measure_coco() -> dict:
    data = json.loads((COCO / "instances.json").read_text())
    images = [im for im in data["images"] if (COCO / "images" / im["file_name"]).exists()
              and any(a["image_id"] == im["id"] for a in data["annotations"])]
    result = {"images": len(images), "settings": {}}
    per_image = [(im, regions_from_coco(COCO / "instances.json", im["file_name"], data=data)) for im in images]
    for block, group_by in SETTINGS:
        key = f"block {block}, group by {group_by}"
        result["settings"][key] = {}
        for rule, policy in RULES.items():
            total: dict = {}
            for im, regions in per_image:
                p = policy.replace(block_size=block, group_by=group_by)
                add(total, outside_by_class(regions, im["width"], im["height"], p))
            result["settings"][key][rule] = {c: {"pixels": n, "outside": out, "fraction": out / n, "images": k}
                                             for c, (n, out, k) in sorted(total.items())}
    return result


def measure_example() -> dict:
    from PIL import Image
    with Image.open(EXAMPLE.with_suffix(".jpg")) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    sources = {"label map": regions_from_label_map(f"{EXAMPLE}_labels.png", f"{EXAMPLE}_names.json", w, h)}
    if SEG_MODEL.exists():
        from ssic_cli.detect import detect_regions
        sources["yolo"] = detect_regions(rgb, "yolo", weights=str(SEG_MODEL))
    out = {}
    for name, regions in sources.items():
        out[name] = {}
        for rule, policy in RULES.items():
            counts = outside_by_class(regions, w, h, policy.replace(min_score=0.25, max_groups=32))
            out[name][rule] = {c: {"pixels": n, "outside": o, "fraction": o / n} for c, (n, o) in sorted(counts.items())}
    return out


def markdown(result: dict, classes=("person", "scissors", "car", "dog", "chair", "handbag", "bicycle", "tie",
                                    "cup", "dining table")) -> str:
    lines = []
    for key, rules in result["coco"]["settings"].items():
        lines += [f"**{key}** ({result['coco']['images']} COCO images, ground-truth masks)", "",
                  "| class | pixels | outside, largest coverage | outside, person first |", "|---|---:|---:|---:|"]
        before, after = rules["largest coverage"], rules["person first"]
        every = {"all classes": {r: [sum(v[f] for v in rules[r].values()) for f in ("pixels", "outside")]
                                 for r in rules}}
        for c in classes:
            if c in before:
                lines.append(f"| {c} | {before[c]['pixels']:,} | {before[c]['fraction']:.2%} "
                             f"({before[c]['images']} img) | {after[c]['fraction']:.2%} ({after[c]['images']} img) |")
        n, b = every["all classes"]["largest coverage"]
        _, a = every["all classes"]["person first"]
        lines += [f"| all classes | {n:,} | {b / n:.2%} | {a / n:.2%} |", ""]
    for source, rules in result["example"].items():
        lines.append(f"examples/coco_000000005001.jpg, {source}: " + "; ".join(
            f"{rule}: " + ", ".join(f"{c} {v['fraction']:.2%}" for c, v in counts.items())
            for rule, counts in rules.items()))
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "research" / "results" / "conflict_rule.json")
    args = ap.parse_args(argv)
    result = {"coco": measure_coco(), "example": measure_example()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
