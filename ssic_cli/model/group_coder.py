"""The model's coding contract: one group's latents <-> one rANS section.

``SSICModel.compress_group`` / ``decompress_group`` (thin methods over the functions here) are
what the codec calls, in the manner of CompressAI's ``compress`` / ``decompress``: the codec
decides *which* crop and group to code and what protection applies; how a group's latents
become symbols, in what order and under which tables is the model's business and lives here.

A section holds, in decoding order: ẑ − median at the 1/32 positions the group touches, channel
by channel (categorical tables of the entropy bottleneck), then ŷ_s slice by slice (zero-mean
quantised Gaussians of ``round(y_s − μ̂)`` with a scale-table index), all from the integer
parameter path (``intnet``), so every decoder derives the same tables.

A *scrambled* group (``order`` given) has its symbols shuffled, channel by channel, across the
group's positions by a keyed permutation (paper, supplementary §B), ẑ included. Anyone must still
be able to parse the stream, so nothing the parse needs may depend on the key: ChARM's scales
come from the (hidden) order of earlier slices, so a scrambled group's latents are coded with one
zero-mean Gaussian per channel instead, whose scale index leads the chunk. Without the key the
decoder reads valid symbols in shuffled order and shows noise; with it, it unshuffles and runs
the usual ChARM chain, which restores ŷ exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol

import numpy as np
import torch

from ..coding import SectionDecoder, SectionEncoder
from ..errors import FormatError, UndecodableError
from . import entropy as em
from .transforms import keys_at_scale, touched

if TYPE_CHECKING:
    from .ssic import SSICModel


class SymbolOrder(Protocol):
    """A keyed shuffle of (positions, channels) symbol arrays; ``stream`` names the array
    (``b"z"`` or ``b"y"``) so the two are shuffled independently (see ``crypto.KeyedOrder``)."""

    def shuffle(self, stream: bytes, symbols: np.ndarray) -> np.ndarray: ...

    def unshuffle(self, stream: bytes, symbols: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class HyperTables:
    """Per-channel categorical tables of ẑ, read from the entropy bottleneck's integer CDFs."""

    medians: np.ndarray           # (Z,) float32
    offsets: np.ndarray           # (Z,) int64: symbol 0 of channel c stands for ẑ − median = offsets[c]
    pmfs: tuple[np.ndarray, ...]  # per channel, float64 probabilities of symbols 0..L-1

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """z (…, Z) float -> ẑ − median (…, Z) int64, clipped to each channel's table: the
        integers the section codes and h_s reads."""
        centred = torch.round(z.float() - torch.from_numpy(self.medians))      # float32, as always
        lo = torch.from_numpy(self.offsets)
        hi = lo + torch.tensor([len(p) - 1 for p in self.pmfs])
        return torch.maximum(torch.minimum(centred.long(), hi), lo)


@dataclass(frozen=True)
class Analysis:
    """What the encoder computes once per tile and shares between its groups."""

    y: torch.Tensor               # (1, H/16, W/16, M) float
    keys16: torch.Tensor          # (1, H/16, W/16) group keys at 1/16
    features: torch.Tensor        # h_a's group-independent features at 1/16


def analyse(model: "SSICModel", x: torch.Tensor, block_keys: torch.Tensor, block_size: int) -> Analysis:
    """x (1, H, W, 3) in [0, 1], block keys (1, H/B, W/B) -> y and the hyper-analysis features."""
    y = model.g_a(x, block_keys, block_size).float()
    keys16 = keys_at_scale(block_keys, block_size, 16)
    return Analysis(y, keys16, model.h_a.features(y, keys16))


