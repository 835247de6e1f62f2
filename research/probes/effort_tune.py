"""Probe: the step size, temperature schedule and variables (y, or y and z) of encoder effort.

Each setting ``name:lr,lr_end,tau_start,tau_end,steps,hyper[,hyper_lr]`` (hyper 1: refine z
too, its step ``hyper_lr`` times y's) encodes
every image crop at every quality with that schedule, and compares the real file against the
plain encoder's: the change of the measured RD cost (λ(q)·255²·MSE + bpp, what refinement
minimises), of the bytes, of the PSNR, and the seconds per megapixel. One JSON line per setting::

    python -m research.probes.effort_tune --images kodim04,kodim08,kodim20 --qualities 2,6 \\
        yz:0.02,0.02,0.5,0.1,32,1 y:0.02,0.02,0.5,0.1,32,0 > runs/tune/a.jsonl

``--crop HxW`` codes the centre crop of that size (cheaper; the ranking of settings is what
matters here, the full-image table is ``bench.effort``'s). Measured settings:
``research/results/probes/effort_tune*.jsonl``.
"""
import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

from bench.common import KODAK
from ssic_cli import codec, refine
from ssic_cli.evaluate import rd_cost
from ssic_cli.mask import single_group


def centre_crop(img: np.ndarray, size: str | None) -> np.ndarray:
    if not size:
        return img
    h, w = (int(v) for v in size.split("x"))
    y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m research.probes.effort_tune", description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--images", default="kodim04,kodim08,kodim20")
    ap.add_argument("--qualities", default="2,6")
    ap.add_argument("--crop", metavar="HxW", help="code the centre crop of this size")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    cases = []
    for name in args.images.split(","):
        img = centre_crop(np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB")), args.crop)
        gm = single_group(img.shape[1], img.shape[0])
        for q in map(float, args.qualities.split(",")):
            cases.append((name, q, img, gm, rd_cost(img, codec.encode(img, gm, q), q)))
    for setting in args.settings:
        label, values = setting.split(":")
        lr, lr_end, t0, t1, steps, hyper, *hyper_lr = (float(v) for v in values.split(","))
        refine.SCHEDULE = refine.Schedule(lr, lr_end, t0, t1, *hyper_lr)
        refine.EFFORT_LEVELS = (refine.Effort(0, 0), refine.Effort(1, int(steps), bool(hyper)))
        rows = []
        for name, q, img, gm, plain in cases:
            t = time.perf_counter()
            data = codec.encode(img, gm, q, effort=1)
            seconds = time.perf_counter() - t
            got = rd_cost(img, data, q)
            rows.append({"image": name, "q": q,
                         "cost_pct": 100 * (got["cost"] / plain["cost"] - 1),
                         "bytes_pct": 100 * (got["bpp"] / plain["bpp"] - 1),
                         "psnr_db": got["psnr"] - plain["psnr"],
                         "s_per_mp": seconds / (img.shape[0] * img.shape[1] / 1e6)})
        summary = {k: round(float(np.mean([r[k] for r in rows])), 3)
                   for k in ("cost_pct", "bytes_pct", "psnr_db", "s_per_mp")}
        print(json.dumps({"setting": label, "values": values, **summary, "rows": rows}), flush=True)


if __name__ == "__main__":
    main()
