"""What sealing `person` covers and costs: the priority policy against the plain rule, on the
shared COCO images that contain an annotated person (ground-truth polygons as regions).

For each image and block size: the share of annotated person pixels that would stay visible
without the key (outside the person groups' blocks), the person groups' block counts, and —
with --encode N — the whole-file and person-group bytes of N of the images encoded at --quality
under both policies. Prints markdown and writes JSON.

    python -m research.probes.seal_policy --encode 30 --out research/results/probes/seal_policy.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.common import COCO, coco_instances, write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.probes.seal_policy", description=__doc__.splitlines()[0])
    ap.add_argument("--coco", type=Path, default=COCO)
    ap.add_argument("--encode", type=int, default=0, metavar="N", help="also encode N images under both policies")
    ap.add_argument("--quality", type=float, default=4.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from ssic_cli import codec, container
    from ssic_cli.detect.user import regions_from_coco
    from ssic_cli.imageio import load_image
    from ssic_cli.mask import region_pixels, regions_to_group_mask
    data = coco_instances(args.coco)
    person_id = next(c["id"] for c in data["categories"] if c["name"] == "person")
    with_person = {a["image_id"] for a in data["annotations"] if a["category_id"] == person_id}
    images = [im for im in data["images"] if im["id"] in with_person]
    policies = {"plain rule": (), "person has priority": ("person",)}
    rows = []
    for block in (16, 32):
        acc = {name: {"visible": 0, "blocks": 0, "file_bytes": 0, "person_bytes": 0} for name in policies}
        total = 0
        for n, im in enumerate(images):
            w, h = im["width"], im["height"]
            regions = regions_from_coco(args.coco / "instances.json", im["file_name"], w, h, data=data)
            person = np.zeros((h, w), bool)
            for r in regions:
                if r.label == "person":
                    person |= region_pixels(r, w, h)
            total += int(person.sum())
            for name, prio in policies.items():
                gm = regions_to_group_mask(regions, w, h, block_size=block, max_groups=255, priority=prio)
                labels = np.asarray(gm.labels)
                acc[name]["visible"] += int((person & (labels[gm.pixel_ids(w, h)] != "person")).sum())
                acc[name]["blocks"] += int(np.isin(gm.ids, np.flatnonzero(labels == "person")).sum())
                if n < args.encode:
                    rgb = load_image(args.coco / "images" / im["file_name"]).rgb
                    ssb = container.read_ssb(codec.encode(rgb, gm, args.quality))
                    acc[name]["file_bytes"] += ssb.file_size
                    acc[name]["person_bytes"] += sum(ssb.index[i][1] for i in np.flatnonzero(labels == "person"))
        for name in policies:
            rows.append({"block": block, "policy": name, "images": len(images), "encoded": min(args.encode, len(images)),
                         "visible_pct": 100 * acc[name]["visible"] / total, **acc[name]})
    print(f"{len(images)} COCO images with a person; bytes over the first {args.encode} at q {args.quality:g}\n")
    print("| B | policy | person pixels visible without the key | person blocks | file bytes | person-group bytes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['block']} | {r['policy']} | {r['visible_pct']:.2f} % | {r['blocks']} | {r['file_bytes'] or '–'} "
              f"| {r['person_bytes'] or '–'} |")
    if args.out:
        write_json(args.out, {"quality": args.quality, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
