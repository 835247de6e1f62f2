"""Encoder effort (latent refinement, ``ssic_cli.refine``): smaller RD cost, same decoder, and
the group-independence invariants kept exactly."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssic_cli import codec, container
from ssic_cli.errors import SsicError
from ssic_cli.evaluate import psnr, rd_cost
from ssic_cli.mask import single_group

from .conftest import block_pixels, crop, three_groups
from .test_cli import run


def cost(img: np.ndarray, data: bytes, quality: float) -> float:
    return rd_cost(img, data, quality)["cost"]


def test_effort_lowers_the_rate_distortion_cost(kodak, one_thread):
    img = crop(kodak, 128, 192, 180, 260)
    gm = single_group(192, 128)
    plain = codec.encode(img, gm, 4.0)
    refined = codec.encode(img, gm, 4.0, effort=24)
    # Measured 2.4 % lower here with ssic-convhaar-c07e997d (header bytes included); effort 12 gave
    # 1.6 % with earlier weights but only 0.4 % with these. The bound leaves room for other CPUs.
    assert cost(img, refined, 4.0) < cost(img, plain, 4.0) * 0.992
    assert abs(psnr(img, np.asarray(codec.decode(refined).image)) -
               psnr(img, np.asarray(codec.decode(plain).image))) < 1.0


def test_effort_keeps_groups_exactly_independent(kodak, one_thread):
    h, w = 128, 192
    img = crop(kodak, h, w, 60, 120)
    gm = three_groups(w, h)
    pix = block_pixels(gm, w, h)
    data = codec.encode(img, gm, 5.0, effort=3)
    full = np.asarray(codec.decode(data).image)
    for g, name in enumerate(gm.names):
        part = np.asarray(codec.decode(data, [name]).image)
        assert np.array_equal(part[..., :3][pix == g], full[pix == g]), name
    # Other groups' pixels never reach a group's section, refined or not.
    other = img.copy()
    other[pix != 1] = 255 - other[pix != 1]
    a, b = container.read_ssb(data), container.read_ssb(codec.encode(other, gm, 5.0, effort=3))
    assert a.section(1) == b.section(1) and a.section(0) != b.section(0)


def test_effort_is_deterministic_and_changes_only_the_symbols(kodak, one_thread):
    img = crop(kodak, 96, 128, 200, 300)
    gm = single_group(128, 96)
    first, again = (container.read_ssb(codec.encode(img, gm, 3.0, effort=8)) for _ in range(2))
    # 8 steps: one scoring round past g_a's own latent (with 2, these weights kept g_a's latent here)
    assert first.section(0) == again.section(0)          # files differ only in their random id
    plain = container.read_ssb(codec.encode(img, gm, 3.0))
    assert plain.section(0) != first.section(0)
    assert (plain.header.width, plain.header.quality) == (first.header.width, first.header.quality)


def test_negative_effort_is_refused(kodak):
    with pytest.raises(SsicError, match="effort"):
        codec.encode(crop(kodak, 64, 64), single_group(64, 64), 4.0, effort=-1)


def test_cli_effort(tmp_path, kodak, capsys, one_thread):
    src = tmp_path / "p.png"
    Image.fromarray(crop(kodak, 96, 128, 200, 300)).save(src)
    out = tmp_path / "p.ssb"
    assert run(capsys, "encode", src, "-o", out, "--detector", "none", "-e", "2")[0] == 0
    assert run(capsys, "decode", out, "-o", tmp_path / "p2.png")[0] == 0
    assert run(capsys, "encode", src, "-o", tmp_path / "q.ssb", "--effort", "-1")[0] == 1
    assert not (tmp_path / "q.ssb").exists()
