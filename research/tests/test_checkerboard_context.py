"""research.probes.checkerboard_context: the masked convolution reads only anchors of the centre's
group, and the zero-initialised context net is the baseline exactly."""
from __future__ import annotations

import torch

from research.probes.checkerboard_context import CheckerboardContext, anchor_mask, anchor_taps


def _two_groups(h: int = 6, w: int = 7) -> torch.Tensor:
    keys = torch.zeros(1, h, w, dtype=torch.long)
    keys[:, :, 4:] = 1
    keys[:, 4:, :2] = 1
    return keys


def test_masked_conv_reads_only_anchors_of_the_same_group():
    torch.manual_seed(0)
    keys = _two_groups()
    anchors = anchor_mask(6, 7)[None, :, :, None]
    for kernel in (3, 5):
        x = torch.randn(1, 6, 7, 4)
        base = anchor_taps(x, keys, kernel)
        # non-anchor inputs changed: nothing changes anywhere
        changed = torch.where(anchors, x, torch.randn_like(x))
        assert torch.equal(anchor_taps(changed, keys, kernel), base)
        # group 1's inputs changed: group 0's outputs do not change (and vice versa)
        for g in (0, 1):
            other = (keys != g).unsqueeze(-1)
            changed = torch.where(other, torch.randn_like(x), x)
            same = (keys == g)
            assert torch.equal(anchor_taps(changed, keys, kernel)[same], base[same])
        # and it does read the anchors of its own group
        assert torch.count_nonzero(base[~anchors.squeeze(-1) & (keys == 0)]) > 0


def test_context_net_sees_no_other_group_and_no_non_anchor():
    torch.manual_seed(1)
    keys, ms = _two_groups(), 4
    ctx = CheckerboardContext(slices=2, ms=ms, kernel=5, hidden=8)
    for net in ctx.nets:                       # a trained net: every layer non-zero
        torch.nn.init.normal_(net.layers[-1].weight, std=0.1)
    mu, y_hat = torch.randn(1, 6, 7, ms), torch.randn(1, 6, 7, ms) * 3
    sigma, gain = torch.rand(1, 6, 7, ms) + 0.2, torch.rand(1, 1, 1, ms) + 0.5
    with torch.no_grad():
        out = ctx(1, mu, sigma, gain, y_hat, keys)
        anchors = anchor_mask(6, 7)[None, :, :, None]
        changed = ctx(1, mu, sigma, gain, torch.where(anchors, y_hat, y_hat + 5), keys)
        group0 = (keys == 0)
        other = ctx(1, torch.where(group0.unsqueeze(-1), mu, mu + 1), sigma, gain,
                    torch.where(group0.unsqueeze(-1), y_hat, -y_hat), keys)
    for a, b in zip(out, changed):
        assert torch.equal(a, b)
    for a, b in zip(out, other):
        assert torch.equal(a[group0], b[group0])
    # anchors keep the baseline; some non-anchor moved
    assert torch.equal(out[0][anchors.expand_as(mu)], mu[anchors.expand_as(mu)])
    assert not torch.equal(out[0], mu)


def test_zero_initialised_net_is_the_baseline_exactly():
    torch.manual_seed(2)
    ctx = CheckerboardContext(slices=3, ms=5, kernel=5, hidden=16)
    mu, sigma = torch.randn(2, 4, 6, 5) * 4, torch.rand(2, 4, 6, 5) * 3 + 0.05
    gain, y_hat = torch.rand(2, 1, 1, 5) + 0.3, torch.randn(2, 4, 6, 5) * 4
    for i in range(3):
        mu2, sigma2 = ctx(i, mu, sigma, gain, y_hat, torch.zeros(2, 4, 6, dtype=torch.long))
        assert torch.equal(mu2, mu) and torch.equal(sigma2, sigma)
