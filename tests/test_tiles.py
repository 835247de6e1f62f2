"""Tiled files: bounded-memory coding of large images, with every guarantee of an untiled file."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from ssic_cli import codec, container, crypto, tiles
from ssic_cli.errors import FormatError, SsicError
from ssic_cli.mask import single_group

from .conftest import block_pixels, crop, needs_crypto, three_groups

# A 384×320 crop coded in 256-pixel tiles: a 3×2 tile grid (canvas 384×384), every group cut by
# at least one tile seam.
W, H, TILE = 320, 384, 256
K1 = crypto.key_from_bytes(b"first key, 32 bytes long........", "k1")


# One torch thread for every test here (see conftest.one_thread); scrypt at its fast setting.
pytestmark = pytest.mark.usefixtures("one_thread", "fast_kdf")


@pytest.fixture(scope="module")
def image(kodak):
    return crop(kodak, H, W, 60, 200)


@pytest.fixture(scope="module")
def groups():
    return three_groups(W, H)


@pytest.fixture(scope="module")
def tiled(image, groups):
    data = codec.encode(image, groups, 4.0, tile_size=TILE)
    return data, np.asarray(codec.decode(data).image)


# ----- geometry -----------------------------------------------------------------------------------
@pytest.mark.parametrize("h, w, t", [(384, 384, 256), (4096, 6016, 1024), (1152, 1920, 1024), (128, 128, 256)])
def test_tile_grid_covers_the_canvas_once_with_small_balanced_tiles(h, w, t):
    grid = tiles.tile_grid(h, w, t)
    cover = np.zeros((h, w), np.int32)
    for y0, x0, y1, x1 in grid:
        assert 0 < y1 - y0 <= t and 0 < x1 - x0 <= t
        assert all(v % 128 == 0 for v in (y0, x0, y1, x1))
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    heights = {y1 - y0 for y0, _, y1, _ in grid}
    assert max(heights) - min(heights) <= 128


def test_default_tiles_only_large_images():
    assert tiles.default_tile_size(512, 768) == 0                  # Kodak: one tile, no seams
    assert tiles.default_tile_size(1152, 1920) == 1024             # 2.2 MP: tiled
    assert tiles.default_tile_size(4096, 6016) == 1024


def test_parts_round_trip_and_refuse_lengths_that_do_not_add_up():
    parts = [b"abcd" * 3, b"", b"xyz0"]
    assert tiles.split_parts(tiles.join_parts(parts), 3) == parts
    with pytest.raises(FormatError, match="do not add up"):
        tiles.split_parts(tiles.join_parts(parts) + b"!", 3)
    with pytest.raises(FormatError, match="too short"):
        tiles.split_parts(b"\0\0", 3)


# ----- coding -------------------------------------------------------------------------------------
def test_tiled_file_records_its_tiles_and_decodes_close_to_untiled(image, groups, tiled):
    data, full = tiled
    ssb = container.read_ssb(data)
    assert ssb.header.tile_size == TILE and container.inspect(data)["tile_size"] == TILE
    untiled = codec.encode(image, groups, 4.0, tile_size=0)
    assert container.read_ssb(untiled).header.tile_size == 0
    ref = np.asarray(codec.decode(untiled).image)
    psnr = lambda a: 10 * np.log10(255 ** 2 / ((a.astype(float) - image) ** 2).mean())  # noqa: E731
    assert abs(psnr(full) - psnr(ref)) < 0.5
    assert 0.9 < len(data) / len(untiled) < 1.25


def test_tiled_groups_stay_exactly_independent(image, groups, tiled):
    data, full = tiled
    pix = block_pixels(groups, W, H)
    for g, name in enumerate(groups.names):
        part = np.asarray(codec.decode(data, [name]).image)
        assert np.array_equal(part[..., :3][pix == g], full[pix == g]), name
        assert (part[..., 3][pix != g] == 0).all()
    other = image.copy()
    other[pix != 1] = 255 - other[pix != 1]
    again = container.read_ssb(codec.encode(other, groups, 4.0, tile_size=TILE))
    assert again.section(1) == container.read_ssb(data).section(1)


def test_extract_keeps_the_tiles(tiled):
    data, full = tiled
    small = container.extract(data, ["person"])
    assert container.read_ssb(small).header.tile_size == TILE
    a = np.asarray(codec.decode(small, ["person"]).image)
    assert np.array_equal(a, np.asarray(codec.decode(data, ["person"]).image))


@needs_crypto
def test_tiled_sealed_and_scrambled_groups(image, groups, tiled):
    _, full = tiled
    pix = block_pixels(groups, W, H)
    data = codec.encode(image, groups, 4.0, tile_size=TILE, seal={"person": K1}, scramble={"car": K1})
    res = codec.decode(data, keys=[K1])
    assert res.decoded == ["background", "person", "car"]
    assert np.array_equal(np.asarray(res.image), full)
    res = codec.decode(data)
    assert res.unavailable == ["person"] and res.scrambled == ["car"]
    img = np.asarray(res.image)
    assert np.array_equal(img[..., :3][pix == 0], full[pix == 0])
    assert not np.array_equal(img[..., :3][pix == 2], full[pix == 2])


def test_a_damaged_tile_part_loses_only_its_group(image, groups, tiled):
    data, _ = tiled
    ssb = container.read_ssb(data)
    section = bytearray(ssb.section(0))
    section[:4] = struct.pack("<I", 7)                   # the first part's length, forged
    forged = container.dump_ssb(ssb.header, [bytes(section), ssb.section(1), ssb.section(2)])
    res = codec.decode(forged, warn=lambda m: None)
    assert res.lost == ["background"] and res.decoded == ["person", "car"]


def test_bad_tile_sizes_are_refused(image, groups):
    with pytest.raises(SsicError, match="tile size must be 0"):
        codec.encode(image, groups, 4.0, tile_size=200)
    gm = single_group(64, 48)
    h = container.header_from_mask(64, 48, 3, gm, "tiny", bytes(16), 4.0, tile_size=256)
    data = bytearray(container.dump_ssb(h, [b"abcd"]))
    at = data.index(h.file_id) + len(h.file_id)          # the u16 tile size follows the file id
    for value, message in ((100, "tile size 100 is invalid"), (0, "tile size of 0")):
        struct.pack_into("<H", data, at, value)
        hs = container.read_ssb(bytes(container.dump_ssb(h, [b"abcd"]))).header_size
        struct.pack_into("<I", data, hs - 4, zlib.crc32(data[:hs - 4]))
        with pytest.raises(FormatError, match=message):
            container.read_ssb(bytes(data))


@needs_crypto
def test_tiled_seal_is_bound_to_the_tile_size(image, groups):
    data = codec.encode(image, groups, 4.0, tile_size=TILE, seal={"person": K1})
    ssb = container.read_ssb(data)
    header = ssb.header
    header.tile_size = 384                               # same sections, another tiling
    with pytest.raises(FormatError, match="fails authentication"):
        crypto.open_section(header, 1, ssb.section(1), crypto.Keyring([K1]))


def test_memory_budget_follows_the_tiles(monkeypatch):
    monkeypatch.delenv("SSIC_MAX_PIXELS", raising=False)
    codec.check_pixel_budget(6000, 5000, None, 1024)                 # 30 MP in tiles: fine
    with pytest.raises(SsicError, match="coded untiled: 30.8 MP at once"):
        codec.check_pixel_budget(6000, 5000, None, 0)                 # untiled it would need ~13 GB
    with pytest.raises(SsicError, match="over the limit of 100 MP"):
        codec.check_pixel_budget(12000, 9000, None, 1024)


def test_an_untiled_header_claiming_a_huge_image_is_refused_before_decoding():
    gm = single_group(6000, 5000, 64)
    h = container.header_from_mask(6000, 5000, 3, gm, "ssic-tiny2p", bytes(16), 4.0)
    with pytest.raises(SsicError, match="untiled"):
        codec.decode(container.dump_ssb(h, [b""]), weights=None)


def test_cli_tile_option(tmp_path, image, capsys):
    from PIL import Image

    from ssic_cli.cli import main
    src, out = tmp_path / "a.png", tmp_path / "a.ssb"
    Image.fromarray(image).save(src)
    assert main(["encode", str(src), "-o", str(out), "--tile", "256", "--detector", "grid", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0 and "tiles of 256" in capsys.readouterr().out
    assert main(["decode", str(out), "-o", str(tmp_path / "a.png.out.png")]) == 0
    assert main(["encode", str(src), "-o", str(tmp_path / "b.ssb"), "--tile", "300"]) == 1
    assert "multiple of 128" in capsys.readouterr().err and not (tmp_path / "b.ssb").exists()
