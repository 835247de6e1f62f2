"""The model's per-group coding contract (model.group_coder): compress_group / decompress_group."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssic_cli.crypto import KeyedOrder
from ssic_cli.errors import FormatError, UndecodableError

from .conftest import needs_crypto


@pytest.fixture(scope="module")
def group(loaded):
    """A 4×6 crop at 1/16 whose group is irregular (an L shape), with latents from g_a's range."""
    model = loaded.model
    gen = torch.Generator().manual_seed(0)
    in_g = torch.zeros(1, 4, 6, dtype=torch.bool)
    in_g[0, :3, :2] = True
    in_g[0, 2, 2:5] = True
    y = torch.randn(1, 4, 6, model.config.latent, generator=gen) * 3
    z = torch.randn(1, 2, 3, model.config.hyper_latent, generator=gen) * 2
    gains = model.fixed_gains(3.0)
    return model, y * gains.real() * in_g.unsqueeze(-1), model.quantize_hyper(z, in_g), in_g, gains


def test_round_trip_gives_the_coded_latents_only_inside_the_group(group, one_thread):
    model, y_s, z_int, in_g, gains = group
    with torch.inference_mode():
        section = model.compress_group(y_s, z_int, in_g, gains)
        q64 = model.decompress_group(section, in_g, gains)
    assert q64.dtype == torch.int64 and q64.shape == y_s.shape
    assert not q64[~in_g].any()
    # ŷ_s is y_s rounded to the quantisation step, give or take the predicted residual (≤ 1/2 step)
    error = (q64[in_g].double() / 64 - y_s[in_g].double()).abs()
    assert float(error.max()) <= 1.0


@needs_crypto
def test_a_scrambled_group_needs_its_order_to_come_back(group, one_thread):
    model, y_s, z_int, in_g, gains = group
    order = KeyedOrder(bytes(range(32)), b"")
    with torch.inference_mode():
        plain = model.decompress_group(model.compress_group(y_s, z_int, in_g, gains), in_g, gains)
        section = model.compress_group(y_s, z_int, in_g, gains, order)
        keyed = model.decompress_group(section, in_g, gains, scrambled=True, order=order)
        keyless = model.decompress_group(section, in_g, gains, scrambled=True)
    assert torch.equal(keyed, plain)
    assert not torch.equal(keyless, plain)


def test_hyper_tables_clip_to_each_channel_and_zero_outside_the_group(group):
    model, _, z_int, in_g, _ = group
    tables = model.hyper_tables()
    assert model.hyper_tables() is tables                      # built once per model
    huge = model.quantize_hyper(torch.full((1, 2, 3, len(tables.pmfs)), 1e6), in_g)
    top = torch.from_numpy(tables.offsets) + torch.tensor([len(p) - 1 for p in tables.pmfs])
    assert torch.equal(huge[0, 0, 0], top)
    assert not huge[0, 0, 2].any()                              # a 1/32 position the group does not touch


def test_a_section_of_another_group_does_not_decode_silently(group, one_thread):
    model, y_s, z_int, in_g, gains = group
    with torch.inference_mode():
        section = model.compress_group(y_s, z_int, in_g, gains)
        other = in_g.clone()
        other[0, 3, 5] = True                                      # one position more than was coded
        with pytest.raises((UndecodableError, FormatError)):
            model.decompress_group(section, other, gains)
        with pytest.raises(FormatError):
            model.decompress_group(section[:-4] + bytes(4), in_g, gains)
