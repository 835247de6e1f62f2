"""The integer entropy-parameter path: exact in any summation order, faithful to training,
group-independent, and free of libm on the way from quality to gain."""
from __future__ import annotations

import math

import numpy as np
import torch

from ssic_cli.model import entropy as em
from ssic_cli.model.intnet import ACT_LIMIT, IntLinear, IntMaskedConv3x3, IntMLP, to_fixed
from ssic_cli.model.layers import PAD_KEY


def _layer(cin=300, cout=40, relu=True, seed=0) -> IntLinear:
    torch.manual_seed(seed)
    layer = IntLinear(cin, cout, relu)
    with torch.no_grad():
        layer.weight.normal_(0, 2.0)            # large weights: partial sums far beyond float32's 2^24
        layer.bias.normal_(0, 50.0)
    return layer


def test_exact_layer_is_the_same_in_any_summation_order():
    layer = _layer()
    x = torch.randint(-ACT_LIMIT, ACT_LIMIT + 1, (64, 300)).double()
    ref = layer.exact(x)
    w, b = layer.integer_parameters()
    want = torch.floor((x.long() @ w.long().T + b.long() + 2048).double() / 4096).clamp(0, ACT_LIMIT)
    assert torch.equal(ref, want)                              # float64 GEMM == int64 arithmetic
    for seed in range(3):
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(300))
        permuted = torch.floor((x[:, perm] @ w[:, perm].T + b + 2048) / 4096).clamp(0, ACT_LIMIT)
        assert torch.equal(permuted, ref)
    one_by_one = torch.stack([layer.exact(row[None])[0] for row in x[:8]])   # other GEMM shapes / kernels
    assert torch.equal(one_by_one, ref[:8])


def test_training_forward_computes_what_coding_computes():
    mlp = IntMLP([48, 32, 16, 8])
    x = torch.randint(-300, 300, (200, 48)).float() / 4          # integer-valued fixed point
    with torch.no_grad():
        train = mlp(x)
    exact = mlp.exact(to_fixed(x)) / 256
    assert torch.allclose(train.double(), exact, atol=1.5 / 256)  # float32 vs exact rounding at most
    assert (train.double() == exact).float().mean() > 0.95


def test_masked_conv_ignores_other_groups_exactly():
    torch.manual_seed(1)
    conv = IntMaskedConv3x3(6, 5)
    keys = torch.zeros(1, 8, 10, dtype=torch.long)
    keys[:, :, 5:] = 1
    keys[:, 6:, :3] = PAD_KEY
    x = torch.randint(-2000, 2000, (1, 8, 10, 6)).double()
    other = x.clone()
    other[keys != 0] = torch.randint(-60000, 60000, (int((keys != 0).sum()), 6)).double()
    inside = keys == 0
    assert torch.equal(conv.exact(x, keys)[inside], conv.exact(other, keys)[inside])
    assert not torch.equal(conv.exact(x, keys)[~inside], conv.exact(other, keys)[~inside])
    alone = torch.where(inside.unsqueeze(-1), x, torch.zeros_like(x))     # as a one-group decode sees it
    assert torch.equal(conv.exact(alone, torch.where(inside, 0, PAD_KEY))[inside], conv.exact(x, keys)[inside])


def test_gain_needs_no_libm():
    for x in (-3.7, -0.5, 0.0, 0.3, 1.0, 2.5, 5.9):
        assert math.isclose(em.exact_exp(x), math.exp(x), rel_tol=4e-16)
    anchors = np.linspace(-1.5, 1.8, 8 * 6, dtype=np.float32).reshape(8, 6)
    gains = em.FixedGains(anchors, 3.25)
    lg = anchors[2].astype(np.float64) * 0.75 + anchors[3].astype(np.float64) * 0.25
    assert torch.equal(gains.gain, torch.from_numpy(np.round(np.exp(lg) * 65536).astype(np.int64)))
    assert torch.equal(gains.log_gain, torch.from_numpy(np.round(lg * 256).astype(np.int64)))
    assert torch.equal(em.FixedGains(anchors, 1.0).gain, em.FixedGains(anchors, 0.2).gain)     # clamped


def test_integer_mean_and_scale_index_match_their_float_definitions():
    gains = em.FixedGains(np.zeros((8, 4), np.float32) + np.float32(0.7), 4.0)   # gain e^0.7 ≈ 2.01
    g = math.exp(0.7)
    mu = torch.tensor([[-3000, -17, 0, 2500]])                   # μ in units of 2^-8
    assert torch.equal(em.mean_on_grid(mu, gains), torch.round(mu * g / 256 * 64).long())
    log_sigma = torch.arange(-900, 1500, 7)[:, None].repeat(1, 4)   # ln σ in units of 2^-8
    idx = em.scale_index_fixed(log_sigma, gains)
    scales = torch.exp(log_sigma.double() / 256) * g
    nearest = (scales[..., None].log() - torch.tensor(em.SCALE_TABLE).log()).abs().argmin(-1)
    assert (idx - nearest).abs().max() <= 1 and (idx == nearest).float().mean() > 0.97
    q64 = torch.tensor([[-640, -1, 0, 2000]])
    assert torch.equal(em.unscale_fixed(q64, gains), torch.round(q64 / 64 / (gains.gain / 65536) * 256).long())
