"""Group-independent layers: what a group's features become never depends on another group."""
from __future__ import annotations

import torch

from ssic_cli.model.layers import PAD_KEY, GIConvBlock


def _keys() -> torch.Tensor:
    keys = torch.zeros(2, 12, 16, dtype=torch.long)
    keys[:, :, 8:] = 1
    keys[1, 4:8, :4] = 2
    keys[:, -2:, :] = PAD_KEY
    return keys


def _trained_block(dim: int = 8) -> GIConvBlock:
    block = GIConvBlock(dim)
    torch.manual_seed(0)
    for p in block.parameters():                  # a new block is the identity: give it weights
        torch.nn.init.normal_(p, std=0.3)
    return block


def test_conv_block_ignores_other_groups_exactly():
    block, keys = _trained_block(), _keys()
    x = torch.randn(2, 12, 16, 8)
    other = x.clone()
    other[keys != 0] = torch.randn(int((keys != 0).sum()), 8) * 100
    inside = keys == 0
    assert torch.equal(block(x, keys)[inside], block(other, keys)[inside])
    assert not torch.equal(block(x, keys)[~inside], block(other, keys)[~inside])


def test_conv_block_sees_same_group_neighbours():
    block, keys = _trained_block(), torch.zeros(1, 6, 6, dtype=torch.long)
    x = torch.zeros(1, 6, 6, 8)
    y0 = block(x, keys)
    x[0, 2, 2] = 1.0
    changed = (block(x, keys) != y0).any(-1)[0]
    assert changed[1:4, 1:4].all() and changed.sum() == 9


def test_new_conv_block_is_identity():
    x, keys = torch.randn(2, 12, 16, 8), _keys()
    assert torch.equal(GIConvBlock(8)(x, keys), x)
