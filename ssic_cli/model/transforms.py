"""Analysis / synthesis transforms g_a, g_s and the per-group hyper transforms h_a, h_s.

::

    x (N,H,W,3) ─Down→C0─GI─Down→C1─GI─Down→C2─GI─Down→M─GI─► y (N,H/16,W/16,M)
    ŷ ─GI─Up→C2─GI─Up→C1─GI─Up→C0─GI─Up→3──► x̂

Each GI stage is GI Swin blocks or group-masked dense 3×3 residual blocks (``make_stage``); with
``haar`` a fixed Haar-wavelet path runs beside each Down / Up (x ← stage(Down x) + Haar x).

The hyper analysis runs once per group (everything else masked to zero) so that ẑ_g, coded
in group g's section, is all the decoder needs to rebuild g's entropy parameters; the hyper
synthesis is integer-exact so that it rebuilds them bit for bit on any machine.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .intnet import IntLinear, IntMaskedConv3x3, IntMLP
from .layers import (Downsample, GIConvBlock, GIResStage, GIStage, HaarDown, HaarUp, Upsample,
                     keys_at_scale, pixel_unshuffle)


def make_stage(kind: str, dim: int, depth: int, heads: int, ws: int) -> nn.Module:
    """One stage of a transform: ``"swin"`` (GI Swin blocks; depth 0 = a token MLP) or ``"res"``
    (residual blocks of group-masked dense 3×3 convolutions)."""
    if kind == "swin":
        return GIStage(dim, depth, heads, ws)
    if kind == "res":
        return GIResStage(dim, depth)
    raise ValueError(f"unknown stage kind {kind!r}")


class AnalysisTransform(nn.Module):
    """``haar``: a fixed Haar-wavelet shortcut beside every down-sampling stage (``HaarDown``)."""

    def __init__(self, dims: tuple[int, ...], depths: tuple[int, ...], heads: tuple[int, ...], ws: int,
                 kinds: tuple[str, ...], haar: bool = False):
        super().__init__()
        chans = (3,) + tuple(dims)
        self.downs = nn.ModuleList(Downsample(chans[i], chans[i + 1]) for i in range(len(dims)))
        self.stages = nn.ModuleList(make_stage(*a, ws) for a in zip(kinds, dims, depths, heads))
        self.haar = nn.ModuleList(HaarDown(chans[i], chans[i + 1]) for i in range(len(dims))) if haar else None

    def forward(self, x: torch.Tensor, block_keys: torch.Tensor, block_size: int) -> torch.Tensor:
        for i, (down, stage) in enumerate(zip(self.downs, self.stages)):
            patches = pixel_unshuffle(x)                  # shared by the projection and the Haar shortcut
            y = stage(down.project(patches), keys_at_scale(block_keys, block_size, 2 ** (i + 1)))
            x = y + self.haar[i].project(patches) if self.haar is not None else y
        return x


class SynthesisTransform(nn.Module):
    """``refine_scales``: the scales (e.g. 8, 4, 2 for 1/8, 1/4, 1/2) whose stage is followed by a
    ``GIConvBlock`` against the seams of pixel-shuffle upsampling. ``haar``: a fixed inverse-Haar
    shortcut beside every up-sampling stage (``HaarUp``, the transpose of the analysis one)."""

    def __init__(self, dims: tuple[int, ...], depths: tuple[int, ...], heads: tuple[int, ...], ws: int,
                 kinds: tuple[str, ...], refine_scales: tuple[int, ...] = (), haar: bool = False):
        super().__init__()
        dims, depths, heads, kinds = (tuple(reversed(t)) for t in (dims, depths, heads, kinds))
        chans = tuple(dims) + (3,)
        n = len(dims)
        self.stages = nn.ModuleList(make_stage(*a, ws) for a in zip(kinds, dims, depths, heads))
        self.refine = nn.ModuleDict({str(2 ** (n - i)): GIConvBlock(d) for i, d in enumerate(dims)
                                     if 2 ** (n - i) in refine_scales})
        self.ups = nn.ModuleList(Upsample(chans[i], chans[i + 1]) for i in range(n))
        self.haar = nn.ModuleList(HaarUp(chans[i], chans[i + 1]) for i in range(n)) if haar else None

    def forward(self, y: torch.Tensor, block_keys: torch.Tensor, block_size: int) -> torch.Tensor:
        n = len(self.stages)
        for i, (stage, up) in enumerate(zip(self.stages, self.ups)):
            scale = 2 ** (n - i)
            keys = keys_at_scale(block_keys, block_size, scale)
            h = stage(y, keys)
            if str(scale) in self.refine:
                h = self.refine[str(scale)](h, keys)
            y = up(h, (self.haar[i], y) if self.haar is not None else None)
        return y


class HyperAnalysis(nn.Module):
    """y (1/16) -> z_g (1/32) for one group at a time."""

    def __init__(self, m: int, ch: int, z: int, heads: int, ws: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(m, ch), nn.GELU())
        self.mix = GIStage(ch, 2, heads, ws)
        self.out = nn.Sequential(nn.Linear(4 * ch, ch), nn.GELU(), nn.Linear(ch, z))

    def features(self, y: torch.Tensor, keys16: torch.Tensor) -> torch.Tensor:
        """Group-independent features at 1/16, shared by all groups' z."""
        return self.mix(self.inp(y), keys16)

    def group_latent(self, feats: torch.Tensor, in_group: torch.Tensor) -> torch.Tensor:
        """z for the group whose 1/16 positions are ``in_group`` (N, H, W) bool."""
        return self.out(pixel_unshuffle(feats * in_group.unsqueeze(-1).to(feats.dtype)))


