"""The classic codecs the benchmarks compare against, run with Debian's command-line tools.

Settings and quality ladders are those of ``$SSIC_SHARED/anchors/kodak_classic_measured.json``;
``bench/setup.sh`` installs the tools. ``anchors(name)`` reads that folder's stored curves.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from .common import SHARED


@dataclass(frozen=True)
class Classic:
    """A command-line codec: how to encode at setting ``q`` and decode back to an image file."""

    name: str
    ladder: tuple                 # the settings of anchors/kodak_classic_measured.json
    ext: str
    encode: Callable[[object, str, str], list[str]]     # (q, source, compressed) -> argv
    decode: Callable[[str, str], list[str]]             # (compressed, decoded) -> argv
    source_ext: str = "png"       # cjpeg 2.1 reads PPM, not PNG
    decoded_ext: str = "png"
    command: str = ""


CLASSICS = [
    Classic("jpeg", (10, 20, 30, 40, 50, 60, 70, 80, 90, 95), "jpg",
            lambda q, s, o: ["cjpeg", "-quality", str(q), "-optimize", "-outfile", o, s],
            lambda i, o: ["djpeg", "-outfile", o, i], source_ext="ppm", decoded_ext="ppm",
            command="cjpeg -quality q -optimize (libjpeg-turbo default 4:2:0)"),
    Classic("webp", (5, 15, 30, 45, 60, 75, 85, 92, 97), "webp",
            lambda q, s, o: ["cwebp", "-quiet", "-q", str(q), "-m", "6", s, "-o", o],
            lambda i, o: ["dwebp", "-quiet", i, "-o", o], command="cwebp -q q -m 6"),
    Classic("avif", (58, 52, 46, 40, 34, 28, 22, 16, 10), "avif",
            lambda q, s, o: ["avifenc", "-s", "6", "--min", str(q), "--max", str(q), "-y", "444", s, o],
            lambda i, o: ["avifdec", i, o], command="avifenc -s 6 --min q --max q -y 444"),
    Classic("jxl", (6.0, 4.0, 3.0, 2.2, 1.6, 1.2, 0.9, 0.6, 0.4), "jxl",
            lambda q, s, o: ["cjxl", s, o, "-d", str(q), "-e", "7"],
            # Forced sRGB output: for a source PNG with an ICC profile djxl may otherwise write
            # linear light (a cICP chunk Pillow ignores); Kodak's output is byte-identical either way.
            lambda i, o: ["djxl", i, o, "--color_space=RGB_D65_SRG_Rel_SRG"], command="cjxl -d q -e 7"),
    Classic("heic", (10, 20, 30, 40, 50, 60, 70, 80, 90), "heic",
            lambda q, s, o: ["heif-enc", "-q", str(q), "-p", "chroma=444", "-o", o, s],
            lambda i, o: ["heif-convert", i, o], command="heif-enc -q q -p chroma=444 (x265)"),
]
PACKAGES = ["libjpeg-turbo-progs", "webp", "libavif-bin", "libjxl-tools", "libheif-examples"]


def get_classic(name: str) -> Classic:
    return next(c for c in CLASSICS if c.name == name)


def run_timed(argv: list[str]) -> float:
    """Run a tool quietly; seconds of wall time. A failure stops the benchmark with its stderr."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return time.perf_counter() - t0


def tool_versions() -> dict[str, str]:
    """Debian package versions of the tools (dpkg-query), where available."""
    if not shutil.which("dpkg-query"):
        return {}
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *PACKAGES],
                         capture_output=True, text=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def check_tools() -> None:
    missing = [t for c in CLASSICS for t in (c.encode(1, "a", "b")[0], c.decode("a", "b")[0]) if not shutil.which(t)]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)}; run bench/setup.sh (or use --skip-classic)")


def anchors(name: str) -> dict:
    """A stored anchors file of ``$SSIC_SHARED/anchors`` ({} when absent)."""
    path = SHARED / "anchors" / name
    return json.loads(path.read_text()) if path.exists() else {}
