"""A file decodes to the same integers on every machine and with every later release: golden
files of every released weights file (the default, shipped in the package, and the retired ones,
taken from the last source tree that held them), committed with the hashes of their decoded
latents, decodes under other CPU kernel sets and thread counts, and honest errors for files of a
retired format version or made with weights this install lacks."""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ssic_cli import codec, container, weights
from ssic_cli.cli import main
from ssic_cli.crypto import key_from_file
from ssic_cli.errors import FormatError, WeightsMissingError
from ssic_cli.model import MODEL_CONFIGS

from .conftest import ROOT, crop, require_crypto, three_groups
from .golden.make_golden import golden_sets, latent_digest
from .kernel_probe import KERNEL_SETS

GOLDEN = ROOT / "tests" / "golden"
SETS = {folder: json.loads((folder / "manifest.json").read_text()) for folder in golden_sets()}
ENTRIES = [(folder, e) for folder, manifest in SETS.items() for e in manifest["files"]]
RELEASED = weights.manifest()["weights"]
RETIRED = sorted(wid for wid, e in RELEASED.items() if e["source"] != "package")
# Retired weights are named by the release source tree that holds them ("ssic vX.Y.Z source tree,
# <path>/<id>.pt"): git tag vX.Y.Z, or the commit v0.5.0 was cut from where the tag is not at hand.
RELEASE_COMMITS = {"v0.5.0": "9c8237b"}


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=120)


def _release_blob(source: str):
    """The bytes of a retired file from git history, or None where git or the release is not at hand."""
    match = re.fullmatch(r"ssic (v[0-9.]+) source tree, (\S+\.pt)", source)
    assert match, f"a retired entry's source should name a release source tree: {source!r}"
    tag, path = match.groups()
    for ref in (tag, RELEASE_COMMITS.get(tag)):
        try:
            if ref and _git("cat-file", "-e", f"{ref}^{{commit}}").returncode == 0:
                blob = _git("show", f"{ref}:{path}")
                assert blob.returncode == 0, f"{path} is not in {ref}: {blob.stderr[-300:]!r}"
                return blob.stdout
        except (OSError, subprocess.SubprocessError):
            return None
    return None


@pytest.fixture(scope="session")
def retired_dir(tmp_path_factory):
    """A weights folder (``<dir>/ssic/weights``, as ``$XDG_DATA_HOME`` reads it) holding the retired
    weights that git history has (a shallow clone has none)."""
    home = tmp_path_factory.mktemp("xdg")
    folder = home / "ssic" / "weights"
    folder.mkdir(parents=True)
    for wid in RETIRED:
        blob = _release_blob(RELEASED[wid]["source"])
        if blob is not None:
            assert hashlib.sha256(blob).hexdigest() == RELEASED[wid]["sha256"], f"{wid}: not the released bytes"
            (folder / f"{wid}.pt").write_bytes(blob)
    return home


def _retired_weights(retired_dir, wid: str):
    path = retired_dir / "ssic" / "weights" / f"{wid}.pt"
    if not path.is_file():
        pytest.skip(f"{wid}.pt needs git and the release named in the manifest ({RELEASED[wid]['source']})")
    return path


@pytest.fixture
def no_user_weights(tmp_path, monkeypatch):
    """This install as a user has it: no $SSIC_WEIGHTS, an empty user weights folder."""
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty-xdg"))
# The float pixel path (g_s) may round a few values differently under other kernels; measured
# largest difference across the kernel sets below: 1 level (see README, "Portability").
PIXEL_BOUND = 2


def _golden(folder, entry):
    keys = [key_from_file(GOLDEN / k) for k in entry["keys"]]
    return (folder / entry["file"]).read_bytes(), keys


