"""Decode .ssb files in this process and save what came out, for tests that decode the same files
under other CPU kernel sets and thread counts (run as a subprocess with a changed environment).

    python -m tests.kernel_probe OUT.npz --threads 1 FILE[:KEYFILE] ...

OUT.npz holds, per file i and group name, ``i/latents/<group>`` (the integer ŷ_s) and
``i/pixels`` (the decoded image).
"""
from __future__ import annotations

import argparse
from pathlib import Path

# Kernel sets a decode must give the same integers under: torch's ATEN_CPU_CAPABILITY and oneDNN's
# ONEDNN_MAX_CPU_ISA pick other vector kernels (a stand-in for a machine without AVX-512), and the
# thread count changes how work is split. label -> (environment, threads).
KERNEL_SETS = {
    "native, 2 threads": ({}, 2),
    "native, 1 thread": ({}, 1),
    "AVX2 kernels": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    "no-vector kernels, SSE4.1 oneDNN": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}, 1),
}


def main(argv=None) -> None:
    import numpy as np
    import torch

    from ssic_cli import codec
    from ssic_cli.crypto import key_from_file

    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    arrays = {}
    for i, spec in enumerate(args.files):
        path, _, key = spec.partition(":")
        data = Path(path).read_bytes()
        keys = [key_from_file(Path(key))] if key else []
        for name, latents in codec.decode_latents(data, keys=keys).items():
            arrays[f"{i}/latents/{name}"] = latents
        arrays[f"{i}/pixels"] = np.asarray(codec.decode(data, keys=keys).image)
    np.savez(args.out, **arrays)


if __name__ == "__main__":
    main()
