"""Input images (ssic_cli.imageio): ssic's pixel budget decides, not Pillow's bomb limit."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ssic_cli.errors import SsicError
from ssic_cli.imageio import load_image


def _png_claiming(tmp_path, width: int, height: int):
    """A tiny PNG whose header claims width × height (its pixel data is far too short)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8                                             # signature, IHDR length + type
    struct.pack_into(">II", data, ihdr, width, height)
    struct.pack_into(">I", data, ihdr + 13, zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path = tmp_path / "big.png"
    path.write_bytes(bytes(data))
    return path


def test_a_huge_image_gets_ssics_budget_message_not_pillows(tmp_path, monkeypatch):
    path = _png_claiming(tmp_path, 20000, 20000)
    monkeypatch.delenv("SSIC_MAX_PIXELS", raising=False)
    with pytest.raises(SsicError, match=r"20000×20000, over the limit of 100000000 pixels \(set SSIC_MAX_PIXELS"):
        load_image(path)
    monkeypatch.setenv("SSIC_MAX_PIXELS", str(500_000_000))     # raised: Pillow's own limit must not fire
    with pytest.raises(SsicError) as err:
        load_image(path)
    assert "DecompressionBomb" not in str(err.value) and "cannot read image" in str(err.value)
    assert Image.MAX_IMAGE_PIXELS is not None                    # Pillow's limit is back for others


def _with_hidden_red(mode: str) -> Image.Image:
    """Opaque blue-grey pixels, one of them transparent with red (its grey, in LA) under it."""
    rgba = Image.new("RGBA", (4, 3), (30, 60, 90, 255))
    rgba.putpixel((0, 0), (255, 0, 0, 0))
    return rgba if mode == "RGBA" else rgba.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_are_refused_unless_told_what_to_do(tmp_path, mode):
    path = tmp_path / "t.png"
    _with_hidden_red(mode).save(path)
    with pytest.raises(SsicError, match=r"t.png has transparent pixels .*'flatten'.*'ignore'.*--alpha flatten$"):
        load_image(path)
    flat, kept = load_image(path, alpha="flatten"), load_image(path, alpha="ignore")
    assert flat.rgb[0, 0].tolist() == [255, 255, 255]                  # nothing hidden shows
    assert kept.rgb[0, 0].tolist() != [255, 255, 255] and kept.note == "alpha channel discarded"
    assert flat.rgb[1, 1].tolist() == kept.rgb[1, 1].tolist()          # opaque pixels untouched
    assert flat.channels == kept.channels == (1 if mode == "LA" else 3)


def test_a_palette_transparent_colour_counts_only_where_it_is_used(tmp_path):
    im = Image.new("P", (4, 3), 0)
    im.putpalette([30, 60, 90, 255, 0, 0])
    unused, used = tmp_path / "unused.png", tmp_path / "used.png"
    im.save(unused, transparency=1)                                     # no pixel has index 1
    im.putpixel((0, 0), 1)
    im.save(used, transparency=1)
    assert load_image(unused).rgb[0, 0].tolist() == [30, 60, 90]
    with pytest.raises(SsicError, match="transparent pixels"):
        load_image(used)
    assert load_image(used, alpha="flatten").rgb[0, 0].tolist() == [255, 255, 255]


def test_an_opaque_alpha_channel_is_fine_and_alpha_modes_are_checked(tmp_path):
    from ssic_cli.imageio import from_array, from_pil
    opaque = Image.new("RGBA", (4, 3), (30, 60, 90, 255))
    assert from_pil(opaque).rgb[0, 0].tolist() == [30, 60, 90] and from_pil(opaque).note == ""
    assert from_array(np.asarray(opaque)).rgb.shape == (3, 4, 3)
    with pytest.raises(SsicError, match="transparent pixels"):
        from_array(np.asarray(_with_hidden_red("RGBA")))
    with pytest.raises(SsicError, match="alpha must be one of refuse, flatten, ignore"):
        from_pil(opaque, alpha="drop")


def test_an_animation_codes_its_first_frame_and_says_so(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 3), colour) for colour in ((200, 0, 0), (0, 200, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    img = load_image(path)
    assert img.warning == f"{path}: animated image: only the first frame is coded"
    assert img.rgb[0, 0, 0] > 150 and img.rgb[0, 0, 1] < 50
    still = tmp_path / "still.gif"
    frames[0].save(still)
    assert load_image(still).warning == ""