class HyperSynthesis(nn.Module):
    """ẑ (1/32) -> hyper features at 1/16, integer-exact (see ``intnet``): the entropy
    parameters depend on it, so every decoder must get the same bits.

    ::

        ẑ−median at each 1/16 position's 1/32 parent ─1×1─ReLU─1×1(4·ch)─ReLU─► pick its 2×2 sub-position
        ─► masked 3×3 (same group only) ─ReLU─ 1×1 ─► features (ch)

    The input is given at 1/16 already (``upsample_parent``), each position holding its own
    group's ẑ, so one call serves any number of groups in training and one group in coding.
    """

    def __init__(self, z: int, ch: int, out: int):
        super().__init__()
        self.ch = ch
        self.inp = IntMLP([z, ch, 4 * ch], last_relu=True)
        self.mix = IntMaskedConv3x3(ch, ch)
        self.out = IntLinear(ch, out, relu=False)

    def forward(self, z_up: torch.Tensor, keys16: torch.Tensor) -> torch.Tensor:
        """Training: z_up (N, H16, W16, Z) integer-valued (ẑ − median); real-valued output."""
        a = _sub_position(self.inp(z_up), self.ch)
        return self.out(self.mix(a, keys16))

    def exact(self, z_up: torch.Tensor, keys16: torch.Tensor) -> torch.Tensor:
        """Coding: the same in integers (float64, units of 2^-8 in and out)."""
        a = _sub_position(self.inp.exact(z_up), self.ch)
        return self.out.exact(self.mix.exact(a, keys16))


def upsample_parent(z: torch.Tensor) -> torch.Tensor:
    """(N, h, w, Z) at 1/32 -> (N, 2h, 2w, Z): each 1/16 position gets its parent's value."""
    return z.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


def _sub_position(a: torch.Tensor, ch: int) -> torch.Tensor:
    """(N, H, W, 4·ch) -> (N, H, W, ch): the ch channels of each position's place (row parity,
    column parity) in its 2×2 patch (a pixel shuffle done at the fine resolution)."""
    n, h, w, _ = a.shape
    parity = (torch.arange(h)[:, None] % 2) * 2 + torch.arange(w)[None, :] % 2          # (H, W)
    index = parity.view(1, h, w, 1, 1).expand(n, h, w, ch, 1).to(a.device)
    return a.reshape(n, h, w, ch, 4).gather(-1, index).squeeze(-1)


def touched(in_group: torch.Tensor) -> torch.Tensor:
    """1/32 positions whose 2×2 footprint at 1/16 meets the group: (N, H/2, W/2) bool."""
    n, h, w = in_group.shape
    return in_group.reshape(n, h // 2, 2, w // 2, 2).any(dim=4).any(dim=2)


__all__ = ["AnalysisTransform", "SynthesisTransform", "HyperAnalysis", "HyperSynthesis", "touched",
           "keys_at_scale", "upsample_parent"]
