"""The ssic codec model: GI Swin transforms + per-group mean-scale hyperprior + ChARM.

::

         x ──g_a(·|m)──► y ──×gain(q)──► y_s ──Q──► ŷ_s ──÷gain(q)──► ŷ ──g_s(·|m)──► x̂
                         │                ▲
                   h_a per group          │ μ_s, σ_s (slice i from ŷ_<i and hyper features)
                         ▼                │
                  z_g ──Q──► ẑ_g ──h_s──► hyper features (composed over groups, GI Swin)

One set of weights serves every rate: ``--quality`` q ∈ [1, 8] selects a per-channel gain
(log-linear between 8 learned anchors), i.e. a quantisation step of 1/gain on y. The hyper
latent z is coded at unit step for every q.

``forward`` is the training path (noise for the rates, straight-through rounding for the
reconstruction). ``group_parameters`` is the coding path for one group on one crop; the
encoder and the decoder call it with identical tensors so they derive identical tables.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck

from . import entropy as em
from .layers import PAD_KEY
from .transforms import (AnalysisTransform, HyperAnalysis, HyperSynthesis, SynthesisTransform,
                         keys_at_scale, touched)


@dataclass(frozen=True)
class ModelConfig:
    # Sized for 2 CPU cores (measured, AVX2, fp32): a token MLP instead of attention at 1/2
    # resolution, attention from 1/4 on; ~20 training images/s at 128², g_s 0.23 s at 768×512.
    dims: tuple[int, ...] = (48, 96, 128, 192)
    depths: tuple[int, ...] = (0, 1, 2, 2)
    heads: tuple[int, ...] = (2, 3, 4, 6)
    window: int = 8
    latent: int = 192          # M, channels of y (= dims[-1])
    hyper: int = 128           # channels inside h_a / h_s
    hyper_latent: int = 64     # channels of z
    slices: int = 6            # ChARM slices
    slice_hidden: int = 192
    refine_scales: tuple[int, ...] = ()    # g_s scales followed by a seam-smoothing GIConvBlock

    @property
    def alignment(self) -> int:
        """Pixels a crop origin must be a multiple of so every window grid stays the same."""
        return self.window * 2 ** len(self.dims)


MODEL_CONFIGS = {
    "ssic-tiny": ModelConfig(),
    # ssic-tiny + group-masked depthwise 3×3 conv blocks after the 1/8, 1/4 and 1/2 synthesis stages:
    # ssic-tiny decoded every 2×2 patch from its own token and its Kodak error showed seams at
    # the 8- and 16-pixel grid; grown from ssic-tiny weights (the new blocks start as identity).
    "ssic-tiny2": ModelConfig(refine_scales=(8, 4, 2)),
}
DEFAULT_MODEL = "ssic-tiny2"       # what new training runs build


def full_precision(like: torch.Tensor):
    """Autocast off: under bf16 training the transforms run in bf16, but likelihoods, ChARM
    parameters and the hyper prior stay fp32 (a bf16 rate term is too coarse to learn from)."""
    return torch.autocast(like.device.type, enabled=False)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class SliceNet(nn.Module):
    """1×1 MLP (group-safe): conditioning -> output channels."""

    def __init__(self, cin: int, hidden: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cin, hidden), nn.GELU(), nn.Linear(hidden, hidden // 2), nn.GELU(),
                                 nn.Linear(hidden // 2, cout))

    def forward(self, x):
        return self.net(x)


class SSICModel(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        c = self.config = config
        assert c.latent == c.dims[-1] and c.latent % c.slices == 0
        self.g_a = AnalysisTransform(c.dims, c.depths, c.heads, c.window)
        self.g_s = SynthesisTransform(c.dims, c.depths, c.heads, c.window, c.refine_scales)
        self.h_a = HyperAnalysis(c.latent, c.hyper, c.hyper_latent, 4, c.window)
        self.h_s = HyperSynthesis(c.hyper_latent, c.hyper, c.hyper, 4, c.window)
        self.entropy_bottleneck = EntropyBottleneck(c.hyper_latent)
        ms = c.latent // c.slices
        self.param_nets = nn.ModuleList(SliceNet(c.hyper + i * ms, c.slice_hidden, 2 * ms) for i in range(c.slices))
        self.lrp_nets = nn.ModuleList(SliceNet(c.hyper + (i + 1) * ms, c.slice_hidden, ms) for i in range(c.slices))
        # Per-channel log gains of the 8 anchor qualities; step ∝ λ^-1/2 at init.
        lam = torch.tensor(em.LAMBDAS)
        init = 0.5 * (lam.log() - lam.log().mean())
        self.log_gains = nn.Parameter(init[:, None].repeat(1, c.latent))

    @staticmethod
    def starts_as_identity(key: str) -> bool:
        """Parameters of blocks that are the identity when new (a smaller model lacks them)."""
        return key.startswith("g_s.refine.")

    # ----- shared pieces -------------------------------------------------------------------
    def gains(self, quality: torch.Tensor) -> torch.Tensor:
        """(N,) qualities -> (N, M) gains (1 / quantisation step of y)."""
        lo, hi, t = em.quality_weights(quality)
        t = t[:, None]
        return torch.exp(self.log_gains[lo] * (1 - t) + self.log_gains[hi] * t)

    def slice_params(self, i: int, hyper: torch.Tensor, prev: list[torch.Tensor], gain: torch.Tensor):
        """μ_s, σ_s of slice i in the scaled domain (units of quantisation steps)."""
        mu, log_sigma = self.param_nets[i](torch.cat([hyper, *prev], dim=-1)).chunk(2, dim=-1)
        return mu * gain, torch.exp(log_sigma.clamp(-8.0, 8.0)) * gain

    def lrp(self, i: int, hyper: torch.Tensor, prev: list[torch.Tensor], y_hat_i: torch.Tensor) -> torch.Tensor:
        """Latent residual prediction, in quantisation steps (|·| ≤ 0.5)."""
        return 0.5 * torch.tanh(self.lrp_nets[i](torch.cat([hyper, *prev, y_hat_i], dim=-1)))

    # ----- training path --------------------------------------------------------------------
    def forward(self, x: torch.Tensor, block_keys: torch.Tensor, block_size: int, quality: torch.Tensor) -> dict:
        """x: (N, 3, H, W) in [0, 1] with H, W multiples of ``config.alignment``;
        block_keys: (N, H/B, W/B) int group index per block (PAD_KEY = not coded);
        quality: (N,) in [1, 8]. Returns x_hat (N, 3, H, W), bits_y, bits_z (N,), pixels (N,).
        """
        y = self.g_a(x.permute(0, 2, 3, 1), block_keys, block_size).float()
        keys16 = keys_at_scale(block_keys, block_size, 16)
        hyper, bits_z = self._train_hyper(y, keys16)
        with full_precision(x):
            y_hat, bits_y = self._train_latents(y, hyper, keys16, quality)
        x_hat = self.g_s(y_hat, block_keys, block_size).permute(0, 3, 1, 2)
        pixels = (keys_at_scale(block_keys, block_size, 1) != PAD_KEY).flatten(1).sum(1).float()
        return {"x_hat": x_hat, "bits_y": bits_y, "bits_z": bits_z, "pixels": pixels}

    def _train_latents(self, y: torch.Tensor, hyper: torch.Tensor, keys16: torch.Tensor, quality: torch.Tensor):
        """ChARM over the slices: noisy latents for the rate, rounded ones for the reconstruction."""
        c = self.config
        gain = self.gains(quality)[:, None, None, :]
        ms = c.latent // c.slices
        valid = (keys16 != PAD_KEY).unsqueeze(-1)
        y_hats, bits_y = [], torch.zeros(y.shape[0], device=y.device)
        for i in range(c.slices):
            gi = gain[..., i * ms:(i + 1) * ms]
            y_s = y[..., i * ms:(i + 1) * ms] * gi
            mu, sigma = self.slice_params(i, hyper, y_hats, gi)
            noisy = y_s + torch.empty_like(y_s).uniform_(-0.5, 0.5) - mu
            lik = em.gaussian_likelihood(noisy, sigma)
            bits_y = bits_y + (-torch.log2(lik) * valid).flatten(1).sum(1)
            y_hat_s = ste_round(y_s - mu) + mu
            y_hat_s = y_hat_s + self.lrp(i, hyper, y_hats, y_hat_s / gi)
            y_hats.append(y_hat_s / gi)
        return torch.cat(y_hats, dim=-1), bits_y

    def _train_hyper(self, y: torch.Tensor, keys16: torch.Tensor):
        feats = self.h_a.features(y, keys16)
        composed = torch.zeros(*y.shape[:3], self.config.hyper, device=y.device, dtype=feats.dtype)
        bits_z = torch.zeros(y.shape[0], device=y.device)
        for g in range(int(keys16.max()) + 1):
            in_g = keys16 == g
            if not bool(in_g.any()):
                continue
            z = self.h_a.group_latent(feats, in_g).float()
            with full_precision(z):
                z_hat, lik = self.entropy_bottleneck(z.permute(0, 3, 1, 2))
            bits_z = bits_z + (-torch.log2(lik) * touched(in_g).unsqueeze(1)).flatten(1).sum(1)
            composed = composed + self.h_s.group_features(z_hat.permute(0, 2, 3, 1), in_g)
        return self.h_s.finish(composed, keys16).float(), bits_z

    # ----- coding path (one group, one crop) ---------------------------------------------------
    def group_hyper(self, z_hat: torch.Tensor, in_g: torch.Tensor) -> torch.Tensor:
        """Hyper features of one group on a crop: z_hat (1, h/2, w/2, Z), in_g (1, h, w) bool."""
        keys = torch.where(in_g, 0, PAD_KEY)
        return self.h_s.finish(self.h_s.group_features(z_hat, in_g), keys).float()


def build_model(model_id: str = DEFAULT_MODEL) -> SSICModel:
    return SSICModel(MODEL_CONFIGS[model_id])


def config_dict(config: ModelConfig) -> dict:
    return asdict(config)