def group_latents(model: "SSICModel", analysis: Analysis, group: int,
                  box16: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, z, in_g) of one group on its decoding crop ``box16`` (y0, x0, y1, x1 at 1/16, even):
    y (1, h, w, M), z (1, h/2, w/2, Z), in_g (1, h, w) bool."""
    y0, x0, y1, x1 = box16
    in_g_full = analysis.keys16 == group
    z = model.h_a.group_latent(analysis.features, in_g_full).float()[:, y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    return analysis.y[:, y0:y1, x0:x1], z, in_g_full[:, y0:y1, x0:x1]


def quantize_hyper(model: "SSICModel", z: torch.Tensor, in_g: torch.Tensor) -> torch.Tensor:
    """ẑ − median (1, h/2, w/2, Z) int64 at the 1/32 positions the group touches, zero elsewhere."""
    return model.hyper_tables().quantize(z) * touched(in_g).unsqueeze(-1)


def hyper_tables(model: "SSICModel") -> HyperTables:
    eb = model.entropy_bottleneck
    cdf, lengths = eb._quantized_cdf.numpy(), eb._cdf_length.numpy()
    # The last entry of each table is compressai's overflow bin; ssic clips instead.
    pmfs = tuple(np.diff(cdf[c, : lengths[c]]).astype(np.float64)[:-1] for c in range(cdf.shape[0]))
    return HyperTables(eb.quantiles[:, 0, 1].detach().float().numpy(), eb._offset.numpy().astype(np.int64), pmfs)


# ----- compress ----------------------------------------------------------------------------------
def compress_group(model: "SSICModel", y_s: torch.Tensor, z_int: torch.Tensor, in_g: torch.Tensor,
                   gains: em.FixedGains, order: Optional[SymbolOrder] = None) -> bytes:
    """One group's section from its scaled latent y_s = y·gain (1, h, w, M) and its quantised
    hyper latent z_int = ``HyperTables.quantize(z)`` (1, h/2, w/2, Z), on a crop where ``in_g``
    marks its positions; ``order``: code it scrambled under that keyed order."""
    tables = model.hyper_tables()
    enc = SectionEncoder()
    where = touched(in_g)
    _code_hyper(enc, tables, z_int[where].numpy(), order)
    hyper = model.group_hyper_exact(z_int * where.unsqueeze(-1), in_g)
    ms = model.config.latent // model.config.slices
    held: list[torch.Tensor] = []

    def take(i: int, mu: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        sym = torch.round(y_s[..., i * ms:(i + 1) * ms][in_g] - mu[in_g].float() / em.MEAN_GRID)
        sym = sym.clamp(-em.SYMBOL_LIMIT, em.SYMBOL_LIMIT).to(torch.int32)
        if order is None:
            enc.add_gaussian(sym.numpy(), idx.numpy())
        else:
            held.append(sym)
        return sym

    latent_chain_exact(model, hyper, in_g, gains, take)
    if order is not None:
        _code_scrambled_latents(enc, order.shuffle(b"y", torch.cat(held, dim=1).numpy()))
    return enc.finish()


def _code_hyper(enc: SectionEncoder, tables: HyperTables, z_int: np.ndarray, order: Optional[SymbolOrder]) -> None:
    """z_int (P, Z) at the touched positions; the tables are the same at every position, so a
    scrambled group's shuffle costs no bits here."""
    syms = (z_int - tables.offsets[None, :]).astype(np.int32)
    if order is not None:
        syms = order.shuffle(b"z", syms)
    for c, pmf in enumerate(tables.pmfs):
        enc.add_categorical(syms[:, c], pmf)


def _code_scrambled_latents(enc: SectionEncoder, coded: np.ndarray) -> None:
    """coded: (P, M) int32, already in shuffled order."""
    scales = _channel_scale_indexes(coded)
    enc.add_categorical(scales, np.ones(len(em.SCALE_TABLE)))
    enc.add_gaussian(coded, np.broadcast_to(scales, coded.shape))


def _channel_scale_indexes(symbols: np.ndarray) -> np.ndarray:
    """Per channel of (P, M) symbols, the SCALE_TABLE index whose Gaussian codes it in fewest bits."""
    scales = torch.tensor(em.SCALE_TABLE, dtype=torch.float64)[:, None]
    best = np.zeros(symbols.shape[1], np.int32)
    for c in range(symbols.shape[1]):
        values, counts = np.unique(np.abs(symbols[:, c]), return_counts=True)
        lik = em.gaussian_likelihood(torch.from_numpy(values.astype(np.float64))[None], scales)
        best[c] = int((-torch.log2(lik) * torch.from_numpy(counts)).sum(dim=1).argmin())
    return best


