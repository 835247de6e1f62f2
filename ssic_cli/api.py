"""The library's front: ``encode``, ``decode``, ``inspect``, ``extract`` (re-exported by ``ssic_cli``).

Everything heavy (torch, the model, detectors) is imported on first use, so ``import ssic_cli``
stays cheap for scripts that only inspect or extract files.

>>> import numpy as np
>>> import ssic_cli
>>> image = np.full((48, 64, 3), 120, np.uint8)
>>> data = ssic_cli.encode(image, quality=2)
>>> ssic_cli.inspect(data)["groups"][0]["name"]
'background'
>>> ssic_cli.decode(data).image.size
(64, 48)
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from .codec import DecodeResult
    from .crypto import KeyMaterial
    from .mask import GroupMask, GroupPolicy

Key = Union[bytes, str, "KeyMaterial"]          # raw key bytes (≥ 16), a passphrase, or KeyMaterial
Source = Union[bytes, str, os.PathLike]         # .ssb bytes, a path, or an http(s) URL


def encode(image: "Image.Image | np.ndarray", *, quality: float = 4.0,
           groups: "GroupMask | str | None" = None, policy: "GroupPolicy | None" = None,
           effort: int = 0, seal: Optional[Mapping[str, Key]] = None,
           scramble: Optional[Mapping[str, Key]] = None, weights: "str | os.PathLike | None" = None,
           tile_size: Optional[int] = None, alpha: str = "refuse",
           warn: Optional[Callable[[str], None]] = None) -> bytes:
    """Compress an image into ``.ssb`` bytes.

    ``image``: a PIL image (any mode; grey stays grey) or a uint8 array, (H, W) grey,
    (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA. ``alpha``: alpha is not coded, so an
    image with transparent pixels is refused (``"refuse"``), composited onto white
    (``"flatten"``) or coded with the colours its transparency hides (``"ignore"``); a fully
    opaque alpha channel is simply dropped. Of an animation the first frame is coded (``warn`` is
    told). ``quality``: 1 (smallest) .. 8 (best), fractions allowed. ``groups``: ``None``
    for one group (``background``) covering the image; ``"auto"`` for the CLI's default detector
    (YOLO where its weights are found or can be downloaded, else saliency); a detector name
    (``yolo``, ``saliency``, ``grid``, ``people``, ``faces``, …); or a ``GroupMask`` of your own
    (``ssic_cli.mask``). ``policy`` turns detector regions into groups (``mask.GroupPolicy``).
    ``effort``: encoder effort level 0–9 (0: plain; higher levels refine the latents longer for
    smaller files; same decoder; docs/effort.md). ``seal`` /
    ``scramble``: {group name or class: key} to encrypt or scramble those groups (see
    docs/SECURITY.md). ``warn`` receives notes (e.g. a name to seal that the image has no group
    for). Raises ``SsicError`` (one line) for bad input.
    """
    from . import codec
    from .imageio import from_array, from_pil
    img = from_array(image, alpha) if isinstance(image, np.ndarray) else from_pil(image, alpha)
    if img.warning and warn:
        warn(img.warning)
    mask = _group_mask(img.rgb, groups, policy, warn)
    return codec.encode(img.rgb, mask, quality, channels=img.channels, weights=weights,
                        seal=_keys_by_name(seal), scramble=_keys_by_name(scramble), tile_size=tile_size,
                        effort=effort, warn=warn or (lambda msg: None))


def decode(source: Source, *, groups: Optional[Sequence[str]] = None, keys: Sequence[Key] = (),
           background: str = "transparent", weights: "str | os.PathLike | None" = None,
           warn: Optional[Callable[[str], None]] = None) -> "DecodeResult":
    """Decode the named ``groups`` (default: every group the file carries) of ``source``.

    Returns a ``DecodeResult``: ``.image`` (a PIL image: RGB, or L for grey sources, when every
    group was shown; RGBA / LA with undecoded pixels transparent, or filled with ``background``
    — ``gray``, ``black``, ``white``), ``.decoded`` and the groups that could not be shown:
    ``.lost`` (damaged), ``.unavailable`` (sealed without a key, or named but absent),
    ``.scrambled`` (no key unscrambled them); ``.complete`` is True when none is missing.
    ``keys`` are tried on sealed and scrambled groups.
    """
    from . import codec
    return codec.decode(source, list(groups) if groups is not None else None, background=background,
                        weights=weights, keys=[_key(k) for k in keys], warn=warn or (lambda msg: None))


def inspect(source: Source) -> dict:
    """What a file holds, without decoding: size, quality, weights id, and per group its name,
    class, bounding box, bytes and flags (the JSON of ``ssic inspect --json``)."""
    from . import container
    return container.inspect(_read(source))


def extract(source: Source, groups: Sequence[str]) -> bytes:
    """A smaller valid ``.ssb`` holding only ``groups`` (selective transmission); its groups
    decode to exactly the pixels they decode to in the full file."""
    from . import container
    return container.extract(_read(source), list(groups))


def _read(source: Source):
    from . import container
    return source if isinstance(source, container.SsbFile) else container.read_ssb(source)


def _group_mask(rgb: np.ndarray, groups, policy, warn) -> "GroupMask":
    from .mask import GroupMask, single_group
    if isinstance(groups, GroupMask):
        return groups
    h, w = rgb.shape[:2]
    if groups is None:
        return single_group(w, h) if policy is None else single_group(w, h, policy.block_size)
    if not isinstance(groups, str):
        raise TypeError(f"groups must be None, a detector name or a GroupMask, got {type(groups).__name__}")
    from .detect import RegionSources, build_group_mask
    sources = RegionSources(detector=None if groups == "auto" else groups)
    return build_group_mask(rgb, sources, policy, log=warn)


def _key(key: Key) -> "KeyMaterial":
    from .crypto import KeyMaterial, key_from_bytes, key_from_passphrase
    if isinstance(key, KeyMaterial):
        return key
    if isinstance(key, str):
        return key_from_passphrase(key)
    return key_from_bytes(key)


def _keys_by_name(keys: Optional[Mapping[str, Key]]) -> Optional[dict]:
    return None if keys is None else {name: _key(k) for name, k in keys.items()}
