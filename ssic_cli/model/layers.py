"""Group-independent building blocks (paper §3.3–3.4).

Every layer here mixes information only between positions of the same group:

* ``Downsample`` / ``Upsample``: pixel-(un)shuffle by 2 + a 1×1 (``nn.Linear``) projection; a
  2×2 patch never straddles two groups because block sizes are multiples of 16.
* ``GISwinBlock``: Swin window attention whose logits get a −∞ bias between tokens of different
  groups, in regular and shifted windows; LayerNorm and MLP act on single tokens.
* ``GIConvBlock``: a depthwise 3×3 convolution run per group, other groups masked to zero.
* ``GroupConv3x3`` / ``GIResBlock``: dense 3×3 convolutions over same-group neighbours (a
  neighbour in another group, or in the canvas padding, counts as zero padding).
* ``HaarDown`` / ``HaarUp``: fixed orthonormal Haar-wavelet shortcuts around a resampling stage
  (block-local like pixel-(un)shuffle, so group-safe).

Tensors are channels-last, ``(N, H, W, C)``; group keys are integer maps ``(N, H, W)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Key of positions outside the image (canvas padding): they form a group of their own.
PAD_KEY = -1
# Number of distinct regions of a shifted-window partition (Swin's 3×3 slices).
_SHIFT_REGIONS = 9


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(N, H, W, ...) -> (N·H/ws·W/ws, ws·ws, ...)."""
    n, h, w = x.shape[:3]
    rest = x.shape[3:]
    x = x.reshape(n, h // ws, ws, w // ws, ws, *rest)
    x = x.transpose(2, 3)                                  # N, h', w', ws, ws, ...
    return x.reshape(n * (h // ws) * (w // ws), ws * ws, *rest)


def window_reverse(windows: torch.Tensor, ws: int, n: int, h: int, w: int) -> torch.Tensor:
    """(N·H/ws·W/ws, ws·ws, C) -> (N, H, W, C)."""
    c = windows.shape[-1]
    x = windows.reshape(n, h // ws, w // ws, ws, ws, c).transpose(2, 3)
    return x.reshape(n, h, w, c)


def shift_region_ids(h: int, w: int, ws: int, shift: int, device=None) -> torch.Tensor:
    """Swin's region labels (H, W) of the rolled frame: wrapped-around pieces get other labels."""
    ids = torch.zeros(h, w, dtype=torch.long, device=device)
    cut = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in cut:
        for wsl in cut:
            ids[hs, wsl] = label
            label += 1
    return ids


def group_attention_mask(keys: torch.Tensor, ws: int, shift: int) -> torch.Tensor:
    """Boolean "may attend" mask (N·nW, T, T) for windows of ``ws`` over group keys (N, H, W).

    With ``shift > 0`` the keys are rolled like the features and combined with Swin's region
    labels (key·9 + region), so wrapped-around tokens never see each other either.
    Every token sees itself, so no row of the mask is empty.
    """
    if shift:
        keys = torch.roll(keys, shifts=(-shift, -shift), dims=(1, 2))
        region = shift_region_ids(keys.shape[1], keys.shape[2], ws, shift, keys.device)
        keys = keys * _SHIFT_REGIONS + region
    kw = window_partition(keys, ws)                         # (N·nW, T)
    return kw[:, :, None] == kw[:, None, :]


def attention_bias(allowed: torch.Tensor) -> torch.Tensor:
    """0 where allowed, −inf elsewhere; shape (N·nW, 1, T, T) to broadcast over heads."""
    bias = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    return bias.masked_fill_(~allowed, float("-inf")).unsqueeze(1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with relative position bias and a group bias."""

    def __init__(self, dim: int, heads: int, ws: int):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rel_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        self.register_buffer("rel_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1], persistent=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x: (N·nW, T, C); bias: (N·nW, 1, T, T) of 0 / −inf."""
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                    # (b, heads, T, hd)
        rel = self.rel_table[self.rel_index.reshape(-1)].reshape(t, t, self.heads).permute(2, 0, 1)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        logits = logits.float() + rel.unsqueeze(0) + bias
        attn = logits.softmax(dim=-1).to(v.dtype)
        out = (attn @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(out)


class GISwinBlock(nn.Module):
    """GI Swin-Block: (shifted) window attention restricted to each group, then a token MLP."""

    def __init__(self, dim: int, heads: int, ws: int = 8, shift: bool = False, mlp_ratio: float = 2.0):
        super().__init__()
        self.ws, self.shift = ws, (ws // 2 if shift else 0)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, ws)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x: (N, H, W, C) with H, W multiples of the window; keys: (N, H, W) group keys."""
        n, h, w, c = x.shape
        bias = attention_bias(group_attention_mask(keys, self.ws, self.shift))
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.ws), bias)
        y = window_reverse(y, self.ws, n, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class TokenMLP(nn.Module):
    """Residual per-token MLP: the cheap stand-in for attention at the finest stage."""

    def __init__(self, dim: int, mlp_ratio: float = 2.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class GIStage(nn.Module):
    """``depth`` GI Swin blocks alternating regular and shifted windows.

    ``depth == 0`` means one token MLP instead: on 2 CPU cores, attention at 1/2 resolution
    costs as much as all other stages together for little gain.
    """

    def __init__(self, dim: int, depth: int, heads: int, ws: int = 8):
        super().__init__()
        if depth == 0:
            self.blocks = nn.ModuleList([TokenMLP(dim)])
        else:
            self.blocks = nn.ModuleList(GISwinBlock(dim, heads, ws, shift=i % 2 == 1) for i in range(depth))

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, keys)
        return x


class GIConvBlock(nn.Module):
    """Residual block around a depthwise 3×3 convolution over same-group neighbours, against
    the seams of pixel-shuffle upsampling.

    Pixel-shuffle upsampling decodes each 2×2 patch from its own token, which leaves seams
    (blocking) at patch edges that window attention only partly hides. The convolution runs once
    per group key on the features masked to that group, so a neighbour of another group — or of
    the canvas padding — enters as zero, exactly like zero padding at the group's border: groups
    stay independent. Depthwise, because a full 3×3 kernel run once per group cost more than the
    rest of a training step. The output projection starts at zero: a new block is the identity,
    so a model trained without these blocks can be grown into one with them.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.spatial = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mix[-1].weight)
        nn.init.zeros_(self.mix[-1].bias)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        xc = x.permute(0, 3, 1, 2)
        spatial = torch.zeros_like(xc)
        for key in torch.unique(keys).tolist():
            inside = (keys == key).unsqueeze(1).to(x.dtype)
            spatial = spatial + self.spatial(xc * inside) * inside
        return x + self.mix(spatial.permute(0, 2, 3, 1))


def pixel_unshuffle(x: torch.Tensor, r: int = 2) -> torch.Tensor:
    """(N, H, W, C) -> (N, H/r, W/r, C·r²), channels-last."""
    return F.pixel_unshuffle(x.permute(0, 3, 1, 2), r).permute(0, 2, 3, 1)


def pixel_shuffle(x: torch.Tensor, r: int = 2) -> torch.Tensor:
    """(N, H, W, C·r²) -> (N, H·r, W·r, C), channels-last."""
    return F.pixel_shuffle(x.permute(0, 3, 1, 2), r).permute(0, 2, 3, 1)


class Downsample(nn.Module):
    """Pixel-unshuffle ×2 + 1×1 projection (group-safe: a 2×2 patch lies in one block)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Linear(4 * cin, cout)

    def forward(self, x):
        return self.project(pixel_unshuffle(x))

    def project(self, patches: torch.Tensor) -> torch.Tensor:
        """From already pixel-unshuffled patches (shared with a ``HaarDown`` beside it)."""
        return self.proj(patches)


class Upsample(nn.Module):
    """1×1 projection + pixel-shuffle ×2; ``shortcut`` (a ``HaarUp`` and its input) is added
    before the shuffle, which is a permutation: one shuffle instead of two."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Linear(cin, 4 * cout)

    def forward(self, x, shortcut: tuple[nn.Module, torch.Tensor] | None = None):
        coeffs = self.proj(x)
        if shortcut is not None:
            haar, y = shortcut
            coeffs = haar.add_to(coeffs, y)
        return pixel_shuffle(coeffs)


def keys_at_scale(block_keys: torch.Tensor, block_size: int, scale: int) -> torch.Tensor:
    """Block-level keys (N, R, C) -> keys at 1/scale resolution (N, R·B/scale, C·B/scale)."""
    rep = block_size // scale
    if rep == 1:
        return block_keys
    return block_keys.repeat_interleave(rep, dim=1).repeat_interleave(rep, dim=2)


class GroupConv3x3(nn.Conv2d):
    """Dense 3×3 convolution that sees only neighbours of the same group (a neighbour in another
    group, or in the canvas padding, counts as zero padding; padding positions output zero).

    A batch whose samples each hold one group runs one plain convolution. Otherwise:

    * coding (no gradient): once per group, on the samples that hold it, everything else masked
      to zero before and after — a group's output comes from a tensor in which nothing of
      another group is left, so it cannot change, not even in the last bit, when another group's
      values do;
    * training: one plain convolution, minus the contributions of other groups' neighbours,
      computed only where groups meet (the same function; its rounding differs, which training
      does not mind).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x: (N, H, W, C) channels-last; keys: (N, H, W) -> (N, H, W, C_out)."""
        first = keys[:, :1, :1]
        if bool(((keys == first).flatten(1).all(1) & (first.flatten() != PAD_KEY)).all()):
            return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if torch.is_grad_enabled():
            return self._boundary_corrected(x, keys)
        return self._per_group(x, keys)

    def _per_group(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Each group on the box its positions span (what lies outside the box would be masked to
        zero anyway, so the box, which depends on the group's own positions only, is exact)."""
        xc = x.permute(0, 3, 1, 2)                      # NCHW view of channels-last memory
        out = xc.new_zeros((xc.shape[0], self.out_channels) + xc.shape[2:])
        for key in torch.unique(keys).tolist():
            if key == PAD_KEY:
                continue                                 # padding is never anyone's neighbour
            inside = keys == key
            holders = inside.flatten(1).any(1).nonzero().squeeze(1)
            rows = inside.any(2).any(0).nonzero().squeeze(1)
            cols = inside.any(1).any(0).nonzero().squeeze(1)
            box = (slice(None), slice(None), slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
            mask = inside[holders].unsqueeze(1).to(xc.dtype)[box]
            part = super().forward(xc[holders][box] * mask) * mask
            window = out[holders]
            window[box] += part.to(out.dtype)
            out[holders] = window
        return out.permute(0, 2, 3, 1)

    def _boundary_corrected(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Training: a plain convolution, minus what other groups' neighbours added to it, computed
        only where groups meet (a small fraction of positions)."""
        n, h, w, c = x.shape
        out = super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        padded_keys = F.pad(keys, (1, 1, 1, 1), value=PAD_KEY)
        inside = F.pad(torch.ones_like(keys, dtype=torch.bool), (1, 1, 1, 1))
        # (N, H, W, 9): the neighbour is in the map (zero padding adds nothing) and in another group
        foreign = torch.stack([(padded_keys[:, dy:dy + h, dx:dx + w] != keys) & inside[:, dy:dy + h, dx:dx + w]
                               for dy, dx in _TAPS], dim=-1)
        valid = keys != PAD_KEY
        pn, py, px = (foreign.any(-1) & valid).nonzero(as_tuple=True)
        if len(pn):
            xp = F.pad(x, (0, 0, 1, 1, 1, 1))
            taps = torch.stack([xp[pn, py + dy, px + dx] for dy, dx in _TAPS], dim=1)     # (P, 9, C)
            taps = taps * foreign[pn, py, px].unsqueeze(-1).to(taps.dtype)
            weight = self.weight.permute(2, 3, 1, 0).reshape(9 * c, self.out_channels)
            # Rows padded to a power of two: a matrix product of a new shape every step would
            # fill oneDNN's primitive cache and fragment the heap (measured: +0.5 GB per 10 steps).
            rows = 1 << (len(pn) - 1).bit_length()
            taps = F.pad(taps.reshape(len(pn), 9 * c), (0, 0, 0, rows - len(pn)))
            leak = (taps @ weight.to(taps.dtype))[:len(pn)]
            out = out.index_put((pn, py, px), out[pn, py, px] - leak.to(out.dtype))
        return out * valid.unsqueeze(-1).to(out.dtype)


# (dy, dx) offsets of a 3×3 kernel in a map padded by one, in the order of the kernel's weights.
_TAPS = tuple((dy, dx) for dy in range(3) for dx in range(3))


class GIResBlock(nn.Module):
    """Residual block of two group-masked dense 3×3 convolutions (as in Cheng et al. 2020):
    on 2 CPU cores a dense 3×3 buys more capacity per second than attention or depthwise."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = GroupConv3x3(dim, dim)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.conv2 = GroupConv3x3(dim, dim)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # In place on the convolutions' fresh outputs: at 1/2 scale every full-size copy is
        # ~10 ms of a 0.6 s decode.
        return self.conv2(self.act(self.conv1(x, keys)), keys).add_(x)


class GIResStage(nn.Module):
    def __init__(self, dim: int, depth: int):
        super().__init__()
        self.blocks = nn.ModuleList(GIResBlock(dim) for _ in range(depth))

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, keys)
        return x


# Haar bands (rows: LL, LH, HL, HH) over the 4 positions of a 2×2 patch (pixel-unshuffle order).
_HAAR_SIGNS = torch.tensor([[1, 1, 1, 1], [1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]], dtype=torch.float32)


# Below this many output channels HaarUp runs as a small matrix product: the butterfly's
# innermost loops would be that short (measured at 3 channels: 13× slower).
_BUTTERFLY_MIN_CHANNELS = 16


def _haar_matrix(channels: int) -> torch.Tensor:
    """(4C, 4C) orthonormal map from pixel-unshuffled 2×2 patches (channel-major: c·4 + position)
    to Haar bands, band-major (LL of every channel first, then LH, HL, HH)."""
    bands = _HAAR_SIGNS / 2
    m = torch.zeros(4 * channels, 4 * channels)
    for c in range(channels):
        for b in range(4):
            m[b * channels + c, c * 4:(c + 1) * 4] = bands[b]
    return m


class HaarDown(nn.Module):
    """Fixed shortcut cin at s -> cout at 2s: the 2×2 Haar bands of every channel, low bands
    first, cut or zero-padded to cout (after AuxT, Li et al., ICLR 2025: a wavelet path beside the
    learned one keeps the transform well conditioned from the first step and speeds up training;
    AuxT also learns an orthogonal projection and per-subband scales, which this fixed one does
    not). A matrix product: a butterfly like ``HaarUp``'s measured no faster here, in coding or
    in training."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        m = _haar_matrix(cin)[:cout]
        self.register_buffer("matrix", F.pad(m, (0, 0, 0, cout - m.shape[0])), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(pixel_unshuffle(x))

    def project(self, patches: torch.Tensor) -> torch.Tensor:
        """From pixel-unshuffled patches (N, H, W, 4·cin), shared with the ``Downsample`` beside it."""
        return F.linear(patches, self.matrix.to(patches.dtype))


class HaarUp(nn.Module):
    """The transpose of ``HaarDown``: cin at 2s -> cout at s (first channels -> inverse Haar).

    ``add_to`` adds the inverse bands into pixel-unshuffled coefficients (an ``Upsample``'s, before
    its shuffle), so a stage shuffles once. Wide outputs use a butterfly: the matrix is ±½ on 4
    entries per output and zero elsewhere, and a dense product over it was a tenth of a decode;
    a narrow one (the 3 colour channels) a small matrix product, where the butterfly's innermost
    loops would be 3 long."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.used = min(cin, 4 * cout)                                   # input channels the bands take
        narrow = cout < _BUTTERFLY_MIN_CHANNELS
        self.register_buffer("signs", _HAAR_SIGNS / 2, persistent=False)
        self.register_buffer("matrix", _haar_matrix(cout)[:self.used].contiguous() if narrow else None,
                             persistent=False)

    def add_to(self, coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """coeffs (N, H, W, 4·cout) += the inverse Haar of x (N, H, W, cin), in place; returns coeffs."""
        if self.matrix is not None:
            return coeffs.add_(x[..., :self.used] @ self.matrix.to(x.dtype))
        per_position = coeffs.unflatten(-1, (self.cout, 4))              # channel-major: c·4 + position
        for band in range(4):
            first = band * self.cout
            n = min(self.cout, self.used - first)                        # band's channels present in x
            if n <= 0:
                break
            per_position[..., :n, :].addcmul_(x[..., first:first + n, None], self.signs[band].to(x.dtype))
        return coeffs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(self.add_to(x.new_zeros(x.shape[:-1] + (4 * self.cout,)), x))
