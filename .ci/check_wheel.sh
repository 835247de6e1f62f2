#!/usr/bin/env bash
# The built wheel works on its own: build it from the package sources alone, install it (no deps)
# into a fresh venv outside the checkout, and encode + decode there with the weights it carries.
#
#   .ci/check_wheel.sh            # needs the project venv (make install); VENV=... to use another
#
# The fresh venv borrows the project venv's installed dependencies through a .pth line (which adds
# that site-packages to sys.path without running its .pth files, so the editable install of ssic
# there stays inert): what is tested is the wheel's own ssic_cli, checked by its import path.
# Nothing is downloaded when the project venv has setuptools >= 77 (the build backend pyproject
# asks for); otherwise pip builds in isolation and fetches setuptools from the package index.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "check_wheel: no $PY (run make install)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ssic-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

# 1. Build from a copy of what the wheel is made of: no stale build/ or egg-info of the checkout.
mkdir -p "$WORK/src" "$WORK/dist" "$WORK/run" "$WORK/xdg"
parts=(pyproject.toml README.md ssic_cli)
for f in "$ROOT"/LICENSE*; do [ -e "$f" ] && parts+=("$(basename "$f")"); done
(cd "$ROOT" && tar -cf - --exclude=__pycache__ "${parts[@]}") | tar -C "$WORK/src" -xf -
if "$PY" -c 'import sys, setuptools; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null; then
  ISOLATION=--no-build-isolation
else
  ISOLATION=
fi
"$PY" -m pip wheel -q --no-deps $ISOLATION -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/ssic-*.whl)"
echo "check_wheel: built $(basename "$WHEEL"), $(du -k "$WHEEL" | cut -f1) KiB, in $(( $(date +%s) - start )) s"

# 2. What it carries: the manifest and the default weights (the manifest's hash), no other weights.
"$PY" - "$WHEEL" <<'EOF'
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
manifest = json.loads(z.read("ssic_cli/weights_data/manifest.json"))
shipped = {w for w, e in manifest["weights"].items() if e["source"] == "package"}
packed = {n.rsplit("/", 1)[1][:-3] for n in z.namelist() if n.endswith(".pt")}
assert packed == shipped and manifest["default"] in packed, f"weights in the wheel: {packed}, manifest ships {shipped}"
for w in shipped:
    got = hashlib.sha256(z.read(f"ssic_cli/weights_data/{w}.pt")).hexdigest()
    assert got == manifest["weights"][w]["sha256"], f"{w}.pt in the wheel is not the released file"
print(f"check_wheel: the wheel carries {', '.join(sorted(packed))} (default {manifest['default']}) and the manifest")
EOF

# 3. A fresh venv outside the checkout, the wheel installed without deps or an index.
"$PY" -m venv --without-pip "$WORK/venv"
V="$WORK/venv/bin/python"
"$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"]); print(sysconfig.get_paths()["platlib"])' | sort -u \
  > "$("$V" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/project-deps.pth"
"$PY" -m pip --python "$V" install -q --no-deps --no-index "$WHEEL"

# 4. Use it from elsewhere, offline where this machine can cut the network (unshare), with no
#    weights but the wheel's: no $SSIC_WEIGHTS, an empty user weights folder.
cd "$WORK/run"
OFFLINE=()
if unshare -rn true 2>/dev/null; then OFFLINE=(unshare -rn); fi
run() { env -u SSIC_WEIGHTS -u PYTHONPATH XDG_DATA_HOME="$WORK/xdg" "${OFFLINE[@]}" "$@"; }
run "$V" -c "import ssic_cli, sys; f = ssic_cli.__file__; print('check_wheel: ssic_cli from', f); sys.exit(not f.startswith('$WORK/venv/'))"
run "$WORK/venv/bin/ssic" encode "$ROOT/examples/kodim23.png" -o x.ssb -q 2 --detector grid
run "$WORK/venv/bin/ssic" decode x.ssb -o x.png
run "$V" -c "from PIL import Image; im = Image.open('x.png'); assert im.size == Image.open('$ROOT/examples/kodim23.png').size; print('check_wheel: encode + decode', im.size, '$(du -k x.ssb | cut -f1) KiB .ssb')"
# A file made with retired weights: one line naming them, exit 2.
set +e
run "$WORK/venv/bin/ssic" decode "$ROOT/tests/golden/ssic-tiny2p-307dfd71/multi-q1.ssb" -o old.png 2> err.txt
code=$?
set -e
[ "$code" = 2 ] && [ "$(wc -l < err.txt)" = 1 ] && grep -q "ssic-tiny2p-307dfd71" err.txt && [ ! -e old.png ] \
  || { echo "check_wheel: a file of retired weights gave exit $code:" >&2; cat err.txt >&2; exit 1; }
echo "check_wheel: ok (${OFFLINE[*]:+offline, }$(( $(date +%s) - start )) s)"
