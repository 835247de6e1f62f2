#!/bin/sh
# Install the classic encoders/decoders bench.rd and bench.roi run (bench/classic.py; Debian/Ubuntu packages).
# Idempotent: does nothing when every tool is already on PATH.
#   cjpeg/djpeg (libjpeg-turbo-progs)  cwebp/dwebp (webp)  avifenc/avifdec (libavif-bin)
#   cjxl/djxl (libjxl-tools)           heif-enc/heif-convert (libheif-examples)
set -eu

TOOLS="cjpeg djpeg cwebp dwebp avifenc avifdec cjxl djxl heif-enc heif-convert"
PACKAGES="libjpeg-turbo-progs webp libavif-bin libjxl-tools libheif-examples"

missing=""
for tool in $TOOLS; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] && exit 0

echo "bench/setup.sh: missing$missing; installing $PACKAGES" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench/setup.sh: no apt-get here; install$missing yourself (or run python -m bench.rd --skip-classic)" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get install -y --no-install-recommends $PACKAGES ||
    { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends $PACKAGES; }
