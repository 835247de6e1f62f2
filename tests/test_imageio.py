"""Input images (ssic_cli.imageio): ssic's pixel budget decides, not Pillow's bomb limit."""
from __future__ import annotations

import io
import struct
import zlib

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
