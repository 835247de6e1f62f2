"""Probe: the person ROI of ``bench.roi`` with another block size, paired with a full run.

Measures only the selective ``ssic`` person points (extract the person group, decode it; bits
and PSNR over the annotated person mask, ``bench.roi.measure_ssic``) at ``BLOCK`` for every person
image of an earlier run's records, and prints the BD-rates against that run's methods on the same
images. A cheap stand-in (~20 min on one core) for ``python -m bench.roi --block-size B`` (41 min on
two), which measures everything::

    python -m research.probes.roi_person_blocks 16 research/results/probes/roi_person_b16.json
"""
import json
import sys
import time
from pathlib import Path

import bench.roi as r

RECORDS = Path("bench/results/roi_coco.records.json")


def measure(block: int, shared: Path = r.SHARED) -> list[dict]:
    r.BLOCK_SIZE = block
    r.init_worker(str(shared), None, 1, block)
    out, t0 = [], time.time()
    for i, (name, rgb, roi) in enumerate(r.person_images(json.loads(RECORDS.read_text()), shared, r._W["coco"])):
        o = {"points": []}
        for q in r.QUALITIES:
            r.measure_ssic(rgb, roi, q, ("ssic",), o)
        out.append({"image": name, "points": [dict(p, method=f"ssic-b{block}") for p in o["points"]
                                              if p["method"] == "ssic"]})
        print(i, name, round(time.time() - t0), flush=True)
    return out


def compare(probe: list[dict], block: int) -> dict:
    """BD-rates of the probe's points against the earlier run's, person ROI, same images."""
    mine = {x["image"]: x["points"] for x in probe}
    merged = [{"points": [p for p in rec["points"] if p["roi"] == "person"] + mine.get(rec["image"], [])}
              for rec in json.loads(RECORDS.read_text()) if "points" in rec]
    c = r.curves(merged)["person"]
    test = f"ssic-b{block}"
    return {"curve": c[test], **{f"{test} vs {ref}": r.bd(c[ref], c[test]) for ref in ("ssic", "avif-crop", "avif")}}


if __name__ == "__main__":
    block, out = int(sys.argv[1]), Path(sys.argv[2])
    probe = measure(block)
    result = {"block_size": block, "records": str(RECORDS), "comparison": compare(probe, block), "points": probe}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["comparison"], indent=1))
