"""encode / decode / extract / inspect: the public API the CLI and the tests use.

Decoding works group by group, each on the smallest crop of the canvas that holds it, aligned
to the model's window grid (128 px). A group's pixels are a function of its own section and
the block mask only, so they are bit-identical however many other groups are decoded, and
decoding a small group costs a fraction of the full decode.

Example::

    >>> import numpy as np
    >>> from ssic_cli.mask import single_group
    >>> rgb = np.full((40, 60, 3), 128, np.uint8)
    >>> data = encode(rgb, single_group(60, 40), quality=4)
    >>> decode(data).image.size
    (60, 40)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

import struct

from . import container, crypto, tiles
from .coding import SectionDecoder, SectionEncoder
from .errors import FormatError, SsicError, UndecodableError, WeightsMismatchError
from .imageio import default_max_pixels
from .mask import GroupMask
from .model import entropy as em
from .model.layers import PAD_KEY
from .model.transforms import keys_at_scale, touched
from .refine import refine_group
from .weights import LoadedModel, load_weights, weights_for_file

BACKGROUNDS = {"transparent": None, "gray": 128, "black": 0, "white": 255}


# Memory grows ~0.4 GB per megapixel of the largest tile (the transforms) and ~20 bytes per
# image pixel (whole-image buffers) on top of ~1 GB (measured: a 24 MP image in 1024² tiles took
# 1.3 GB to encode or decode; untiled, 9.7 GB). An untiled image (or a tile) over this many pixels
# is refused: only a file forged or made with --tile 0 / a huge --tile asks for it.
MAX_TILE_PIXELS = 25_000_000


def check_pixel_budget(width: int, height: int, max_pixels: Optional[int], tile_size: int = 0) -> None:
    """Refuse work that would not fit in memory, before any allocation (see imageio)."""
    limit = default_max_pixels() if max_pixels is None else max_pixels
    pixels = width * height
    tile_pixels = min(pixels, tile_size * tile_size) if tile_size else pixels
    need = 1.0 + 0.4 * tile_pixels / 1e6 + 20 * pixels / 1e9
    if pixels > limit:
        raise SsicError(f"image is {width}×{height} = {pixels / 1e6:.1f} MP, over the limit of "
                        f"{limit / 1e6:g} MP (~{need:.0f} GB of memory would be needed); raise it with SSIC_MAX_PIXELS")
    if tile_pixels > MAX_TILE_PIXELS:
        raise SsicError(f"image is {width}×{height} coded {'in tiles of ' + str(tile_size) if tile_size else 'untiled'}: "
                        f"{tile_pixels / 1e6:.1f} MP at once, over the limit of {MAX_TILE_PIXELS / 1e6:g} MP "
                        f"(~{need:.0f} GB of memory would be needed); use tiles of at most 4096")


# ----- geometry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Canvas:
    """The image padded to the model's alignment; block grid of the image inside it."""

    width: int
    height: int
    block_size: int
    align: int
    crop_align: int = 0         # crops' grid (0: ``align``); finer when the decoder has no windows

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the padded canvas."""
        a = self.align
        return (-(-self.height // a) * a, -(-self.width // a) * a)

    def block_keys(self, ids: np.ndarray, only: Optional[int] = None) -> torch.Tensor:
        """(1, Hc/B, Wc/B) group keys; PAD_KEY outside the image (and outside ``only`` if given)."""
        hc, wc = self.size
        b = self.block_size
        keys = np.full((hc // b, wc // b), PAD_KEY, np.int64)
        keys[: ids.shape[0], : ids.shape[1]] = ids
        if only is not None:
            keys = np.where(keys == only, 0, PAD_KEY)
        return torch.from_numpy(keys)[None]

    def group_crop(self, ids: np.ndarray, group: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1) in canvas pixels: the group's blocks, widened to the crop grid."""
        rows, cols = np.nonzero(ids == group)
        b, a = self.block_size, self.crop_align or self.align
        hc, wc = self.size
        y0 = rows.min() * b // a * a
        x0 = cols.min() * b // a * a
        y1 = min(-(-(rows.max() + 1) * b // a) * a, hc)
        x1 = min(-(-(cols.max() + 1) * b // a) * a, wc)
        return int(y0), int(x0), int(y1), int(x1)


def model_canvas(lm: LoadedModel, width: int, height: int, block_size: int) -> Canvas:
    c = lm.model.config
    return Canvas(width, height, block_size, c.alignment, c.crop_alignment)


def _pad_image(rgb: np.ndarray, canvas: Canvas, grid: tuple[int, int]) -> torch.Tensor:
    """Edge-replicate inside the last partial blocks (their pixels stay in their own block),
    zeros beyond the block grid. Returns (1, Hc, Wc, 3) float in [0, 1]."""
    b = canvas.block_size
    h, w = rgb.shape[:2]
    hb, wb = grid[0] * b, grid[1] * b
    padded = np.pad(rgb, ((0, hb - h), (0, wb - w), (0, 0)), mode="edge")
    hc, wc = canvas.size
    padded = np.pad(padded, ((0, hc - hb), (0, wc - wb), (0, 0)))
    return torch.from_numpy(padded).float().div_(255.0)[None]


# ----- hyper-latent tables --------------------------------------------------------------------
@dataclass
class HyperTables:
    """Per-channel categorical tables of ẑ from the entropy bottleneck's integer CDFs."""

    medians: np.ndarray           # (Z,) float32
    offsets: np.ndarray           # (Z,) int
    pmfs: list[np.ndarray]        # per channel, float64 probabilities of symbols 0..L-1

    @classmethod
    def from_model(cls, lm: LoadedModel) -> "HyperTables":
        eb = lm.model.entropy_bottleneck
        cdf, lengths = eb._quantized_cdf.numpy(), eb._cdf_length.numpy()
        # The last entry of each table is compressai's overflow bin; ssic clips instead.
        pmfs = [np.diff(cdf[c, : lengths[c]]).astype(np.float64)[:-1] for c in range(cdf.shape[0])]
        return cls(eb.quantiles[:, 0, 1].detach().float().numpy(), eb._offset.numpy().astype(np.int64), pmfs)


_TABLES: dict[int, HyperTables] = {}


def _tables(lm: LoadedModel) -> HyperTables:
    key = id(lm.model)
    if key not in _TABLES:
        _TABLES[key] = HyperTables.from_model(lm)
    return _TABLES[key]


# ----- the per-group coding core (shared by encoder and decoder) ------------------------------
def _latent_slices(lm: LoadedModel, hyper: torch.Tensor, in_g: torch.Tensor, gains: em.FixedGains,
                   take_symbols: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run ChARM over the slices of one group, in integers (identical on every machine);
    ``take_symbols(i, mu_hat, idx)`` returns the (P, slice) integer symbols at the group's
    positions (encoder: computes and codes them; decoder: decodes them), ``mu_hat`` in units of
    1/64 step. Returns ŷ_s (1, h, w, M) as int64 in units of 1/64 step, zero outside the group."""
    model = lm.model
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


def _y_hat(q64: torch.Tensor, gains: em.FixedGains) -> torch.Tensor:
    """ŷ for the pixel path: ŷ_s / gain as float32 (units of 1/64 step -> latent units)."""
    return (q64.double() / em.MEAN_GRID / gains.real().double()).float()


# ----- encode ----------------------------------------------------------------------------------
def encode(rgb: np.ndarray, group_mask: GroupMask, quality: float = 4.0, *, channels: int = 3,
           weights=None, seal: Optional[dict[str, crypto.KeyMaterial]] = None,
           scramble: Optional[dict[str, crypto.KeyMaterial]] = None, max_pixels: Optional[int] = None,
           tile_size: Optional[int] = None, effort: int = 0,
           warn: Callable[[str], None] = lambda msg: None) -> bytes:
    """Compress an (H, W, 3) uint8 image into .ssb bytes, one section per group.

    ``seal`` / ``scramble`` map group names or classes to the key that seals (AES-256-GCM of the
    section) or scrambles (keyed shuffle of its latents) those groups; see ``crypto`` and
    ``docs/SECURITY.md``. A name this image has no group for is not an error (a batch that seals
    people must not stop at a photo without any): ``warn`` is told, and nothing is sealed for it.

    ``tile_size``: code the image in tiles of at most this many pixels a side (a multiple of 128;
    0: one tile); by default images over 1.5 MP are tiled at 1024, which bounds memory (see
    ``tiles``).

    ``effort``: gradient steps of encoder-side latent refinement for each group (``refine``;
    0: none): smaller files at the same quality, ~2 encodes' time per step; decoding is unchanged.
    """
    seal_keys = _protection_plan(group_mask, seal, "seal", warn)
    scramble_keys = _protection_plan(group_mask, scramble, "scramble", warn)
    lm = load_weights(weights)
    quality = float(np.float32(quality))
    if not em.QUALITY_MIN <= quality <= em.QUALITY_MAX:
        raise SsicError(f"quality must be between {em.QUALITY_MIN:g} and {em.QUALITY_MAX:g}, got {quality:g}")
    if effort < 0:
        raise SsicError(f"effort must be 0 or more, got {effort}")
    h, w = rgb.shape[:2]
    canvas = model_canvas(lm, w, h, group_mask.block_size)
    ids = group_mask.ids
    if ids.shape != (-(-h // canvas.block_size), -(-w // canvas.block_size)):
        raise SsicError("group mask does not match the image size")
    tile_size = tiles.default_tile_size(*canvas.size) if tile_size is None else int(tile_size)
    tiles.check_tile_size(tile_size, canvas.align)
    check_pixel_budget(w, h, max_pixels, tile_size)
    header = container.header_from_mask(w, h, channels, group_mask, lm.model_id, lm.weights_hash, quality,
                                        tile_size=tile_size)      # checks the tile size first
    scrambled = {g: crypto.new_scramble(key) for g, key in scramble_keys.items()}
    # Refinement needs autograd, which inference mode forbids even for tensors made inside it.
    with torch.no_grad() if effort else torch.inference_mode():
        sections = _encode_tiles(lm, rgb, ids, canvas, quality, group_mask.num_groups,
                                 {g: perm_key for g, (_, perm_key) in scrambled.items()}, tile_size, effort)
    if seal_keys or scrambled:
        sections = crypto.protect_sections(header, sections, seal_keys,
                                           {g: params for g, (params, _) in scrambled.items()})
    return container.dump_ssb(header, sections)


def _protection_plan(group_mask: GroupMask, keys: Optional[dict], verb: str,
                     warn: Callable[[str], None]) -> dict[int, "crypto.KeyMaterial"]:
    """{group name or class: key} -> {group index: key}. A class covers every group of that class
    (``person`` seals person, person#2, …: protecting a class never leaves an instance out);
    a name that matches nothing is reported through ``warn`` and skipped."""
    plan: dict[int, crypto.KeyMaterial] = {}
    for name, key in (keys or {}).items():
        hits = [i for i, (n, label) in enumerate(zip(group_mask.names, group_mask.labels)) if name in (n, label)]
        if not hits and name in group_mask.merged:      # its pixels live in another group now: protect that
            into = group_mask.merged[name]
            hits = [group_mask.index_of(into)]
            warn(f"{name!r} was merged into {into!r}; {verb} {into!r} to cover it")
        if not hits:
            warn(f"nothing to {verb} for {name!r}: no such group or class in this image "
                 f"(groups: {', '.join(group_mask.names)}); encoded without it")
        for i in hits:
            if plan.get(i, key) is not key:
                raise SsicError(f"group {group_mask.names[i]!r} is given two different keys")
            plan[i] = key
    return plan


@dataclass(frozen=True)
class TileView:
    """One tile as the codec sees it: an image of its own (``canvas``, ``block_ids``) at
    ``origin`` (y, x) of the full canvas; ``tag`` names its scramble streams."""

    index: int
    origin: tuple[int, int]
    canvas: Canvas
    block_ids: np.ndarray
    tag: bytes


def tile_views(canvas: Canvas, ids: np.ndarray, tile_size: int) -> list[TileView]:
    """The tiles of ``canvas`` in raster order (one, the whole canvas, when ``tile_size`` is 0),
    each with the block ids inside it; ``FormatError`` if the size does not fit the model."""
    b = canvas.block_size
    if tile_size % canvas.align:
        raise FormatError(f"tile size {tile_size} does not fit this model's {canvas.align}-pixel grid")
    views = []
    for t, (y0, x0, y1, x1) in enumerate(tiles.tile_grid(*canvas.size, tile_size)):
        sub = Canvas(min(x1, canvas.width) - x0, min(y1, canvas.height) - y0, b, canvas.align, canvas.crop_align)
        # An untiled file keeps the scramble streams of version 2 ("z", "y"); tile t adds u32 t.
        tag = struct.pack("<I", t) if tile_size else b""
        views.append(TileView(t, (y0, x0), sub, ids[y0 // b:y1 // b, x0 // b:x1 // b], tag))
    return views


def _encode_tiles(lm, rgb, ids, canvas: Canvas, quality: float, num_groups: int,
                  perm_keys: dict[int, bytes], tile_size: int, effort: int = 0) -> list[Optional[bytes]]:
    """Each tile coded as an image of its own; a group's section joins its tiles' parts."""
    parts: list[list[bytes]] = [[] for _ in range(num_groups)]
    for view in tile_views(canvas, ids, tile_size):
        y0, x0 = view.origin
        rgb_tile = rgb[y0:y0 + view.canvas.height, x0:x0 + view.canvas.width]
        coded = _encode_sections(lm, rgb_tile, view.block_ids, view.canvas, quality, num_groups, perm_keys,
                                 view.tag, effort)
        for g, section in enumerate(coded):
            if section is not None:
                parts[g].append(section)
    if not tile_size:
        return [p[0] if p else None for p in parts]
    return [tiles.join_parts(p) if p else None for p in parts]


def _encode_sections(lm, rgb, ids, canvas: Canvas, quality: float, num_groups: int,
                     perm_keys: Optional[dict[int, bytes]] = None, tag: bytes = b"",
                     effort: int = 0) -> list[Optional[bytes]]:
    """One rANS stream per group of one tile; groups in ``perm_keys`` are coded scrambled under
    their key (streams named with ``tag``); ``effort`` > 0 refines the latents first."""
    model, tables = lm.model, _tables(lm)
    b = canvas.block_size
    keys = canvas.block_keys(ids)
    x = _pad_image(rgb, canvas, ids.shape)
    y = model.g_a(x, keys, b).float()
    keys16 = keys_at_scale(keys, b, 16)
    feats = model.h_a.features(y, keys16)
    gains = model.fixed_gains(quality)
    y_s = y * gains.real()
    sections: list[Optional[bytes]] = []
    for g in range(num_groups):
        if not (ids == g).any():
            sections.append(None)
            continue
        y0, x0, y1, x1 = (v // 16 for v in canvas.group_crop(ids, g))
        in_g_full = keys16 == g
        z = model.h_a.group_latent(feats, in_g_full).float()[:, y0 // 2:y1 // 2, x0 // 2:x1 // 2]
        in_g = in_g_full[:, y0:y1, x0:x1]
        perm_key = (perm_keys or {}).get(g)
        enc = SectionEncoder()
        z_int = _code_hyper(tables, z, touched(in_g), enc, perm_key, tag)
        hyper = model.group_hyper_exact(z_int, in_g)
        y_crop = y_s[:, y0:y1, x0:x1]
        if effort:
            y_crop = _refined(lm, x, ids, canvas, g, y_crop, z_int, quality, gains, effort, rgb.shape[:2])
        ms = model.config.latent // model.config.slices
        held: list[torch.Tensor] = []

        def take(i, mu, idx, y_crop=y_crop, in_g=in_g, enc=enc, held=held, perm_key=perm_key):
            sym = torch.round(y_crop[..., i * ms:(i + 1) * ms][in_g] - mu[in_g].float() / em.MEAN_GRID)
            sym = sym.clamp(-em.SYMBOL_LIMIT, em.SYMBOL_LIMIT).to(torch.int32)
            if perm_key is None:
                enc.add_gaussian(sym.numpy(), idx.numpy())
            else:
                held.append(sym)
            return sym

        _latent_slices(lm, hyper, in_g, gains, take)
        if perm_key is not None:
            _code_scrambled_latents(enc, torch.cat(held, dim=1).numpy(), perm_key, tag)
        sections.append(enc.finish())
    return sections


def _refined(lm, x, ids, canvas: Canvas, g: int, y_crop, z_int, quality: float, gains: em.FixedGains,
             steps: int, image_size: tuple[int, int]) -> torch.Tensor:
    """The group's latents after ``steps`` of ``refine`` on the crop its decoder will use."""
    b = canvas.block_size
    y0, x0, y1, x1 = canvas.group_crop(ids, g)
    keys = canvas.block_keys(ids, only=g)[:, y0 // b:y1 // b, x0 // b:x1 // b]
    rows = torch.arange(y0, y1)[:, None] < image_size[0]
    cols = torch.arange(x0, x1)[None, :] < image_size[1]
    shown = (keys_at_scale(keys, b, 1) == 0) & rows & cols
    with torch.enable_grad():
        return refine_group(lm.model, x[:, y0:y1, x0:x1], keys, b, y_crop, z_int, quality, gains.real(),
                            steps, shown)


def _code_hyper(tables: HyperTables, z: torch.Tensor, where: torch.Tensor, enc: SectionEncoder,
                perm_key: Optional[bytes] = None, tag: bytes = b"") -> torch.Tensor:
    """Quantise z at the touched positions, code it, and return ẑ − median as integers (zero
    elsewhere): what h_s reads. With ``perm_key`` each channel's symbols are coded in a
    key-shuffled order (the tables are the same at every position, so this costs no bits)."""
    z_int = torch.zeros(z.shape, dtype=torch.int64)
    vals = z[where].numpy()                                          # (P, Z)
    out = np.zeros(vals.shape, np.int64)
    syms = np.zeros(vals.shape, np.int32)
    for c, pmf in enumerate(tables.pmfs):
        sym = np.clip(np.round(vals[:, c] - tables.medians[c]) - tables.offsets[c], 0, len(pmf) - 1).astype(np.int32)
        syms[:, c] = sym
        out[:, c] = sym + tables.offsets[c]
    if perm_key is not None:
        syms = crypto.scramble_columns(syms, crypto.permutations(perm_key, b"z" + tag, *syms.shape))
    for c, pmf in enumerate(tables.pmfs):
        enc.add_categorical(syms[:, c], pmf)
    z_int[where] = torch.from_numpy(out)
    return z_int


def _decode_hyper(tables: HyperTables, shape, where: torch.Tensor, dec: SectionDecoder,
                  perm_key: Optional[bytes] = None, tag: bytes = b"") -> torch.Tensor:
    """ẑ − median (int64) at the touched positions, zero elsewhere; ``perm_key`` undoes a
    scrambled group's shuffle."""
    z_int = torch.zeros(shape, dtype=torch.int64)
    count = int(where.sum())
    syms = np.zeros((count, len(tables.pmfs)), np.int64)
    for c, pmf in enumerate(tables.pmfs):
        syms[:, c] = dec.categorical(count, pmf)
    if perm_key is not None:
        syms = crypto.unscramble_columns(syms, crypto.permutations(perm_key, b"z" + tag, *syms.shape))
    z_int[where] = torch.from_numpy(syms + tables.offsets[None, :])
    return z_int


# ----- scrambled groups ------------------------------------------------------------------------
# A scrambled group's latent symbols are shuffled, channel by channel, across the group's
# positions by a keyed Fisher–Yates permutation (paper, supplementary §B), and so is ẑ. Anyone
# must still be able to parse the stream, so nothing the parse needs may depend on the key:
# ChARM's scales come from the (hidden) order of earlier slices, so a scrambled group's latents
# are coded instead with one zero-mean Gaussian per channel, whose scale index leads the chunk.
# Without the key the decoder reads valid symbols in shuffled order and shows noise; with it,
# it unshuffles and runs the usual ChARM chain, which restores ŷ exactly. The cost is the
# hyperprior/ChARM gain on that group's latents (docs/SECURITY.md has measurements).
def _code_scrambled_latents(enc: SectionEncoder, symbols: np.ndarray, perm_key: bytes, tag: bytes = b"") -> None:
    """symbols: (P, M) int32 in position order; coded shuffled under ``perm_key``."""
    coded = crypto.scramble_columns(symbols, crypto.permutations(perm_key, b"y" + tag, *symbols.shape))
    scales = _channel_scale_indexes(coded)
    enc.add_categorical(scales, np.ones(len(em.SCALE_TABLE)))
    enc.add_gaussian(coded, np.broadcast_to(scales, coded.shape))


def _decode_scrambled_latents(dec: SectionDecoder, positions: int, channels: int,
                              perm_key: Optional[bytes], tag: bytes = b"") -> np.ndarray:
    """(P, M) symbols, in position order with ``perm_key``, else as shuffled."""
    scales = dec.categorical(channels, np.ones(len(em.SCALE_TABLE)))
    coded = dec.gaussian(np.broadcast_to(scales, (positions, channels))).reshape(positions, channels)
    if perm_key is None:
        return coded
    return crypto.unscramble_columns(coded, crypto.permutations(perm_key, b"y" + tag, positions, channels))


def _channel_scale_indexes(symbols: np.ndarray) -> np.ndarray:
    """Per channel of (P, M) symbols, the SCALE_TABLE index whose Gaussian codes it in fewest bits."""
    scales = torch.tensor(em.SCALE_TABLE, dtype=torch.float64)[:, None]
    best = np.zeros(symbols.shape[1], np.int32)
    for c in range(symbols.shape[1]):
        values, counts = np.unique(np.abs(symbols[:, c]), return_counts=True)
        lik = em.gaussian_likelihood(torch.from_numpy(values.astype(np.float64))[None], scales)
        best[c] = int((-torch.log2(lik) * torch.from_numpy(counts)).sum(dim=1).argmin())
    return best


# ----- decode ----------------------------------------------------------------------------------
@dataclass
class DecodeResult:
    image: Image.Image
    decoded: list[str]
    lost: list[str] = field(default_factory=list)        # damaged sections
    unavailable: list[str] = field(default_factory=list)  # absent (extracted away) or sealed
    scrambled: list[str] = field(default_factory=list)    # decoded, but no key unscrambled them


def decode(data, groups: Optional[list[str]] = None, *, background: str = "transparent",
           weights=None, keys: Optional[list[crypto.KeyMaterial]] = None,
           warn: Callable[[str], None] = lambda msg: None, max_pixels: Optional[int] = None) -> DecodeResult:
    """Decode the named groups (all when None) of ``data``: .ssb bytes, a parsed ``SsbFile``,
    a path, an http(s) URL (only the wanted sections are fetched) or a seekable binary file.
    Undecoded pixels are transparent (RGBA) or filled with ``background``; a complete decode
    gives RGB (or L for grayscale sources).

    ``keys`` are tried on sealed and scrambled groups: a group opens with the key that protected
    it. A sealed group no key opens is left empty (``unavailable``); a scrambled one is decoded
    as it is, scrambled (``scrambled``)."""
    ssb = data if isinstance(data, container.SsbFile) else container.read_ssb(data)
    hdr = ssb.header
    check_pixel_budget(hdr.width, hdr.height, max_pixels, hdr.tile_size)
    if background not in BACKGROUNDS:
        raise SsicError(f"background must be one of {', '.join(BACKGROUNDS)}")
    wanted = _select_groups(hdr, groups)
    lm = _matching_weights(hdr, weights)
    ssb.prefetch(wanted)
    canvas = model_canvas(lm, hdr.width, hdr.height, hdr.block_size)
    hc, wc = canvas.size
    pixels = np.zeros((hc, wc, 3), np.uint8)
    alpha = np.zeros((hc, wc), bool)
    result = DecodeResult(None, [])
    gains = lm.model.fixed_gains(hdr.quality)
    block_pixels = np.kron(_padded_ids(hdr.block_ids, canvas), np.ones((hdr.block_size,) * 2, np.int16))
    keyring = crypto.Keyring(keys or [])
    for g in wanted:
        name = hdr.groups[g].name
        if not hdr.groups[g].flags & container.FLAG_PRESENT:
            result.unavailable.append(name)
            warn(f"group {name!r} is not in this file (extracted away); left empty")
            continue
        try:
            opened = crypto.open_section(hdr, g, ssb.section(g), keyring)
            with torch.inference_mode():     # every tile part first: a group is whole or lost
                pieces = [_decode_group(lm, view, g, part, gains, opened.scrambled, opened.perm_key)
                          for view, part in _group_parts(hdr, canvas, g, opened.data)]
        except crypto.KeyRequiredError as exc:
            result.unavailable.append(name)
            warn(f"{exc}; left empty")
            continue
        except crypto.WrongKeyError as exc:
            result.unavailable.append(name)
            warn(f"{exc}{_tried(keyring, 'opens')}; left empty")
            continue
        except UndecodableError:
            result.lost.append(name)
            warn(f"group {name!r} could not be decoded: its section is intact (CRC passes) but did not "
                 f"decode with this machine's model arithmetic or these weights ({lm.model_id}); left empty")
            continue
        except FormatError as exc:
            result.lost.append(name)
            warn(f"group {name!r} is damaged and was skipped: {exc}")
            continue
        if opened.scrambled and opened.perm_key is None:
            result.scrambled.append(name)
            if len(keyring):
                warn(f"wrong key for group {name!r}{_tried(keyring, 'unscrambles')}; it is shown scrambled")
            else:
                warn(f"group {name!r} is scrambled and no key was given; it is shown scrambled")
        for crop, (y0, x0, y1, x1) in pieces:
            sel = block_pixels[y0:y1, x0:x1] == g
            pixels[y0:y1, x0:x1][sel] = crop[sel]
            alpha[y0:y1, x0:x1] |= sel
        result.decoded.append(name)
    result.image = _compose(pixels[: hdr.height, : hdr.width], alpha[: hdr.height, : hdr.width], hdr.channels,
                            background, complete=len(result.decoded) == len(hdr.groups))
    return result


def decode_latents(data: bytes | container.SsbFile, *, weights=None,
                   keys: Optional[list[crypto.KeyMaterial]] = None) -> dict[str, np.ndarray]:
    """The integer ŷ_s (units of 1/64 quantisation step, int64, shape (h/16, w/16, M) of the
    group's crop; of a tiled file, every part's positions × M, concatenated in tile order) of
    every group that decodes: everything the entropy decoder and the integer parameter path
    produce, before the float pixel path. Identical on every machine for a given file and
    weights; the golden-file and cross-kernel tests compare these."""
    ssb = data if isinstance(data, container.SsbFile) else container.read_ssb(data)
    hdr = ssb.header
    lm = _matching_weights(hdr, weights)
    canvas = model_canvas(lm, hdr.width, hdr.height, hdr.block_size)
    gains = lm.model.fixed_gains(hdr.quality)
    keyring = crypto.Keyring(keys or [])
    out = {}
    for g, group in enumerate(hdr.groups):
        if not group.flags & container.FLAG_PRESENT:
            continue
        try:
            opened = crypto.open_section(hdr, g, ssb.section(g), keyring)
        except (crypto.KeyRequiredError, crypto.WrongKeyError):
            continue
        with torch.inference_mode():
            parts = [_decode_group_latents(lm, view, g, part, gains, opened.scrambled, opened.perm_key)[0][0].numpy()
                     for view, part in _group_parts(hdr, canvas, g, opened.data)]
        out[group.name] = parts[0] if not hdr.tile_size else np.concatenate(
            [q.reshape(-1, q.shape[-1]) for q in parts])
    return out


def _group_parts(hdr: container.SsbHeader, canvas: Canvas, g: int, section: bytes) -> list[tuple[TileView, bytes]]:
    """The tiles group g touches, each with its part of the section (one part when untiled)."""
    views = tile_views(canvas, hdr.block_ids, hdr.tile_size)
    if not hdr.tile_size:
        return [(views[0], section)]
    mine = [v for v in views if (v.block_ids == g).any()]
    return list(zip(mine, tiles.split_parts(section, len(mine))))


def _tried(keyring: "crypto.Keyring", verb: str) -> str:
    return "" if len(keyring) == 1 else f" (none of the {len(keyring)} keys given {verb} it)"


def _select_groups(hdr: container.SsbHeader, groups: Optional[list[str]]) -> list[int]:
    return container.select_groups(hdr, groups)


def _matching_weights(hdr: container.SsbHeader, weights) -> LoadedModel:
    lm = load_weights(weights_for_file(hdr.model_id, hdr.weights_hash, weights))
    if hdr.model_id != lm.model_id or hdr.weights_hash != lm.weights_hash:
        raise WeightsMismatchError(
            f"file was made with weights {hdr.model_id}/{hdr.weights_hash.hex()[:8]}, loaded "
            f"{lm.model_id}/{lm.weights_hash.hex()[:8]} ({lm.path.name}); pass the matching --weights")
    return lm


def _padded_ids(ids: np.ndarray, canvas: Canvas) -> np.ndarray:
    hc, wc = canvas.size
    b = canvas.block_size
    out = np.full((hc // b, wc // b), -1, np.int16)
    out[: ids.shape[0], : ids.shape[1]] = ids
    return out


def _decode_group(lm: LoadedModel, view: TileView, g: int, section: bytes,
                  gains: em.FixedGains, scrambled: bool = False, perm_key: Optional[bytes] = None):
    """Pixels (h, w, 3) uint8 of the group's crop in one tile and the crop box in canvas pixels.
    A scrambled section decodes in shuffled order unless ``perm_key`` is given."""
    q64, keys, (y0, x0, y1, x1) = _decode_group_latents(lm, view, g, section, gains, scrambled, perm_key)
    x_hat = lm.model.g_s(_y_hat(q64, gains), keys, view.canvas.block_size)[0]
    crop = (x_hat.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    oy, ox = view.origin
    return crop, (y0 + oy, x0 + ox, y1 + oy, x1 + ox)


def _decode_group_latents(lm: LoadedModel, view: TileView, g: int, section: bytes,
                          gains: em.FixedGains, scrambled: bool = False, perm_key: Optional[bytes] = None):
    """ŷ_s of the group's crop in one tile (1, h/16, w/16, M) int64 in units of 1/64 step, its
    block keys and its crop box in the tile. Raises ``UndecodableError`` when an intact section
    (part) does not decode."""
    model = lm.model
    canvas, ids = view.canvas, view.block_ids
    b = canvas.block_size
    y0, x0, y1, x1 = canvas.group_crop(ids, g)
    keys = canvas.block_keys(ids, only=g)[:, y0 // b:y1 // b, x0 // b:x1 // b]
    in_g = keys_at_scale(keys, b, 16) == 0
    dec = SectionDecoder(section)
    where = touched(in_g)
    z_int = _decode_hyper(_tables(lm), (1, *where.shape[1:], model.config.hyper_latent), where, dec,
                          perm_key if scrambled else None, view.tag)
    hyper = model.group_hyper_exact(z_int, in_g)
    ms = model.config.latent // model.config.slices
    if scrambled:
        symbols = _decode_scrambled_latents(dec, int(in_g.sum()), model.config.latent, perm_key, view.tag)

        def take(i, mu, idx):
            return torch.from_numpy(symbols[:, i * ms:(i + 1) * ms].astype(np.int64))
    else:
        def take(i, mu, idx):
            return torch.from_numpy(dec.gaussian(idx.numpy()).astype(np.int64)).reshape(-1, ms)

    q64 = _latent_slices(lm, hyper, in_g, gains, take)
    try:
        dec.check_end()
    except FormatError as exc:
        # The section's CRC passed (or it would not have got here), so its bytes are as written:
        # what failed is this decoder's reading of them, not the file.
        raise UndecodableError(str(exc)) from None
    return q64, keys, (y0, x0, y1, x1)


def _compose(pixels: np.ndarray, alpha: np.ndarray, channels: int, background: str, complete: bool) -> Image.Image:
    fill = BACKGROUNDS[background]
    if channels == 1:
        pixels = pixels.mean(axis=2).round().astype(np.uint8)[..., None]
    if complete or fill is not None:
        out = pixels.copy()
        if fill is not None:
            out[~alpha] = fill
        return Image.fromarray(out[..., 0] if channels == 1 else out, "L" if channels == 1 else "RGB")
    a = (alpha * 255).astype(np.uint8)[..., None]
    if channels == 1:
        return Image.fromarray(np.concatenate([pixels, a], axis=2), "LA")
    return Image.fromarray(np.concatenate([pixels, a], axis=2), "RGBA")


# ----- extract / inspect (no model involved: see container) ----------------------------------------
extract = container.extract
inspect = container.inspect
