"""Build the held-out photo set: 24 COCO val2017 photos that no ssic weights were trained on.

Kodak is the standard test set but also the one every choice was tuned against, so the transform
issue asks for "the same margin over WebP on other photos you hold out". The training crops
(``$SSIC_SHARED/data/train``) hold COCO *train2017* images (the coco128 set) and none of val2017,
so val2017 is held out by construction. From its photos with a short side of at least 400 px,
sorted by COCO id, every ``stride``-th is taken until there are 24; each is downscaled by 0.75
(Lanczos, which hides most of Flickr's JPEG artefacts, as the training set's recipe does) and
centre-cropped to a multiple of 16, and saved as plain sRGB PNG (the ICC profiles some carry
are dropped: every codec then reads the same numbers, and heif-convert cannot write some of
them back). Deterministic: the same files on every machine.

    python -m bench.holdout                     # writes runs/holdout/*.png + MANIFEST.tsv
    python -m bench.rd --photos runs/holdout --out bench/results/rd_holdout.json

The PNGs stay out of git (derived from ../shared data); this script is how to get them back.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from .common import COCO, ROOT, SHARED, coco_instances, log

COUNT = 24
SCALE = 0.75
MIN_SHORT_SIDE = 400


def training_sources(train_dir: Path) -> set[str]:
    """Original paths (e.g. ``train2017/000000000009.jpg``) of every training crop's source."""
    sources = set()
    for manifest in train_dir.rglob("MANIFEST.tsv"):
        for line in manifest.read_text().splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) > 2:
                sources.add(fields[2])
    return sources


def pick(instances: dict, excluded: set[str]) -> list[dict]:
    """``COUNT`` val2017 photos, evenly spread over the eligible ones sorted by id."""
    eligible = sorted((im for im in instances["images"]
                       if im["coco_split"] == "val2017" and min(im["width"], im["height"]) >= MIN_SHORT_SIDE
                       and f"val2017/{im['file_name']}" not in excluded),
                      key=lambda im: im["id"])
    if len(eligible) < COUNT:
        raise SystemExit(f"only {len(eligible)} eligible val2017 photos; need {COUNT}")
    stride = len(eligible) / COUNT
    return [eligible[int(i * stride)] for i in range(COUNT)]


def prepare(path: Path) -> Image.Image:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    w, h = round(rgb.width * SCALE), round(rgb.height * SCALE)
    small = rgb.resize((w, h), Image.LANCZOS)
    cw, ch = w - w % 16, h - h % 16
    left, top = (w - cw) // 2, (h - ch) // 2
    return small.crop((left, top, left + cw, top + ch))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.holdout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--coco", type=Path, default=COCO, help="COCO subset (default: %(default)s)")
    ap.add_argument("--train", type=Path, default=SHARED / "data/train",
                    help="training crops, whose manifests name the photos to exclude (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/holdout", help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)
    instances = coco_instances(args.coco)
    licenses = {lic["id"]: lic["name"] for lic in instances["licenses"]}
    chosen = pick(instances, training_sources(args.train))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = ["file\tcoco_id\tsource\tsize\tlicense\tflickr_url"]
    for im in chosen:
        name = f"coco_{im['id']:012d}.png"
        picture = prepare(args.coco / "images" / im["file_name"])
        picture.save(args.out / name, icc_profile=None)
        rows.append(f"{name}\t{im['id']}\tval2017/{im['file_name']}\t{picture.width}x{picture.height}\t"
                    f"{licenses.get(im['license'], im['license'])}\t{im.get('flickr_url', '')}")
    (args.out / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    log(f"wrote {len(chosen)} photos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