# ----- decompress --------------------------------------------------------------------------------
def decompress_group(model: "SSICModel", section: bytes, in_g: torch.Tensor, gains: em.FixedGains, *,
                     scrambled: bool = False, order: Optional[SymbolOrder] = None) -> torch.Tensor:
    """ŷ_s (1, h, w, M) int64 in units of 1/64 step, zero outside the group, from one section.
    A scrambled section decodes in shuffled order unless its ``order`` is given. Raises
    ``FormatError`` when the bytes cannot be parsed and ``UndecodableError`` when they parse
    but do not end where they should."""
    tables = model.hyper_tables()
    dec = SectionDecoder(section)
    where = touched(in_g)
    z_int = torch.zeros((1, *where.shape[1:], len(tables.pmfs)), dtype=torch.int64)
    z_int[where] = torch.from_numpy(_decode_hyper(dec, tables, int(where.sum()), order if scrambled else None))
    hyper = model.group_hyper_exact(z_int, in_g)
    ms = model.config.latent // model.config.slices
    if scrambled:
        symbols = _decode_scrambled_latents(dec, int(in_g.sum()), model.config.latent, order)

        def take(i: int, mu: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(symbols[:, i * ms:(i + 1) * ms].astype(np.int64))
    else:
        def take(i: int, mu: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(dec.gaussian(idx.numpy()).astype(np.int64)).reshape(-1, ms)

    q64 = latent_chain_exact(model, hyper, in_g, gains, take)
    try:
        dec.check_end()
    except FormatError as exc:
        # The section's CRC passed (or it would not have got here), so its bytes are as written:
        # what failed is this decoder's reading of them, not the file.
        raise UndecodableError(str(exc)) from None
    return q64


def _decode_hyper(dec: SectionDecoder, tables: HyperTables, count: int, order: Optional[SymbolOrder]) -> np.ndarray:
    """ẑ − median (count, Z) int64 at the touched positions."""
    syms = np.zeros((count, len(tables.pmfs)), np.int64)
    for c, pmf in enumerate(tables.pmfs):
        syms[:, c] = dec.categorical(count, pmf)
    if order is not None:
        syms = order.unshuffle(b"z", syms)
    return syms + tables.offsets[None, :]


def _decode_scrambled_latents(dec: SectionDecoder, positions: int, channels: int,
                              order: Optional[SymbolOrder]) -> np.ndarray:
    """(P, M) symbols, in position order with ``order``, else as shuffled."""
    scales = dec.categorical(channels, np.ones(len(em.SCALE_TABLE)))
    coded = dec.gaussian(np.broadcast_to(scales, (positions, channels))).reshape(positions, channels)
    return coded if order is None else order.unshuffle(b"y", coded)


# ----- the integer ChARM chain (shared by both sides) -------------------------------------------------
def latent_chain_exact(model: "SSICModel", hyper: torch.Tensor, in_g: torch.Tensor, gains: em.FixedGains,
                       take_symbols: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run ChARM over the slices of one group, in integers (identical on every machine);
    ``take_symbols(i, mu_hat, idx)`` returns the (P, slice) integer symbols at the group's
    positions (encoder: computes and codes them; decoder: decodes them), ``mu_hat`` in units of
    1/64 step. Returns ŷ_s (1, h, w, M) as int64 in units of 1/64 step, zero outside the group."""
    ms = model.config.latent // model.config.slices
    prev: list[torch.Tensor] = []
    q64s: list[torch.Tensor] = []
    mask = in_g.unsqueeze(-1)
    for i in range(model.config.slices):
        sl = slice(i * ms, (i + 1) * ms)
        mu, idx = model.slice_params_exact(i, hyper, prev, gains)
        symbols = take_symbols(i, mu, idx[in_g])
        q64 = torch.zeros_like(mu)
        q64[in_g] = symbols.long() * int(em.MEAN_GRID) + mu[in_g]
        q64 = q64 + model.lrp_exact(i, hyper, prev, model.unscaled_exact(q64, gains, sl))
        q64 = q64 * mask
        q64s.append(q64)
        prev.append(model.unscaled_exact(q64, gains, sl))
    return torch.cat(q64s, dim=-1)


def reconstruct(model: "SSICModel", q64: torch.Tensor, block_keys: torch.Tensor, block_size: int,
                gains: em.FixedGains) -> torch.Tensor:
    """The group's pixels (h, w, 3) uint8 on its crop from its decoded ŷ_s: the float pixel path."""
    y_hat = (q64.double() / em.MEAN_GRID / gains.real().double()).float()
    x_hat = model.g_s(y_hat, block_keys, block_size)[0]
    return (x_hat.clamp(0, 1) * 255).round().to(torch.uint8)
