"""Portability, measured: decode the same files under other CPU kernel sets and thread counts.

Encodes --images Kodak images at qualities 1, 4 and 8 with a 3–5 group irregular mask (here, in
this process), then decodes every file in fresh processes under each kernel set of
``tests/test_portability.py`` (torch's ATEN_CPU_CAPABILITY and oneDNN's ONEDNN_MAX_CPU_ISA change
which vector kernels run; 1 or 2 threads). Reports whether the integer latents are identical to
the native 2-thread decode, and how far the float pixel path strays (largest difference on the
8-bit output, share of differing values). Prints a markdown table and writes JSON.

    python -m bench.portability --out bench/results/portability.json
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.kernel_probe import KERNEL_SETS     # the kernel sets the portability tests use

from .common import KODAK, ROOT, write_json
from .rd import irregular_mask                   # the RD benchmark's seeded masks

QUALITIES = (1.0, 4.0, 8.0)


def _decode_everything(label: str, env: dict, threads: int, files: list[str], out: Path) -> dict:
    full_env = {**os.environ, **env, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "tests.kernel_probe", str(out), "--threads", str(threads), *files],
                   cwd=ROOT, env=full_env, check=True, capture_output=True)
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.portability", description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from ssic_cli import codec
    from ssic_cli.imageio import load_image
    from ssic_cli.weights import load_weights
    lm = load_weights()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, path in enumerate(sorted(args.kodak.glob("kodim*.png"))[: args.images]):
            rgb = load_image(path).rgb
            mask = irregular_mask(rgb, i, 2023)
            for q in QUALITIES:
                name = Path(tmp) / f"{path.stem}-q{q:g}.ssb"
                name.write_bytes(codec.encode(rgb, mask, q, weights=lm))
                files.append(str(name))
        runs = {label: _decode_everything(label, env, threads, files, Path(tmp) / f"{n}.npz")
                for n, (label, (env, threads)) in enumerate(KERNEL_SETS.items())}
    reference = runs["native, 2 threads"]
    for label, got in runs.items():
        latents = [k for k in reference if "/latents/" in k]
        pixels = [k for k in reference if k.endswith("/pixels")]
        same = all(np.array_equal(got[k], reference[k]) for k in latents)
        diffs = [np.abs(got[k].astype(int) - reference[k].astype(int)) for k in pixels]
        rows.append({"kernels": label, "files": len(pixels), "groups": len(latents), "latents_identical": same,
                     "max_pixel_diff": int(max(d.max() for d in diffs)),
                     "differing_values_pct": float(100 * sum((d > 0).sum() for d in diffs) / sum(d.size for d in diffs))})
    result = {"weights": lm.path.name, "cpu": platform.processor() or platform.machine(),
              "qualities": QUALITIES, "images": args.images, "rows": rows}
    print(f"{args.images} Kodak images × q {', '.join(f'{q:g}' for q in QUALITIES)}, 3–5 groups each, "
          f"weights {lm.path.name}; reference: native kernels, 2 threads\n")
    print("| kernels | files | groups | integer latents | largest pixel difference | values that differ |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernels']} | {r['files']} | {r['groups']} | {'identical' if r['latents_identical'] else 'DIFFERENT'} "
              f"| {r['max_pixel_diff']} | {r['differing_values_pct']:.4f} % |")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