@pytest.mark.parametrize("folder, entry", ENTRIES, ids=[f"{f.name}/{e['file']}" for f, e in ENTRIES])
def test_golden_file_decodes_to_its_recorded_latents_and_pixels(folder, entry, retired_dir):
    """Shipped weights are not named: decoding finds the ones the file was made with in the
    package. Retired ones are supplied (``--weights``), as a user with such a file does."""
    if entry["keys"]:
        require_crypto()
    data, keys = _golden(folder, entry)
    chosen = _retired_weights(retired_dir, folder.name) if folder.name in RETIRED else None
    latents = codec.decode_latents(data, keys=keys, weights=chosen)
    assert {name: latent_digest(v) for name, v in latents.items()} == entry["latents"]
    result = codec.decode(data, keys=keys, weights=chosen)
    assert not result.lost and not result.unavailable and not result.scrambled
    ref = np.asarray(Image.open(folder / entry["pixels"])).astype(int)
    got = np.asarray(result.image).astype(int)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= PIXEL_BOUND


def test_every_released_weights_file_has_golden_files_and_a_manifest_entry(loaded):
    """Shipping new weights means a manifest entry and a golden set; retiring weights keeps both
    (the entry says where the file is), so files made with them stay decodable."""
    assert loaded.path.stem == weights.default_weights_id() and loaded.path.parent == weights.PACKAGE_DIR
    assert {f.name for f in SETS} == set(RELEASED), "golden sets and released weights differ: run make_golden.py"
    for folder, manifest in SETS.items():
        assert folder.name == f"{manifest['model_id']}-{manifest['weights_hash'][:8]}"
        assert RELEASED[folder.name]["model"] == manifest["model_id"]
        assert RELEASED[folder.name]["sha256"].startswith(manifest["weights_hash"])


def test_the_package_holds_exactly_the_shipped_weights_byte_for_byte():
    """The wheel carries the default (its bytes are its name); retired weights stay out of it and
    out of the tree, and each manifest entry with a card in weights/ is one the package ships."""
    shipped = {wid for wid, e in RELEASED.items() if e["source"] == "package"}
    assert weights.default_weights_id() in shipped
    assert {p.stem for p in weights.PACKAGE_DIR.glob("*.pt")} == shipped
    for wid in shipped:
        path = weights.PACKAGE_DIR / f"{wid}.pt"
        assert weights.file_hash(path).hex() == RELEASED[wid]["sha256"] and path.stat().st_size == RELEASED[wid]["bytes"]
        assert RELEASED[wid]["card"]["details"] == f"weights/{wid}.md" and (ROOT / "weights" / f"{wid}.md").is_file()
    for wid in RETIRED:
        assert re.fullmatch(rf"ssic v[0-9.]+ source tree, (\S+/)?{wid}\.pt", RELEASED[wid]["source"])
        assert RELEASED[wid]["model"] in MODEL_CONFIGS, f"{wid}: its model config left the code"
    assert {p.stem for p in (ROOT / "weights").glob("*.md")} - {"README"} <= shipped


@pytest.mark.parametrize("wid", RETIRED)
def test_a_file_made_with_retired_weights_names_them_and_where_to_get_them(wid, no_user_weights):
    if weights.find_weights(wid):
        pytest.skip(f"{wid}.pt was dropped into {weights.find_weights(wid).parent}")
    data = (GOLDEN / wid / "multi-q1.ssb").read_bytes()
    with pytest.raises(WeightsMissingError) as err:
        codec.decode(data)
    msg = str(err.value)
    assert "\n" not in msg and wid in msg and RELEASED[wid]["source"] in msg and "--weights" in msg


