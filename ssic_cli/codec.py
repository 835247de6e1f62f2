"""encode / decode: validation, budgets, tiles, protection and composition around the model's
per-group coding contract (``SSICModel.compress_group`` / ``decompress_group``).

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
from .errors import FormatError, SsicError, UndecodableError, WeightsMismatchError
from .imageio import default_max_pixels
from .mask import GroupMask
from .model import entropy as em
from .model.layers import PAD_KEY
from .model.transforms import keys_at_scale
from . import refine
from .weights import LoadedModel, load_weights, weights_for_file

BACKGROUNDS = {"transparent": None, "gray": 128, "black": 0, "white": 255}


# Memory grows ~0.4 GB per megapixel of the largest tile (the transforms) and ~20 bytes per
# image pixel (whole-image buffers) on top of ~1 GB (measured: a 24 MP image in 1024² tiles took
# 1.3 GB to encode or decode; untiled, 9.7 GB). An untiled image (or a tile) over this many pixels
# is refused: only a file forged or made with --tile 0 / a huge --tile asks for it.
MAX_TILE_PIXELS = 25_000_000


# Every model pads the image to a grid of at most this many pixels (its ``alignment``), and the
# decoder holds whole-canvas buffers: the budget counts the padded canvas, or a 1,000,000 × 1
# image (a 473-byte file) would ask for 128 MP of buffers.
CANVAS_GRID = 128


def check_pixel_budget(width: int, height: int, max_pixels: Optional[int], tile_size: int = 0) -> None:
    """Refuse work that would not fit in memory, before any allocation (see imageio): the image
    padded to the model's grid must fit the pixel budget, and each tile the tile limit."""
    limit = default_max_pixels() if max_pixels is None else max_pixels
    g = CANVAS_GRID
    padded_w, padded_h = -(-width // g) * g, -(-height // g) * g
    pixels = padded_w * padded_h
    tile_pixels = min(padded_w, tile_size) * min(padded_h, tile_size) if tile_size else pixels
    need = 1.0 + 0.4 * tile_pixels / 1e6 + 20 * pixels / 1e9
    if pixels > limit:
        padding = "" if (padded_w, padded_h) == (width, height) else f", padded to {padded_w}×{padded_h}"
        raise SsicError(f"image is {width}×{height}{padding} = {pixels / 1e6:.1f} MP, over the limit of "
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
        if not rows.size:
            raise FormatError("the block mask gives this group no blocks")
        b, a = self.block_size, self.crop_align or self.align
        hc, wc = self.size
        y0 = rows.min() * b // a * a
        x0 = cols.min() * b // a * a
        y1 = min(-(-(rows.max() + 1) * b // a) * a, hc)
        x1 = min(-(-(cols.max() + 1) * b // a) * a, wc)
        return int(y0), int(x0), int(y1), int(x1)


def model_canvas(lm: LoadedModel, width: int, height: int, block_size: int) -> Canvas:
    c = lm.model.config
    assert CANVAS_GRID % c.alignment == 0, "check_pixel_budget counts padding to CANVAS_GRID"
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


# ----- encode ----------------------------------------------------------------------------------
def encode(rgb: np.ndarray, group_mask: GroupMask, quality: float = 4.0, *, channels: int = 3,
           weights=None, seal: Optional[dict[str, crypto.KeyMaterial]] = None,
           scramble: Optional[dict[str, crypto.KeyMaterial]] = None, max_pixels: Optional[int] = None,
           tile_size: Optional[int] = None, effort: int = 0,
           warn: Callable[[str], None] = lambda msg: None,
           progress: Callable[[int, int], None] = lambda done, total: None) -> bytes:
    """Compress an (H, W, 3) uint8 image into .ssb bytes, one section per group.

    ``seal`` / ``scramble`` map group names or classes to the key that seals (AES-256-GCM of the
    section) or scrambles (keyed shuffle of its latents) those groups; see ``crypto`` and
    ``docs/SECURITY.md``. A name this image has no group for is not an error (a batch that seals
    people must not stop at a photo without any): ``warn`` is told, and nothing is sealed for it.

    ``tile_size``: code the image in tiles of at most this many pixels a side (a multiple of 128;
    0: one tile); by default images over 1.5 MP are tiled at 1024, which bounds memory (see
    ``tiles``).

    ``effort``: encoder effort level 0–9 (``refine.EFFORT_LEVELS``; 0: the plain encoder): higher
    levels refine each group's latents longer for smaller files at the same quality; the decoder
    and the format do not change. ``progress(done, total)`` is told as refinement steps complete
    (total: the level's steps × the groups of every tile).
    """
    seal_keys = _protection_plan(group_mask, seal, "seal", warn)
    scramble_keys = _protection_plan(group_mask, scramble, "scramble", warn)
    lm = load_weights(weights)
    quality = float(np.float32(quality))
    if not em.QUALITY_MIN <= quality <= em.QUALITY_MAX:
        raise SsicError(f"quality must be between {em.QUALITY_MIN:g} and {em.QUALITY_MAX:g}, got {quality:g}")
    if not 0 <= effort <= refine.EFFORT_MAX:
        raise SsicError(f"effort must be between 0 and {refine.EFFORT_MAX}, got {effort}")
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
    level = refine.effort_level(effort)
    with torch.no_grad() if effort else torch.inference_mode():
        sections = _encode_tiles(lm, rgb, ids, canvas, quality, group_mask.num_groups,
                                 {g: perm_key for g, (_, perm_key) in scrambled.items()}, tile_size,
                                 level, _step_counter(level, canvas, ids, tile_size, progress))
    if seal_keys or scrambled:
        sections = crypto.protect_sections(header, sections, seal_keys,
                                           {g: params for g, (params, _) in scrambled.items()})
    return container.dump_ssb(header, sections)


def _step_counter(level: "refine.Effort", canvas: Canvas, ids: np.ndarray, tile_size: int,
                  progress: Callable[[int, int], None]) -> Callable[[int], None]:
    """Turns refinement's "n more steps" into ``progress(done, total)`` over the whole image."""
    groups_coded = sum(len(np.unique(view.block_ids)) for view in tile_views(canvas, ids, tile_size))
    total, done = level.steps * groups_coded, 0

    def advance(steps: int) -> None:
        nonlocal done
        done += steps
        progress(done, total)
    return advance


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
                  perm_keys: dict[int, bytes], tile_size: int, effort: refine.Effort,
                  progress: Callable[[int], None]) -> list[Optional[bytes]]:
    """Each tile coded as an image of its own; a group's section joins its tiles' parts."""
    parts: list[list[bytes]] = [[] for _ in range(num_groups)]
    for view in tile_views(canvas, ids, tile_size):
        y0, x0 = view.origin
        rgb_tile = rgb[y0:y0 + view.canvas.height, x0:x0 + view.canvas.width]
        coded = _encode_sections(lm, rgb_tile, view.block_ids, view.canvas, quality, num_groups, perm_keys,
                                 view.tag, effort, progress)
        for g, section in enumerate(coded):
            if section is not None:
                parts[g].append(section)
    if not tile_size:
        return [p[0] if p else None for p in parts]
    return [tiles.join_parts(p) if p else None for p in parts]


def _encode_sections(lm, rgb, ids, canvas: Canvas, quality: float, num_groups: int,
                     perm_keys: Optional[dict[int, bytes]] = None, tag: bytes = b"",
                     effort: refine.Effort = refine.EFFORT_LEVELS[0],
                     progress: Callable[[int], None] = lambda steps: None) -> list[Optional[bytes]]:
    """One section per group of one tile, each coded by the model on the crop its decoder will
    use; groups in ``perm_keys`` are coded scrambled under their key (streams named with
    ``tag``); an ``effort`` with steps refines the latents first."""
    model = lm.model
    x = _pad_image(rgb, canvas, ids.shape)
    analysis = model.analyse(x, canvas.block_keys(ids), canvas.block_size)
    gains = model.fixed_gains(quality)
    sections: list[Optional[bytes]] = []
    for g in range(num_groups):
        if not (ids == g).any():
            sections.append(None)
            continue
        box16 = tuple(v // 16 for v in canvas.group_crop(ids, g))
        y, z, in_g = model.group_latents(analysis, g, box16)
        z_int = model.quantize_hyper(z, in_g)
        y_s = y * gains.real()
        if effort.steps:
            y_s, z_int = _refined(lm, x, ids, canvas, g, y_s, z, quality, gains, effort, rgb.shape[:2], progress)
        perm_key = (perm_keys or {}).get(g)
        order = crypto.KeyedOrder(perm_key, tag) if perm_key is not None else None
        sections.append(model.compress_group(y_s, z_int, in_g, gains, order))
    return sections


def _refined(lm, x, ids, canvas: Canvas, g: int, y_crop, z, quality: float, gains: em.FixedGains,
             effort: refine.Effort, image_size: tuple[int, int],
             progress: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """The group's (y_s, ẑ − median) after ``refine`` on the crop its decoder will use."""
    b = canvas.block_size
    y0, x0, y1, x1 = canvas.group_crop(ids, g)
    keys = canvas.block_keys(ids, only=g)[:, y0 // b:y1 // b, x0 // b:x1 // b]
    rows = torch.arange(y0, y1)[:, None] < image_size[0]
    cols = torch.arange(x0, x1)[None, :] < image_size[1]
    shown = (keys_at_scale(keys, b, 1) == 0) & rows & cols
    target = refine.GroupTarget(x[:, y0:y1, x0:x1], keys, b, shown, quality, gains.real())
    with torch.enable_grad():
        return refine.refine_group(lm.model, target, y_crop, z, effort, progress=progress)


# ----- decode ----------------------------------------------------------------------------------
@dataclass
class DecodeResult:
    image: Image.Image
    decoded: list[str]
    lost: list[str] = field(default_factory=list)        # damaged sections
    unavailable: list[str] = field(default_factory=list)  # asked for by name but absent, or sealed
    scrambled: list[str] = field(default_factory=list)    # decoded, but no key unscrambled them
    absent: list[str] = field(default_factory=list)       # not carried by this file, not asked for

    @property
    def complete(self) -> bool:
        """Every wanted group that the file carries was shown as it was encoded."""
        return not (self.lost or self.unavailable or self.scrambled)


def decode(data, groups: Optional[list[str]] = None, *, background: str = "transparent",
           weights=None, keys: Optional[list[crypto.KeyMaterial]] = None,
           warn: Callable[[str], None] = lambda msg: None, max_pixels: Optional[int] = None) -> DecodeResult:
    """Decode the named groups (all that the file carries when None) of ``data``: .ssb bytes, a
    parsed ``SsbFile``, a path, an http(s) URL (only the wanted sections are fetched) or a
    seekable binary file. Undecoded pixels are transparent (RGBA) or filled with
    ``background``; a decode of every group gives RGB (or L for grayscale sources).

    ``keys`` are tried on sealed and scrambled groups: a group opens with the key that protected
    it. A sealed group no key opens is left empty (``unavailable``); a scrambled one is decoded
    as it is, scrambled (``scrambled``)."""
    ssb = data if isinstance(data, container.SsbFile) else container.read_ssb(data)
    hdr = ssb.header
    check_pixel_budget(hdr.width, hdr.height, max_pixels, hdr.tile_size)
    if background not in BACKGROUNDS:
        raise SsicError(f"background must be one of {', '.join(BACKGROUNDS)}")
    wanted = container.select_groups(hdr, groups)
    lm = _matching_weights(hdr, weights)
    ssb.prefetch(wanted)
    canvas = model_canvas(lm, hdr.width, hdr.height, hdr.block_size)
    hc, wc = canvas.size
    pixels = np.zeros((hc, wc, 3), np.uint8)
    alpha = np.zeros((hc, wc), bool)
    result = DecodeResult(None, [])
    gains = lm.model.fixed_gains(hdr.quality)
    keyring = crypto.Keyring(keys or [])
    for g in wanted:
        name = hdr.groups[g].name
        if not hdr.groups[g].flags & container.FLAG_PRESENT:
            # A file from ``extract`` carries only some groups: the others are not wanted unless
            # the caller named them.
            if groups is None:
                result.absent.append(name)
            else:
                result.unavailable.append(name)
                warn(f"group {name!r} is not in this file (extracted away); left empty")
            continue
        try:
            if not (hdr.block_ids == g).any():           # a forged mask: nothing to draw it on
                raise FormatError("the block mask gives it no blocks")
            opened = crypto.open_section(hdr, g, ssb.section(g), keyring)
            with torch.inference_mode():     # every tile part first: a group is whole or lost
                pieces = [piece for view, part in _group_parts(hdr, canvas, g, opened.data)
                          for piece in _decode_group(lm, view, g, part, gains, opened.scrambled, opened.perm_key)]
        except crypto.KeyRequiredError as exc:
            result.unavailable.append(name)
            warn(f"{exc}; left empty")
            continue
        except crypto.WrongKeyError as exc:
            result.unavailable.append(name)
            warn(f"{exc}{_tried(keyring, 'opens')}; left empty")
            continue
        except crypto.KdfBudgetError as exc:
            result.unavailable.append(name)
            warn(f"group {name!r}: {exc}; left empty")
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
        for crop, (y0, x0, y1, x1), owned in pieces:
            pixels[y0:y1, x0:x1][owned] = crop[owned]
            alpha[y0:y1, x0:x1] |= owned
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
        except (crypto.KeyRequiredError, crypto.WrongKeyError, crypto.KdfBudgetError):
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


def _matching_weights(hdr: container.SsbHeader, weights) -> LoadedModel:
    lm = load_weights(weights_for_file(hdr.model_id, hdr.weights_hash, weights))
    if hdr.model_id != lm.model_id or hdr.weights_hash != lm.weights_hash:
        raise WeightsMismatchError(
            f"file was made with weights {hdr.model_id}/{hdr.weights_hash.hex()[:8]}, loaded "
            f"{lm.model_id}/{lm.weights_hash.hex()[:8]} ({lm.path.name}); pass the matching --weights")
    return lm


def _decode_group(lm: LoadedModel, view: TileView, g: int, section: bytes,
                  gains: em.FixedGains, scrambled: bool = False, perm_key: Optional[bytes] = None):
    """The group's pixels in one tile, as pieces (crop (h, w, 3) uint8, its box in canvas
    pixels, the (h, w) pixels it owns): one per connected part of the group. A scrambled
    section decodes in shuffled order unless ``perm_key`` is given.

    The entropy decode runs once on the crop of the whole group (at 1/16, cheap); the pixel path
    runs on each part's own crop. Parts of one group never mix (every layer is position-wise or
    sees only 8-neighbours of its group), so each decodes as it would alone, and a group of two
    blocks in opposite corners costs two blocks' work, not the whole canvas's."""
    q64, keys, (y0, x0, y1, x1) = _decode_group_latents(lm, view, g, section, gains, scrambled, perm_key)
    b, align = view.canvas.block_size, view.canvas.crop_align or view.canvas.align
    oy, ox = view.origin[0] + y0, view.origin[1] + x0
    pieces = []
    for part_keys, (py0, px0, py1, px1) in _parts(keys, b, align):
        inside = (keys_at_scale(part_keys, b, 16) == 0).unsqueeze(-1)
        crop = lm.model.reconstruct(q64[:, py0 // 16:py1 // 16, px0 // 16:px1 // 16] * inside, part_keys, b, gains)
        owned = (keys_at_scale(part_keys, b, 1)[0] == 0).numpy()
        pieces.append((crop.numpy(), (oy + py0, ox + px0, oy + py1, ox + px1), owned))
    return pieces


def _parts(keys: torch.Tensor, block_size: int, align: int) -> list[tuple[torch.Tensor, tuple[int, int, int, int]]]:
    """The 8-connected parts of a group on its crop (block keys (1, R, C), 0 = the group): each
    part's block keys (0 on its blocks only) on its own crop, and that crop (y0, x0, y1, x1) in
    pixels of the group's crop, on the ``align`` grid. One part: the whole crop, as it is."""
    import cv2
    mine = (keys[0] == 0).numpy().astype(np.uint8)
    count, labels = cv2.connectedComponents(mine, connectivity=8)
    if count <= 2:                                   # background label + one part
        return [(keys, (0, 0, keys.shape[1] * block_size, keys.shape[2] * block_size))]
    height, width = keys.shape[1] * block_size, keys.shape[2] * block_size
    parts = []
    for label in range(1, count):
        rows, cols = np.nonzero(labels == label)
        y0, x0 = rows.min() * block_size // align * align, cols.min() * block_size // align * align
        y1 = min(-(-(rows.max() + 1) * block_size // align) * align, height)
        x1 = min(-(-(cols.max() + 1) * block_size // align) * align, width)
        sub = np.where(labels == label, 0, PAD_KEY)[y0 // block_size:y1 // block_size, x0 // block_size:x1 // block_size]
        parts.append((torch.from_numpy(sub.astype(np.int64))[None], (int(y0), int(x0), int(y1), int(x1))))
    return parts


def _decode_group_latents(lm: LoadedModel, view: TileView, g: int, section: bytes,
                          gains: em.FixedGains, scrambled: bool = False, perm_key: Optional[bytes] = None):
    """ŷ_s of the group's crop in one tile (1, h/16, w/16, M) int64 in units of 1/64 step, its
    block keys and its crop box in the tile. Raises ``UndecodableError`` when an intact section
    (part) does not decode."""
    canvas, ids = view.canvas, view.block_ids
    b = canvas.block_size
    y0, x0, y1, x1 = canvas.group_crop(ids, g)
    keys = canvas.block_keys(ids, only=g)[:, y0 // b:y1 // b, x0 // b:x1 // b]
    in_g = keys_at_scale(keys, b, 16) == 0
    order = crypto.KeyedOrder(perm_key, view.tag) if perm_key is not None else None
    q64 = lm.model.decompress_group(section, in_g, gains, scrambled=scrambled, order=order)
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
