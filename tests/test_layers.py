"""Group-independent layers: what a group's features become never depends on another group."""
from __future__ import annotations

import pytest
import torch

from ssic_cli.model.layers import PAD_KEY, GIConvBlock, GroupConv3x3, HaarDown, HaarUp, pixel_unshuffle


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


# ----- dense group-masked 3×3 (the residual-block transforms) ----------------------------------
def _trained_conv(cin: int = 8, cout: int = 6) -> GroupConv3x3:
    torch.manual_seed(1)
    return GroupConv3x3(cin, cout)


def test_group_conv_coding_path_ignores_other_groups_exactly():
    conv, keys = _trained_conv(), _keys()
    x = torch.randn(2, 12, 16, 8)
    other = x.clone()
    other[keys != 0] = torch.randn(int((keys != 0).sum()), 8) * 100
    inside = keys == 0
    with torch.no_grad():
        a, b = conv(x, keys), conv(other, keys)
    assert torch.equal(a[inside], b[inside])
    assert (a[keys == PAD_KEY] == 0).all()


def test_group_conv_training_path_is_the_same_function():
    conv, keys = _trained_conv(), _keys()
    x = torch.randn(2, 12, 16, 8)
    with torch.no_grad():
        exact = conv(x, keys)
    trained = conv(x, keys)                          # grad enabled: the boundary-corrected path
    assert torch.allclose(trained, exact, atol=1e-5)
    trained.sum().backward()
    assert conv.weight.grad is not None


def test_group_conv_of_one_group_is_a_plain_zero_padded_conv():
    conv = _trained_conv()
    x = torch.randn(1, 6, 7, 8)
    keys = torch.zeros(1, 6, 7, dtype=torch.long)
    plain = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), conv.weight, conv.bias, padding=1)
    with torch.no_grad():
        assert torch.allclose(conv(x, keys), plain.permute(0, 2, 3, 1), atol=1e-6)


def test_group_conv_neighbour_in_another_group_counts_as_zero():
    conv = _trained_conv()
    keys = torch.zeros(1, 5, 5, dtype=torch.long)
    keys[0, :, 3:] = 1
    x = torch.randn(1, 5, 5, 8)
    zeroed = x.clone()
    zeroed[0, :, 3:] = 0
    plain = torch.nn.functional.conv2d(zeroed.permute(0, 3, 1, 2), conv.weight, conv.bias, padding=1)
    with torch.no_grad():
        out = conv(x, keys)
    assert torch.allclose(out[0, :, :3], plain.permute(0, 2, 3, 1)[0, :, :3], atol=1e-6)


def test_haar_shortcuts_are_orthonormal_and_transposed():
    x = torch.randn(2, 8, 6, 3)
    down, up = HaarDown(3, 12), HaarUp(12, 3)
    y = down(x)
    assert torch.allclose((y ** 2).sum(), (x ** 2).sum(), rtol=1e-5)       # energy kept
    assert torch.allclose(up(y), x, atol=1e-6)                                # perfect inverse
    assert torch.allclose(y[..., :3], pixel_unshuffle(x).reshape(2, 4, 3, 3, 4).mean(-1) * 2, atol=1e-6)


@pytest.mark.parametrize("cin, cout", [(96, 3), (12, 3), (128, 96), (192, 160), (40, 8), (300, 64)])
def test_haar_up_adds_the_inverse_bands_of_its_matrix(cin, cout):
    """The butterfly (wide outputs) and the small product (narrow ones) both add exactly the
    dense inverse-Haar matrix's product: ±½ on the first min(cin, 4·cout) channels."""
    from ssic_cli.model.layers import _haar_matrix
    up = HaarUp(cin, cout)
    x = torch.randn(2, 3, 5, cin, dtype=torch.float64)
    used = min(cin, 4 * cout)
    bands = x[..., :used] @ _haar_matrix(cout)[:used].double()
    assert torch.equal(up.add_to(torch.zeros_like(bands), x), bands)
    start = torch.randn_like(bands)
    added = up.add_to(start.clone(), x)                                      # in place, into what is there
    assert torch.allclose(added, start + bands, atol=1e-12)


@pytest.mark.parametrize("cin, cout", [(3, 96), (96, 128), (160, 192), (16, 100), (32, 64)])
def test_haar_down_gives_the_bands_of_its_matrix(cin, cout):
    """Whole or from shared patches: the Haar bands, LL first, cut or zero-padded to cout."""
    from ssic_cli.model.layers import _haar_matrix
    x = torch.randn(2, 4, 6, cin, dtype=torch.float64)
    rows = _haar_matrix(cin)[:cout].double()
    want = torch.nn.functional.pad(pixel_unshuffle(x) @ rows.t(), (0, cout - rows.shape[0]))
    assert torch.allclose(HaarDown(cin, cout)(x), want, atol=1e-12)
    assert torch.equal(HaarDown(cin, cout).project(pixel_unshuffle(x)), HaarDown(cin, cout)(x))


def test_upsample_shortcut_is_the_sum_of_both_shuffles():
    """Adding the Haar shortcut before the one shuffle equals shuffling both and adding."""
    from ssic_cli.model.layers import Upsample, pixel_shuffle
    up, haar = Upsample(16, 8), HaarUp(16, 8)
    h, y = torch.randn(1, 4, 6, 16), torch.randn(1, 4, 6, 16)
    with torch.no_grad():
        fused = up(h, (haar, y))
        separate = pixel_shuffle(up.proj(h)) + haar(y)
    assert torch.allclose(fused, separate, atol=1e-6)