def test_the_cli_refuses_a_file_of_retired_weights_with_exit_2_and_decodes_it_when_they_are_supplied(
        tmp_path, capsys, monkeypatch, retired_dir, no_user_weights):
    wid = "ssic-tiny2p-307dfd71"                      # another model than the default's: its config stays
    if weights.find_weights(wid):
        pytest.skip(f"{wid}.pt was dropped into {weights.find_weights(wid).parent}")
    src, out = GOLDEN / wid / "multi-q1.ssb", tmp_path / "out.png"
    assert main(["decode", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and wid in err and "--weights" in err and not out.exists()
    supplied = _retired_weights(retired_dir, wid)
    ref = np.asarray(Image.open(GOLDEN / wid / "multi-q1.png")).astype(int)
    assert main(["decode", str(src), "-o", str(out), "--weights", str(supplied)]) == 0
    assert np.abs(np.asarray(Image.open(out)).astype(int) - ref).max() <= PIXEL_BOUND
    out.unlink()
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(supplied))
    assert main(["decode", str(src), "-o", str(out)]) == 0 and out.exists()
    out.unlink()
    monkeypatch.delenv(weights.WEIGHTS_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(retired_dir))          # dropped into the user's weights folder
    assert main(["decode", str(src), "-o", str(out)]) == 0 and out.exists()


@pytest.mark.parametrize("folder", list(SETS), ids=[f.name for f in SETS])
def test_golden_files_cover_several_groups_protection_and_both_ends_of_the_quality_range(folder):
    files = SETS[folder]["files"]
    headers = [container.read_ssb((folder / e["file"]).read_bytes()).header for e in files]
    flags = [g.flags for h in headers for g in h.groups]
    assert any(len(h.groups) >= 4 for h in headers)
    assert any(f & container.FLAG_SEALED for f in flags) and any(f & container.FLAG_SCRAMBLED for f in flags)
    assert {h.quality for h in headers} >= {1.0, 8.0} and any(h.channels == 1 for h in headers)
    assert all(e["bytes"] < 8192 for e in files)


def test_a_file_of_the_retired_version_1_is_refused_naming_both_versions():
    data = bytearray((ENTRIES[0][0] / "multi-q1.ssb").read_bytes())
    struct.pack_into("<H", data, len(container.MAGIC), 1)
    with pytest.raises(FormatError, match=r"version-1 \.ssb file and this ssic reads versions 2 and 3") as err:
        container.read_ssb(bytes(data))
    assert "\n" not in str(err.value)


def _probe(tmp_path, label: str, env: dict, threads: int, files: list[str]) -> dict:
    out = tmp_path / f"{abs(hash(label))}.npz"
    full_env = {**os.environ, **env, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "tests.kernel_probe", str(out), "--threads", str(threads), *files],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{label}: {proc.stderr[-2000:]}"
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.slow
def test_other_kernels_and_thread_counts_decode_identical_latents(tmp_path, kodak, loaded, retired_dir):
    """The arithmetic really changes (torch and oneDNN pick other kernels); the integers do not.
    The retired weights (where git has them) are found in the user's weights folder."""
    img = crop(kodak, 192, 256, 120, 280)
    fresh = tmp_path / "fresh.ssb"
    fresh.write_bytes(codec.encode(img, three_groups(256, 192, block=32), 5.0, weights=loaded))
    refined = tmp_path / "refined.ssb"           # encoder effort changes the symbols, never their decoding
    refined.write_bytes(codec.encode(img, three_groups(256, 192, block=32), 5.0, weights=loaded, effort=2))
    supplied = {p.stem for p in (retired_dir / "ssic" / "weights").glob("*.pt")}
    entries = [(folder, e) for folder, e in ENTRIES if folder.name not in RETIRED or folder.name in supplied]
    files = [str(fresh), str(refined)] + [f"{folder / e['file']}:{GOLDEN / e['keys'][0]}" if e["keys"] else str(folder / e["file"])
                            for folder, e in entries]
    home = {"XDG_DATA_HOME": str(retired_dir)}
    runs = {label: _probe(tmp_path, label, {**env, **home}, threads, files)
            for label, (env, threads) in KERNEL_SETS.items()}
    reference = runs.pop("native, 2 threads")
    assert sum("/latents/" in k for k in reference) >= 6 + sum(len(e["latents"]) for _, e in entries)
    for label, got in runs.items():
        assert got.keys() == reference.keys(), label
        for key, want in reference.items():
            if "/latents/" in key:
                assert np.array_equal(got[key], want), f"{label}: {key} differs"
            else:
                diff = np.abs(got[key].astype(int) - want.astype(int)).max()
                assert diff <= PIXEL_BOUND, f"{label}: {key} differs by {diff}"
