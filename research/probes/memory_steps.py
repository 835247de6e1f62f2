"""Probe: where a process's memory goes — resident set after each step of one encode + decode.

Prints the torch build, then RSS now and peak RSS (MiB) after ``import torch``, importing the
codec, loading the default weights, encoding kodim23 (768×512, one group, q 4) and decoding it,
1 torch thread. Run it with two interpreters to compare torch builds (CUDA vs CPU wheel)::

    python -m research.probes.memory_steps [--out research/results/probes/memory_steps-<build>.json]
"""
import argparse
import json
import resource
from pathlib import Path

from bench.common import ROOT


def _mib_now() -> float:
    """Resident pages of this process now (``/proc/self/statm``), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _mib_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.probes.memory_steps", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the steps as JSON")
    args = parser.parse_args()

    steps = []

    def record(step: str) -> None:
        steps.append({"step": step, "rss_mib": round(_mib_now()), "peak_mib": round(_mib_peak())})
        print(f"{step:14s} now {steps[-1]['rss_mib']:5d} MiB   peak {steps[-1]['peak_mib']:5d} MiB")

    import torch
    torch.set_num_threads(1)
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda is not None})")
    record("import torch")

    import numpy as np
    from PIL import Image

    from ssic_cli import codec
    from ssic_cli.mask import single_group
    from ssic_cli.weights import load_weights
    record("import codec")
    load_weights()
    record("load weights")
    rgb = np.asarray(Image.open(ROOT / "examples/kodim23.png").convert("RGB"))
    data = codec.encode(rgb, single_group(rgb.shape[1], rgb.shape[0]), 4.0)
    record("encode")
    codec.decode(data)
    record("decode")

    if args.out:
        meta = {"torch": torch.__version__, "cuda_build": torch.version.cuda is not None, "threads": 1,
                "image": "examples/kodim23.png, one group, q 4"}
        args.out.write_text(json.dumps({"meta": meta, "steps": steps}, indent=1) + "\n")


if __name__ == "__main__":
    main()
