"""Encode a collection larger than one machine across a dask.distributed cluster.

Each task runs ssic's library ``encode`` on one image and writes ``<name>.ssb`` into the
output folder, which must be reachable from every worker under the same path (a shared
file system or object-store mount). Dask does the scheduling, retries and the dashboard;
ssic only provides ``encode_file``. Workers need ssic installed (``pip install ssic``) and
should run one compute thread each: parallelism comes from the workers.

    # a real cluster: dask scheduler on one host, `dask worker tcp://host:8786 --nthreads 1` on others
    python examples/cluster_encode.py --scheduler tcp://host:8786 --out /shared/out /shared/photos/*.jpg
    # or a local cluster of 2 worker processes (what tests/test_cluster.py runs)
    python examples/cluster_encode.py --local 2 --out out/ photos/*.jpg

Prints one line per failed image and a summary; exits 2 if any image failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def encode_file(src: str, out_dir: str, quality: float = 4.0, detector: str = "none") -> dict:
    """Encode one image with ssic; runs on a dask worker. Returns what happened, never raises
    for bad input (a batch of thousands must not stop at one unreadable photo)."""
    import torch

    from ssic_cli import codec
    from ssic_cli.detect import build_group_mask
    from ssic_cli.errors import SsicError
    from ssic_cli.imageio import load_image, write_bytes_atomic
    from ssic_cli.mask import single_group

    torch.set_num_threads(1)
    dst = Path(out_dir) / (Path(src).stem + ".ssb")
    try:
        img = load_image(Path(src))
        h, w = img.rgb.shape[:2]
        mask = (single_group(w, h) if detector == "none"
                else build_group_mask(img.rgb, detector=detector, image_name=Path(src).name, log=None))
        data = codec.encode(img.rgb, mask, quality, channels=img.channels)
        write_bytes_atomic(data, dst)
    except SsicError as exc:
        return {"src": src, "error": str(exc)}
    return {"src": src, "dst": str(dst), "bytes": len(data), "groups": mask.names}


def encode_all(client, files: list[str], out_dir: str, quality: float, detector: str) -> list[dict]:
    """Map ``encode_file`` over ``files`` on the cluster behind ``client``; results in input order."""
    futures = client.map(encode_file, files, out_dir=out_dir, quality=quality, detector=detector, pure=False)
    return client.gather(futures)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", required=True, help="output folder, the same path on every worker")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", help="address of a running dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--local", type=int, metavar="N", help="start a LocalCluster of N worker processes")
    ap.add_argument("-q", "--quality", type=float, default=4.0)
    ap.add_argument("--detector", default="none", help="ssic detector name (default: none, one group)")
    args = ap.parse_args(argv)

    from dask.distributed import Client, LocalCluster
    Path(args.out).mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(n_workers=args.local, threads_per_worker=1, processes=True) if args.local else None
    with Client(cluster or args.scheduler) as client:
        results = encode_all(client, [str(Path(f).resolve()) for f in args.files], str(Path(args.out).resolve()),
                             args.quality, args.detector)
    if cluster is not None:
        cluster.close()
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"ssic: error: {r['error']}", file=sys.stderr)
    print(f"{len(results) - len(failed)} of {len(results)} images encoded into {args.out}", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
