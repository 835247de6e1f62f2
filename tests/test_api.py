"""The public library API (ssic_cli.encode / decode / inspect / extract): inputs it takes,
inputs it refuses with one line, and what a receiver of an extracted file sees."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import ssic_cli
from ssic_cli.errors import SsicError

from .conftest import ROOT, crop, needs_crypto, three_groups


@pytest.fixture(scope="module")
def small(kodak) -> np.ndarray:
    return crop(kodak, 96, 128, 150, 250)


def test_pil_rgb_and_array_give_the_same_file_content(small, one_thread):
    from_array = ssic_cli.decode(ssic_cli.encode(small, quality=3))
    from_pil = ssic_cli.decode(ssic_cli.encode(Image.fromarray(small), quality=3))
    assert from_array.image.mode == "RGB" and from_array.complete
    assert np.array_equal(np.asarray(from_array.image), np.asarray(from_pil.image))


@pytest.mark.parametrize("make", [lambda a: a[..., 1], lambda a: a[..., 1:2], lambda a: Image.fromarray(a[..., 1])])
def test_grey_input_decodes_grey(small, make, one_thread):
    result = ssic_cli.decode(ssic_cli.encode(make(small), quality=3))
    assert result.image.mode == "L" and result.image.size == (128, 96)


@pytest.mark.parametrize("array, words", [
    (np.zeros((8, 8, 3), np.float32), "uint8 values 0..255, got float32 (for floats in [0, 1]"),
    (np.zeros((8, 8, 4), np.uint8), "transparent pixels and ssic codes no alpha channel"),
    (np.zeros((8, 8, 2), np.uint8), "transparent pixels and ssic codes no alpha channel"),
    (np.zeros((8, 8, 3, 1), np.uint8), "got shape (8, 8, 3, 1)"),
    (np.zeros((0, 8, 3), np.uint8), "zero size"),
])
def test_arrays_it_cannot_take_are_refused_in_one_line(array, words):
    with pytest.raises(SsicError, match="^[^\n]*$") as err:
        ssic_cli.encode(array)
    assert words in str(err.value)


@needs_crypto
def test_a_detector_by_name_and_keys_as_bytes_or_passphrase(small, fast_kdf, one_thread):
    data = ssic_cli.encode(small, groups="grid", seal={"tile": b"k" * 32}, scramble={"background": "pass"})
    names = [g["name"] for g in ssic_cli.inspect(data)["groups"]]
    assert any(n.startswith("tile") for n in names)
    locked = ssic_cli.decode(data)
    assert not locked.complete and locked.unavailable
    opened = ssic_cli.decode(data, keys=[b"k" * 32, "pass"])
    assert opened.complete and opened.image.mode == "RGB"


def test_transparent_pixels_are_coded_only_as_alpha_says(small, one_thread):
    rgba = np.dstack([small, np.full(small.shape[:2], 255, np.uint8)])
    rgba[:32, :32] = (255, 0, 0, 0)                             # red, hidden under transparency
    with pytest.raises(SsicError, match="transparent pixels"):
        ssic_cli.encode(rgba)
    flat = np.asarray(ssic_cli.decode(ssic_cli.encode(rgba, alpha="flatten", quality=3)).image).astype(int)
    kept = np.asarray(ssic_cli.decode(ssic_cli.encode(rgba, alpha="ignore", quality=3)).image).astype(int)
    assert (flat[4:28, 4:28] > 200).all()                       # white: the red never shows
    assert (kept[4:28, 4:28, 0] > 200).all() and (kept[4:28, 4:28, 1:] < 60).all()


def test_groups_of_another_kind_are_a_type_error(small):
    with pytest.raises(TypeError):
        ssic_cli.encode(small, groups=3)


def test_an_extracted_file_decodes_complete_unless_an_absent_group_is_named(kodak, one_thread):
    img = crop(kodak, 128, 192)
    data = ssic_cli.encode(img, groups=three_groups(192, 128), quality=3)
    part = ssic_cli.extract(data, ["person"])
    result = ssic_cli.decode(part)
    assert result.complete and result.decoded == ["person"] and result.absent == ["background", "car"]
    assert result.image.mode == "RGBA"                        # the absent groups' pixels are transparent
    named = ssic_cli.decode(part, groups=["person", "car"])
    assert not named.complete and named.unavailable == ["car"]


def test_extract_then_decode_exits_0_from_the_command_line(kodak, tmp_path):
    img = crop(kodak, 128, 192)
    (tmp_path / "a.ssb").write_bytes(ssic_cli.encode(img, groups=three_groups(192, 128), quality=3))
    run = [sys.executable, "-m", "ssic_cli"]
    subprocess.run([*run, "extract", tmp_path / "a.ssb", "-g", "person", "-o", tmp_path / "p.ssb"], check=True)
    done = subprocess.run([*run, "decode", tmp_path / "p.ssb", "-o", tmp_path / "p.png"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    named = subprocess.run([*run, "decode", tmp_path / "p.ssb", "-g", "person,car", "-o", tmp_path / "q.png"],
                           capture_output=True, text=True)
    assert named.returncode == 4 and "car" in named.stderr


def test_importing_the_package_loads_no_torch_and_the_container_no_http():
    code = ("import sys, ssic_cli, ssic_cli.container; "
            "print(sorted(m for m in ('torch', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
