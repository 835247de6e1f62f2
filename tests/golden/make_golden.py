"""Make the golden .ssb files of the shipped weights: one set per weights file that ever shipped,
in ``tests/golden/<weights name>/`` with its manifest. A new set is made when new weights ship;
an existing set is never rewritten (the golden test exists to catch changes that break files
already in users' hands) unless a new format version retires it (``--force``).

    python tests/golden/make_golden.py            # the set of the default weights

Each file is small (a few kB) and covers a different path: several irregular groups at the lowest
quality; sealed and scrambled groups at the highest; a grayscale source at a fractional quality.
The manifest records, per group, the SHA-256 of the decoded integer latents (identical on every
machine) and a reference PNG of the decoded pixels (the float pixel path may differ by a level
or so between CPU kernel sets; the test allows ``PIXEL_BOUND``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KEY_FILE = "golden.key"


def latent_digest(latents: np.ndarray) -> str:
    """SHA-256 of an int64 latent array, shape included."""
    arr = np.ascontiguousarray(latents, "<i8")
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


def _cases():
    from ssic_cli.mask import GroupMask
    rgb = np.asarray(Image.open(ROOT / "examples" / "kodim23.png").convert("RGB"))
    multi = np.zeros((8, 12), np.uint8)               # 128×192 px in 16-px blocks
    multi[2:6, 3:6] = 1
    multi[5, 6] = 1                                   # irregular: one extra block
    multi[6:, :4] = 2
    multi[:3, 8:] = 3
    yield ("multi-q1.ssb", rgb[150:278, 300:492], 3,
           GroupMask(16, multi, ["background", "person", "car", "tree"], ["background", "person", "car", "tree"]),
           1.0, {}, {})
    prot = np.zeros((6, 8), np.uint8)                 # 96×128 px
    prot[1:4, 2:4] = 1
    prot[4:, 5:] = 2
    yield ("protected-q8.ssb", rgb[60:156, 420:548], 3,
           GroupMask(16, prot, ["background", "face", "plate"], ["background", "face", "plate"]),
           8.0, {"face": True}, {"plate": True})
    gray = rgb[300:364, 100:196].mean(axis=2).round().astype(np.uint8)
    yield ("gray-q4.5.ssb", np.repeat(gray[..., None], 3, axis=2), 1,
           GroupMask(16, np.zeros((4, 6), np.uint8), ["background"], ["background"]), 4.5, {}, {})


def golden_sets() -> list[Path]:
    """The folders of golden files, one per shipped weights file."""
    return sorted(p.parent for p in HERE.glob("*/manifest.json"))


def main(argv=None) -> None:
    from ssic_cli import codec
    from ssic_cli.crypto import key_from_file
    from ssic_cli.weights import load_weights
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rewrite an existing set (new format version only)")
    args = parser.parse_args(argv)
    lm = load_weights()
    out = HERE / lm.path.stem
    if (out / "manifest.json").exists() and not args.force:
        sys.exit(f"{out} exists: golden files of shipped weights are not rewritten (--force for a new format version)")
    out.mkdir(exist_ok=True)
    key_path = HERE / KEY_FILE
    if not key_path.exists():
        key_path.write_bytes(bytes(range(32)))
    key = key_from_file(key_path)
    files = []
    for name, rgb, channels, mask, quality, seal, scramble in _cases():
        data = codec.encode(np.ascontiguousarray(rgb), mask, quality, channels=channels, weights=lm,
                            seal={g: key for g in seal}, scramble={g: key for g in scramble})
        (out / name).write_bytes(data)
        keys = [key] if seal or scramble else []
        latents = codec.decode_latents(data, weights=lm, keys=keys)
        image = codec.decode(data, weights=lm, keys=keys).image
        png = name.replace(".ssb", ".png")
        image.save(out / png)
        files.append({"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                      "keys": [KEY_FILE] if keys else [], "pixels": png,
                      "pixels_sha256": hashlib.sha256(np.asarray(image).tobytes()).hexdigest(),
                      "latents": {g: latent_digest(v) for g, v in latents.items()}})
    manifest = {"model_id": lm.model_id, "weights_hash": lm.weights_hash.hex(), "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
