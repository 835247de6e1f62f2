"""Probe: what encoder effort (``ssic encode -e N``) buys on Kodak, against the plain encoder.

Pairs a ``python -m bench.rd --effort N`` run (same images, same weights) with the plain run in
``bench/results/rd_kodak.json``: BD-rate of effort N against effort 0, the per-quality change of
rate and PSNR (and per image: how many files got smaller), and the effort curve against the
classic codecs that run measured. Writes JSON and prints it::

    python -m bench.rd --skip-classic --single-only --effort 16 --qualities 1,3,5,7 \\
        --threads 1 --published "" --out runs/e16a.json      # and 2,4,6,8 in a second process
    python -m bench.rd --merge runs/e16a.json runs/e16b.json --skip-classic \\
        --out research/results/effort/rd_kodak_effort16.json
    python -m research.probes.effort_kodak research/results/effort/rd_kodak_effort16.json \\
        research/results/probes/effort_kodak16.json
    python -m research.probes.effort_kodak research/results/effort/rd_holdout_effort16.json \\
        research/results/probes/effort_holdout16.json bench/results/rd_holdout.json   # another plain run

A run on the first N images (``--images N``) is paired with the plain run's points on the same
images; its comparison with the classic codecs is then left out (their curves average all 24).
"""
import json
import sys
from pathlib import Path

import numpy as np

from bench.bdrate import bd_rate_curves
from bench.rd import mean_point

PLAIN = Path("bench/results/rd_kodak.json")


def compare(effort_run: dict, plain_run: dict) -> dict:
    effort, plain = effort_run["curves"]["ssic"], plain_run["curves"]["ssic"]
    qs = [p["q"] for p in effort]
    images = {r["image"] for r in effort_run["per_image"]["ssic"]}
    whole_set = images == {r["image"] for r in plain_run["per_image"]["ssic"]}
    # The plain points over the effort run's own images (all of them, or the first N of --images N).
    plain_at = [mean_point(q, [r for r in plain_run["per_image"]["ssic"] if r["q"] == q and r["image"] in images])
                for q in qs]
    rows = {(r["q"], r["image"]): r for r in plain_run["per_image"]["ssic"]}
    per_q = []
    for p, e in zip(plain_at, effort):
        pairs = [(rows[(r["q"], r["image"])], r) for r in effort_run["per_image"]["ssic"] if r["q"] == e["q"]]
        per_q.append({"q": e["q"], "bpp": [round(p["bpp"], 4), round(e["bpp"], 4)],
                      "psnr": [round(p["psnr"], 3), round(e["psnr"], 3)],
                      "rate_change_pct": round(100 * (e["bpp"] / p["bpp"] - 1), 2),
                      "psnr_change_db": round(e["psnr"] - p["psnr"], 3),
                      "images_smaller": sum(b["bytes"] < a["bytes"] for a, b in pairs), "images": len(pairs),
                      "encode_s_median": [round(p["enc_s"], 2), round(e["enc_s"], 2)]})
    result = {"effort": effort_run["meta"].get("effort"), "images": effort_run["meta"]["images"],
              "bd_rate_vs_effort0": round(bd_rate_curves(plain_at, effort), 2), "per_quality": per_q,
              "mean_rate_change_pct": round(float(np.mean([r["rate_change_pct"] for r in per_q])), 2)}
    if not whole_set:     # the classic curves average other images: no fair comparison with them
        return {**result, "vs_jpeg": None, "effort_vs": None}
    jpeg = plain_run["curves"]["jpeg"]
    classic = {name: round(bd_rate_curves(pts, effort), 2) for name, pts in plain_run["curves"].items()
               if not name.startswith(("ssic", "published"))}
    return {**result, "effort_vs": classic,
            "vs_jpeg": {"effort": round(bd_rate_curves(jpeg, effort), 2),
                        "effort 0": round(bd_rate_curves(jpeg, plain), 2),
                        **{n: round(bd_rate_curves(jpeg, pts), 2) for n, pts in plain_run["curves"].items()
                           if n in ("webp", "jxl", "avif")}}}


if __name__ == "__main__":
    effort_path, out = Path(sys.argv[1]), Path(sys.argv[2])
    plain_path = Path(sys.argv[3]) if len(sys.argv) > 3 else PLAIN
    result = compare(json.loads(effort_path.read_text()), json.loads(plain_path.read_text()))
    result["sources"] = [str(effort_path), str(plain_path)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
