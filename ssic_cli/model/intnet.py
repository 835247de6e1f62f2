"""Integer-exact layers for the entropy-parameter path (Ballé, Johnston & Minnen, "Integer
networks for data compression", ICLR 2019).

The decoder must rebuild every entropy parameter (μ̂ on its grid, the scale-table index) bit for
bit, on any CPU, with any kernel set, thread count or BLAS. Float networks cannot promise that:
summation order and vector width change the last bits, and one flipped scale index derails the
rANS stream. So every layer here is fixed-point:

* activations are integers in units of ``2^-ACT_FRAC``, clamped to ``±ACT_LIMIT``;
* weights are integers in units of ``2^-W_FRAC`` (``|w| ≤ W_LIMIT``), biases in units of
  ``2^-(ACT_FRAC + W_FRAC)``;
* a layer is ``floor((W·x + b + 2^(W_FRAC-1)) / 2^W_FRAC)``, then an integer clamp (ReLU).

Why float64 GEMM is exact here: every product and every partial sum is an integer below
``ACT_LIMIT · W_LIMIT · fan_in + BIAS_LIMIT < 2^43``, far inside float64's 53-bit mantissa, so
each addition is exact and the result is the same in any order, on any vector width and with
or without FMA. The rescale divides by a power of two (exact) and floors (exact).

Training runs the same layers in float32 with straight-through rounding (``forward``), so
training sees what coding will compute; ``exact`` is the coding path, fed integer-valued
float64 tensors in units of ``2^-ACT_FRAC`` and returning the same.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

ACT_FRAC = 8                    # activations: integers in units of 2^-8
W_FRAC = 12                     # weights: integers in units of 2^-12
ACT_LIMIT = 2 ** 16 - 1         # |activation| ≤ 255.99 in real units
W_LIMIT = 2 ** 15 - 1           # |weight| ≤ 8 in real units
BIAS_LIMIT = 2 ** 40
MAX_FAN_IN = 2 ** 11            # keeps every partial sum below 2^43 (see module doc)
_ACT_SCALE = float(2 ** ACT_FRAC)
_W_SCALE = float(2 ** W_FRAC)
_B_SCALE = float(2 ** (ACT_FRAC + W_FRAC))
# Neighbour key of positions beyond the crop/canvas edge: never equal to a real group key.
_EDGE_KEY = -(2 ** 40)


def ste(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    """``rounded`` forward, identity gradient (straight-through)."""
    return x + (rounded - x).detach()


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 1/2): the rounding the integer path uses (torch.round is half-to-even)."""
    return torch.floor(x + 0.5)


def fake_quant(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x rounded to the grid 1/scale, straight-through."""
    return ste(x, round_half_up(x * scale) / scale)


class IntLinear(nn.Module):
    """A 1×1 layer (``nn.Linear`` on channels-last tensors) that runs exactly in integers.

    ``relu``: clamp to [0, ACT_LIMIT]; otherwise to [−ACT_LIMIT, ACT_LIMIT].
    """

    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        if cin > MAX_FAN_IN:
            raise ValueError(f"fan-in {cin} > {MAX_FAN_IN} could overflow exact float64 sums")
        self.relu = relu
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._exact_cache: tuple | None = None

    def _limits(self, scale: float) -> tuple[float, float]:
        top = ACT_LIMIT / scale
        return (0.0 if self.relu else -top), top

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training: x in real units (on the 2^-ACT_FRAC grid); output likewise."""
        w = fake_quant(self.weight.float(), _W_SCALE).clamp(-W_LIMIT / _W_SCALE, W_LIMIT / _W_SCALE)
        b = fake_quant(self.bias.float(), _B_SCALE).clamp(-BIAS_LIMIT / _B_SCALE, BIAS_LIMIT / _B_SCALE)
        out = fake_quant(F.linear(x.float(), w, b), _ACT_SCALE)
        return out.clamp(*self._limits(_ACT_SCALE))

    def integer_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b) as integer-valued float64 tensors; cached until the weights change."""
        key = (self.weight._version, self.bias._version, self.weight.data_ptr())
        if self._exact_cache is None or self._exact_cache[0] != key:
            with torch.no_grad():
                w = round_half_up(self.weight.double() * _W_SCALE).clamp(-W_LIMIT, W_LIMIT)
                b = round_half_up(self.bias.double() * _B_SCALE).clamp(-BIAS_LIMIT, BIAS_LIMIT)
            self._exact_cache = (key, w, b)
        return self._exact_cache[1], self._exact_cache[2]

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        """Coding: x integer-valued float64 in units of 2^-ACT_FRAC; output likewise."""
        w, b = self.integer_parameters()
        acc = F.linear(x, w, b)                                     # exact: see module doc
        out = torch.floor((acc + _W_SCALE / 2) / _W_SCALE)
        return out.clamp(*self._limits(1.0))


class IntMLP(nn.Module):
    """A stack of ``IntLinear`` (ReLU between layers; the last one signed unless ``last_relu``)."""

    def __init__(self, sizes: list[int], last_relu: bool = False):
        super().__init__()
        n = len(sizes) - 1
        self.layers = nn.ModuleList(IntLinear(sizes[i], sizes[i + 1], relu=(i < n - 1 or last_relu))
                                    for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.exact(x)
        return x


def same_group_neighbours(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The 3×3 neighbourhood of every position, as channels: (N, H, W, C) -> (N, H, W, 9·C).

    A neighbour whose group key differs from the centre's (another group, the canvas padding,
    or beyond the edge) enters as zero, like zero padding at the group's border: a group's
    output never depends on another group. Works for any dtype (training and exact coding).
    """
    n, h, w, c = x.shape
    xp = F.pad(x.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)
    kp = F.pad(keys, (1, 1, 1, 1), value=_EDGE_KEY)
    taps = []
    for dy in range(3):
        for dx in range(3):
            same = (kp[:, dy:dy + h, dx:dx + w] == keys).unsqueeze(-1).to(x.dtype)
            taps.append(xp[:, dy:dy + h, dx:dx + w] * same)
    return torch.cat(taps, dim=-1)


class IntMaskedConv3x3(nn.Module):
    """A dense 3×3 convolution over same-group neighbours, integer-exact (im2col + IntLinear)."""

    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        self.linear = IntLinear(9 * cin, cout, relu)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.linear(same_group_neighbours(x, keys))

    def exact(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.linear.exact(same_group_neighbours(x, keys))


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """Integer-valued real tensor (e.g. ẑ − median) -> float64 in units of 2^-ACT_FRAC."""
    return x.double() * _ACT_SCALE
