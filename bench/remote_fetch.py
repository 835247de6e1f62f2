"""Selective transmission over HTTP, measured: what a receiver fetches from a real nginx to
decode one group of a remote .ssb, against the size of the file.

Encodes the COCO example photo (examples/coco_000000005001.jpg) with its label map at --quality,
serves it from a throw-away nginx on 127.0.0.1 (Debian's nginx must be installed), and for each
group decodes that group alone from the URL, counting the body bytes received and the requests
made (the client's count; nginx's access log agrees, see tests/test_remote.py). Prints a
markdown table and writes JSON.

    python -m bench.remote_fetch --out bench/results/remote_fetch.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.http_servers import NginxServer     # the throw-away nginx the remote tests use

from .common import ROOT, write_json

EXAMPLE = ROOT / "examples" / "coco_000000005001"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.remote_fetch", description=__doc__.splitlines()[0])
    ap.add_argument("--quality", type=float, default=4.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from ssic_cli import codec, container
    from ssic_cli.detect import build_group_mask
    from ssic_cli.imageio import load_image
    img = load_image(EXAMPLE.with_suffix(".jpg"))
    mask = build_group_mask(img.rgb, mask_path=EXAMPLE.with_name(EXAMPLE.name + "_labels.png"),
                            names_path=EXAMPLE.with_name(EXAMPLE.name + "_names.json"), log=None)
    data = codec.encode(img.rgb, mask, args.quality)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        www, run = Path(tmp) / "www", Path(tmp) / "run"
        www.mkdir()
        run.mkdir()
        (www / "photo.ssb").write_bytes(data)
        with NginxServer(www, run) as server:
            url = f"{server.url}/photo.ssb"
            head = container.read_ssb(url)
            rows.append({"what": "inspect (header + index)", **head.transfer()})
            for i, group in enumerate(head.header.groups):
                ssb = container.read_ssb(url)
                codec.decode(ssb, [group.name])
                rows.append({"what": f"decode --groups {group.name}", "section_bytes": head.index[i][1],
                             **ssb.transfer()})
    result = {"image": EXAMPLE.with_suffix(".jpg").name, "quality": args.quality, "file_bytes": len(data),
              "header_bytes": head.header_size, "rows": rows}
    print(f"{result['image']}, q {args.quality:g}: {len(data)} bytes, header {head.header_size} bytes\n")
    print("| request | section bytes | fetched bytes | share of the file | requests |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['what']}` | {r.get('section_bytes', '–')} | {r['fetched_bytes']} | "
              f"{100 * r['fetched_bytes'] / len(data):.1f} % | {r['requests']} |")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
