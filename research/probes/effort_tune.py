"""Probe: the step size and temperature schedule of encoder effort, on a few Kodak images.

Each setting ``name:lr,lr_end,tau_start,tau_end,steps`` encodes every image at every quality
with ``ssic_cli.refine``'s constants set to it, and compares the real file against the plain
encoder's: the change of the measured RD cost (λ(q)·255²·MSE + bpp, what refinement
minimises), of the bytes and of the PSNR. One JSON line per setting::

    python -m research.probes.effort_tune --images kodim04,kodim08,kodim20 --qualities 2,6 \\
        base:0.02,0.02,0.5,0.1,16 fast:0.04,0.01,0.5,0.1,16 > runs/tune/a.jsonl

Measured settings: ``research/results/probes/effort_tune.json``.
"""
import argparse
import json

import numpy as np
import torch
from PIL import Image

from bench.common import KODAK
from ssic_cli import codec, refine
from ssic_cli.evaluate import rd_cost
from ssic_cli.mask import single_group


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m research.probes.effort_tune", description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--images", default="kodim04,kodim08,kodim20")
    ap.add_argument("--qualities", default="2,6")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    cases = []
    for name in args.images.split(","):
        img = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
        gm = single_group(img.shape[1], img.shape[0])
        for q in map(float, args.qualities.split(",")):
            cases.append((name, q, img, gm, rd_cost(img, codec.encode(img, gm, q), q)))
    for setting in args.settings:
        label, values = setting.split(":")
        lr, lr_end, t0, t1, steps = (float(v) for v in values.split(","))
        refine.LEARNING_RATE, refine.LEARNING_RATE_END = lr, lr_end
        refine.TAU_START, refine.TAU_END = t0, t1
        rows = []
        for name, q, img, gm, plain in cases:
            got = rd_cost(img, codec.encode(img, gm, q, effort=int(steps)), q)
            rows.append({"image": name, "q": q,
                         "cost_pct": 100 * (got["cost"] / plain["cost"] - 1),
                         "bytes_pct": 100 * (got["bpp"] / plain["bpp"] - 1),
                         "psnr_db": got["psnr"] - plain["psnr"]})
        summary = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in ("cost_pct", "bytes_pct", "psnr_db")}
        print(json.dumps({"setting": label, "values": values, **summary, "rows": rows}), flush=True)


if __name__ == "__main__":
    main()
