"""Probe: what 16- instead of 32-px blocks cost the whole file (person + background groups).

For every person image of the ROI run's records: the two-group file of ``roi_coco`` at block
sizes 16 and 32, q 1 / 4 / 8, decoded whole; file bytes and RGB PSNR of the whole image. Prints
the BD-rate of 16 against 32 (the price a receiver of the whole file pays for tighter groups)::

    python -m research.probes.full_file_blocks research/results/probes/full_file_blocks.json
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

import bench.roi as r
from bench.bdrate import bd_rate_curves

RECORDS = Path("bench/results/roi_coco.records.json")
BLOCKS, QUALITIES = (16, 32), (1.0, 4.0, 8.0)


def measure(shared: Path = r.SHARED) -> list[dict]:
    import torch

    from ssic_cli import codec
    from ssic_cli.evaluate import psnr
    torch.set_num_threads(1)
    coco = json.loads((Path(shared) / "data/coco/instances.json").read_text())
    rows, t0 = [], time.time()
    for i, (name, rgb, roi) in enumerate(r.person_images(json.loads(RECORDS.read_text()), shared, coco)):
        h, w = rgb.shape[:2]
        for b in BLOCKS:
            r.BLOCK_SIZE = b
            gm = r.group_mask_for("person", roi.regions, w, h, boxes_only=False)
            for q in QUALITIES:
                data = codec.encode(rgb, gm, q)
                out = np.asarray(codec.decode(data).image.convert("RGB"))
                rows.append({"image": name, "block": b, "q": q, "bytes": len(data), "pixels": w * h,
                             "psnr": psnr(rgb, out),
                             "area": float(np.mean(gm.pixel_ids(w, h) == gm.index_of("person")))})
        print(i, name, round(time.time() - t0), flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Per block size: pooled bpp and mean PSNR at each q, the person group's mean area; BD 16 vs 32."""
    curves = {}
    for b in BLOCKS:
        mine = [x for x in rows if x["block"] == b]
        curves[b] = [{"q": q, "bpp": sum(x["bytes"] * 8 for x in at) / sum(x["pixels"] for x in at),
                      "psnr": float(np.mean([x["psnr"] for x in at]))}
                     for q in QUALITIES for at in [[x for x in mine if x["q"] == q]]]
    area = {b: float(np.mean([x["area"] for x in rows if x["block"] == b and x["q"] == QUALITIES[0]])) for b in BLOCKS}
    per_q = [{"q": a["q"], "bytes_16_over_32": round(a["bpp"] / b["bpp"], 4), "dpsnr_16_minus_32": round(a["psnr"] - b["psnr"], 3)}
             for a, b in zip(curves[16], curves[32])]
    return {"curves": curves, "person_area": area, "per_q": per_q,
            "bd_rate_16_vs_32": round(float(bd_rate_curves(curves[32], curves[16])), 2)}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    rows = measure()
    result = {"records": str(RECORDS), "summary": summary(rows), "rows": rows}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
