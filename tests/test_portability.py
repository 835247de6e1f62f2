"""A file decodes to the same integers on every machine and with every later release: golden
files of every shipped weights file, committed with the hashes of their decoded latents, decodes
under other CPU kernel sets and thread counts, and honest errors for files of a retired format
version."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ssic_cli import codec, container
from ssic_cli.crypto import key_from_file
from ssic_cli.errors import FormatError

from .conftest import ROOT, crop, three_groups
from .golden.make_golden import golden_sets, latent_digest
from .kernel_probe import KERNEL_SETS

GOLDEN = ROOT / "tests" / "golden"
SETS = {folder: json.loads((folder / "manifest.json").read_text()) for folder in golden_sets()}
ENTRIES = [(folder, e) for folder, manifest in SETS.items() for e in manifest["files"]]
# The float pixel path (g_s) may round a few values differently under other kernels; measured
# largest difference across the kernel sets below: 1 level (see README, "Portability").
PIXEL_BOUND = 2


def _golden(folder, entry):
    keys = [key_from_file(GOLDEN / k) for k in entry["keys"]]
    return (folder / entry["file"]).read_bytes(), keys


@pytest.mark.parametrize("folder, entry", ENTRIES, ids=[f"{f.name}/{e['file']}" for f, e in ENTRIES])
def test_golden_file_decodes_to_its_recorded_latents_and_pixels(folder, entry):
    """No weights are named: decoding finds the ones the file was made with in weights/."""
    data, keys = _golden(folder, entry)
    latents = codec.decode_latents(data, keys=keys)
    assert {name: latent_digest(v) for name, v in latents.items()} == entry["latents"]
    result = codec.decode(data, keys=keys)
    assert not result.lost and not result.unavailable and not result.scrambled
    ref = np.asarray(Image.open(folder / entry["pixels"])).astype(int)
    got = np.asarray(result.image).astype(int)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= PIXEL_BOUND


def test_every_shipped_weights_file_has_golden_files_and_stays_shipped(loaded):
    """Shipping new weights means making their golden set; dropping old weights would strand
    the files made with them."""
    assert loaded.path.stem in {f.name for f in SETS}, "no golden files for the default weights: run make_golden.py"
    for folder, manifest in SETS.items():
        shipped = ROOT / "weights" / f"{folder.name}.pt"
        assert shipped.is_file(), f"{shipped.name} was removed: files made with it no longer decode"
        assert folder.name == f"{manifest['model_id']}-{manifest['weights_hash'][:8]}"


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


def test_other_kernels_and_thread_counts_decode_identical_latents(tmp_path, kodak, loaded):
    """The arithmetic really changes (torch and oneDNN pick other kernels); the integers do not."""
    img = crop(kodak, 192, 256, 120, 280)
    fresh = tmp_path / "fresh.ssb"
    fresh.write_bytes(codec.encode(img, three_groups(256, 192, block=32), 5.0, weights=loaded))
    files = [str(fresh)] + [f"{folder / e['file']}:{GOLDEN / e['keys'][0]}" if e["keys"] else str(folder / e["file"])
                            for folder, e in ENTRIES]
    runs = {label: _probe(tmp_path, label, env, threads, files) for label, (env, threads) in KERNEL_SETS.items()}
    reference = runs.pop("native, 2 threads")
    assert sum("/latents/" in k for k in reference) >= 3 + sum(len(e["latents"]) for _, e in ENTRIES)
    for label, got in runs.items():
        assert got.keys() == reference.keys(), label
        for key, want in reference.items():
            if "/latents/" in key:
                assert np.array_equal(got[key], want), f"{label}: {key} differs"
            else:
                diff = np.abs(got[key].astype(int) - want.astype(int)).max()
                assert diff <= PIXEL_BOUND, f"{label}: {key} differs by {diff}"
