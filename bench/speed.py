"""Speed benchmark: encode, full decode and partial decode of one 768×512 Kodak image.

Prints markdown tables and writes JSON. In-process times are medians of --repeat runs on
--threads torch threads, after one warm-up run (the first call pays one-off kernel set-up).
Whole-process times are medians of --repeat runs of the ``ssic`` command itself (Python start,
imports, weights, the work, the output file): what a shell script calling ``ssic`` once per file
pays. Batch throughput is ``ssic encode`` / ``ssic decode`` of --batch copies of the image with
``-j 1`` and ``-j 2``. Peak memory is the max RSS of a fresh child process doing one encode or
one decode.

    python -m bench.speed --out bench/results/speed.json
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ssic_cli.mask import DEFAULT_BLOCK_SIZE

from .common import KODAK, ROOT, write_json


def _image(path: Path) -> np.ndarray:
    from ssic_cli.imageio import load_image
    return load_image(path).rgb


def roi_mask(width: int, height: int, fraction: float, block: int = DEFAULT_BLOCK_SIZE):
    """background + one compact 'roi' group of about ``fraction`` of the blocks, centred."""
    from ssic_cli.mask import GroupMask, grid_shape
    rows, cols = grid_shape(width, height, block)
    ids = np.zeros((rows, cols), np.uint8)
    want = max(1, round(fraction * rows * cols))
    side_r = max(1, min(rows, round((want * rows / cols) ** 0.5)))
    side_c = max(1, min(cols, -(-want // side_r)))
    r0, c0 = (rows - side_r) // 2, (cols - side_c) // 2
    ids[r0:r0 + side_r, c0:c0 + side_c] = 1
    return GroupMask(block, ids, ["background", "roi"])


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed(fn, repeat: int) -> float:
    fn()                                                     # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def child(mode: str, image: Path, ssb: Path, effort: int = 0) -> None:
    """One encode or decode in a fresh process; prints its peak RSS in MB."""
    from ssic_cli import codec
    from ssic_cli.mask import single_group
    if mode == "encode":
        rgb = _image(image)
        codec.encode(rgb, single_group(rgb.shape[1], rgb.shape[0]), 4.0, effort=effort)
    else:
        codec.decode(ssb.read_bytes())
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _run_ssic(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ssic_cli", *argv], check=True, capture_output=True)
    return time.perf_counter() - t


def whole_process_times(image: Path, ssb: Path, repeat: int) -> list[dict]:
    """Median wall time of the ``ssic`` command (a fresh process each time)."""
    out = ssb.with_suffix(".out")
    cases = [("ssic inspect x.ssb", ["inspect", str(ssb)]),
             ("ssic extract x.ssb -g background -o y.ssb", ["extract", str(ssb), "-g", "background", "-o", str(out) + ".ssb"]),
             ("ssic decode x.ssb -o y.png", ["decode", str(ssb), "-o", str(out) + ".png"]),
             ("ssic encode x.png -o y.ssb --detector none", ["encode", str(image), "-o", str(out) + ".ssb", "--detector", "none"])]
    rows = [{"command": name, "seconds": statistics.median(_run_ssic(argv) for _ in range(repeat))} for name, argv in cases]
    for suffix in (".ssb", ".png"):
        Path(str(out) + suffix).unlink(missing_ok=True)
    return rows


def batch_throughput(image: Path, count: int) -> list[dict]:
    """``ssic encode`` then ``ssic decode`` of ``count`` copies of the image, -j 1 and -j 2."""
    import shutil
    import tempfile
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src, enc, dec = (Path(tmp) / d for d in ("src", "enc", "dec"))
        for d in (src, enc, dec):
            d.mkdir()
        for i in range(count):
            shutil.copy(image, src / f"img{i}{image.suffix}")
        for jobs in (1, 2):
            seconds = _run_ssic(["encode", *map(str, sorted(src.iterdir())), "-d", str(enc), "-j", str(jobs),
                                 "--detector", "none", "--quiet"])
            rows.append({"command": "ssic encode *.png -d out/", "images": count, "jobs": jobs, "seconds": seconds,
                         "images_per_s": count / seconds})
            seconds = _run_ssic(["decode", *map(str, sorted(enc.iterdir())), "-d", str(dec), "-j", str(jobs), "--quiet"])
            rows.append({"command": "ssic decode *.ssb -d out/", "images": count, "jobs": jobs, "seconds": seconds,
                         "images_per_s": count / seconds})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    default_img = KODAK / "kodim23.png"
    ap.add_argument("--image", type=Path, default=default_img if default_img.exists() else ROOT / "examples/kodim23.png")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quality", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=8, help="images in the -j batch runs")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--effort", type=int, choices=range(10), default=4, metavar="0-9",
                    help="also time one encode at this effort level (`ssic encode -e`), 0: skip (default: %(default)s)")
    ap.add_argument("--child", choices=["encode", "decode"])
    ap.add_argument("--ssb", type=Path)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.image, args.ssb, args.effort)
        return 0
    from ssic_cli import codec
    from ssic_cli.mask import single_group
    from ssic_cli.weights import load_weights
    rgb = _image(args.image)
    h, w = rgb.shape[:2]
    gm = single_group(w, h)
    data = codec.encode(rgb, gm, args.quality)
    rows = [{"case": "encode (1 group)", "seconds": timed(lambda: codec.encode(rgb, gm, args.quality), args.repeat)},
            {"case": "decode, full (1 group)", "seconds": timed(lambda: codec.decode(data), args.repeat)}]
    if args.effort:         # long: timed once, after the warm-up of the rows above
        rows.insert(1, {"case": f"encode (1 group), effort {args.effort}",
                        "seconds": _once(lambda: codec.encode(rgb, gm, args.quality, effort=args.effort))})
    for frac in (0.10, 0.25, 0.50):
        roi = roi_mask(w, h, frac)
        area = float((roi.ids == 1).mean())
        multi = codec.encode(rgb, roi, args.quality)
        rows.append({"case": f"decode 'roi' only ({area:.0%} of blocks)", "area": area,
                     "seconds": timed(lambda: codec.decode(multi, ["roi"]), args.repeat)})
        rows.append({"case": f"decode all groups (roi {area:.0%} + background)", "area": 1.0,
                     "seconds": timed(lambda: codec.decode(multi), args.repeat)})
    ssb = Path("/tmp") / f"ssic-speed-{os.getpid()}.ssb"
    ssb.write_bytes(data)
    mem = {}
    for mode, effort in [("encode", 0), ("decode", 0)] + ([("encode", args.effort)] if args.effort else []):
        out = subprocess.run([sys.executable, "-m", "bench.speed", "--child", mode, "--image", str(args.image), "--ssb", str(ssb),
                              "--threads", str(args.threads), "--effort", str(effort)],
                             cwd=ROOT, capture_output=True, text=True, check=True)
        mem[f"{mode}, effort {effort}" if effort else mode] = float(out.stdout.strip().splitlines()[-1])
    process = whole_process_times(args.image, ssb, args.repeat)
    batch = batch_throughput(args.image, args.batch)
    ssb.unlink()
    lm = load_weights()
    result = {"image": args.image.name, "size": [w, h], "quality": args.quality, "threads": args.threads,
              "weights": lm.path.name, "bytes": len(data), "bpp": len(data) * 8 / (w * h),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "rows": rows, "peak_rss_mb": mem, "whole_process": process, "batch": batch}
    print(f"{args.image.name} {w}x{h}, q={args.quality:g}, {args.threads} threads, {lm.path.name}\n")
    print("| case | seconds |\n|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['seconds']:.3f} |")
    for mode, mb in mem.items():
        print(f"| peak RSS, {mode} process | {mb:.0f} MB |")
    print("\n| whole process (`ssic …`) | seconds |\n|---|---|")
    for r in process:
        print(f"| {r['command']} | {r['seconds']:.2f} |")
    print("\n| batch | images | -j | seconds | images/s |\n|---|---|---|---|---|")
    for r in batch:
        print(f"| {r['command']} | {r['images']} | {r['jobs']} | {r['seconds']:.1f} | {r['images_per_s']:.2f} |")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
