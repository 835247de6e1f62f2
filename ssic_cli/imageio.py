"""Reading input images and writing decoded ones, with the checks a codec front end needs."""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import write_atomic, write_bytes
from .errors import SsicError

# Images over 1.5 MP are coded in tiles, so codec memory no longer grows with the tile count
# (measured: 1.3 GB to encode or decode 24 MP); what grows are the whole-image buffers, ~20 bytes
# per pixel. Larger images are refused before anything is decoded.
DEFAULT_MAX_PIXELS = 100_000_000


def default_max_pixels() -> int:
    """The pixel budget: $SSIC_MAX_PIXELS, else 100 MP."""
    try:
        return int(os.environ.get("SSIC_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        raise SsicError("SSIC_MAX_PIXELS must be a whole number of pixels") from None


@dataclass
class InputImage:
    rgb: np.ndarray          # (H, W, 3) uint8
    channels: int            # 1 for grayscale sources (decoded back to grayscale), else 3
    note: str = ""           # what was done to the source (alpha dropped, 16 → 8 bit …)


STDIO = "-"          # as an input: standard input; as an output: standard output


def is_stdio(path) -> bool:
    return str(path) == STDIO


def read_stdin() -> bytes:
    """All of standard input (a pipe: the shell's ``cat x | ssic … -``)."""
    return sys.stdin.buffer.read()


def write_stdout(data: bytes) -> None:
    """Write finished output to standard output; never binary to a terminal."""
    out = sys.stdout
    if out is None or getattr(out, "buffer", None) is None or out.closed:
        raise SsicError("standard output is closed; give -o FILE")
    if out.isatty():
        raise SsicError("refusing to write binary data to a terminal; redirect it (> file) or pipe it")
    try:
        out.buffer.write(data)
        out.buffer.flush()
    except (BrokenPipeError, ValueError, OSError) as exc:
        raise SsicError(f"cannot write to standard output ({exc.__class__.__name__})") from None


def load_image(path: Path, max_pixels: int | None = None) -> InputImage:
    """Open any Pillow-readable image (``-``: standard input), apply its EXIF orientation, and
    bring it to 8-bit RGB. ssic's pixel budget (``SSIC_MAX_PIXELS``) replaces Pillow's own
    decompression-bomb limit: the size is checked from the header, before any pixel is decoded."""
    bomb_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return _load_image(path, default_max_pixels() if max_pixels is None else max_pixels)
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit


def _load_image(path: Path, max_pixels: int) -> InputImage:
    if is_stdio(path):
        source, path = io.BytesIO(read_stdin()), Path("<stdin>")
    else:
        path = source = Path(path)
        if path.is_dir():
            raise SsicError(f"{path} is a directory, not an image")
    try:
        with Image.open(source) as im:
            if im.width * im.height > max_pixels:
                raise SsicError(f"{path}: image is {im.width}×{im.height}, over the limit of {max_pixels} pixels "
                                "(set SSIC_MAX_PIXELS to raise it)")
            if im.width == 0 or im.height == 0:
                raise SsicError(f"{path}: image has zero size")
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))
    except SsicError:
        raise
    except FileNotFoundError:
        raise SsicError(f"{path}: no such file") from None
    except PermissionError:
        raise SsicError(f"{path}: permission denied") from None
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise SsicError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    except ImportError:
        # ultralytics, once imported, patches Image.open to retry unknown files with an optional
        # HEIF plugin; when that plugin is absent the retry fails with ImportError.
        raise SsicError(f"{path}: not a readable image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise SsicError(f"{path}: cannot read image ({exc})") from None


def from_pil(im: Image.Image) -> InputImage:
    """An in-memory Pillow image brought to 8-bit RGB by the rules ``load_image`` applies."""
    if not isinstance(im, Image.Image):
        raise SsicError(f"expected a PIL image, got {type(im).__name__}")
    if im.width == 0 or im.height == 0:
        raise SsicError("image has zero size")
    return _to_rgb(im)


def from_array(a: np.ndarray) -> InputImage:
    """An (H, W) grey, (H, W, 1) grey or (H, W, 3) RGB array of uint8 values 0..255.

    Anything else is refused with one line rather than guessed at: a float array would be read
    as 0..255 and give an almost black image, and an alpha channel would reveal the pixels it
    hides.

    >>> from_array(np.zeros((2, 3), np.uint8)).channels
    1
    >>> from_array(np.zeros((2, 3, 3), np.float32))
    Traceback (most recent call last):
    ssic_cli.errors.SsicError: image array must hold uint8 values 0..255, got float32 (for floats in [0, 1]: (a * 255).round().astype(np.uint8))
    """
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise SsicError(f"image array must hold uint8 values 0..255, got {a.dtype}"
                        + (" (for floats in [0, 1]: (a * 255).round().astype(np.uint8))" if a.dtype.kind == "f" else ""))
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return InputImage(np.repeat(a[..., None], 3, axis=2), 1)
    if a.ndim != 3 or a.shape[2] != 3:
        hint = ": composite or drop the alpha channel first" if a.ndim == 3 and a.shape[2] in (2, 4) else ""
        raise SsicError(f"image array must be (H, W) grey or (H, W, 3) RGB, got shape {a.shape}{hint}")
    if 0 in a.shape:
        raise SsicError("image has zero size")
    return InputImage(np.ascontiguousarray(a), 3)


def _to_rgb(im: Image.Image) -> InputImage:
    note = ""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.uint32)
        arr = (arr >> 8) if arr.max(initial=0) > 255 else arr
        gray = np.clip(arr, 0, 255).astype(np.uint8)
        return InputImage(np.repeat(gray[..., None], 3, axis=2), 1, "16-bit samples reduced to 8 bits")
    if im.mode == "F":
        gray = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return InputImage(np.repeat(gray[..., None], 3, axis=2), 1, "float samples clipped to 8 bits")
    if im.mode in ("1", "L", "LA") or (im.mode == "P" and _palette_is_gray(im)):
        if "A" in im.mode or "transparency" in im.info:
            note = "alpha channel discarded"
        gray = np.asarray(im.convert("L"))
        return InputImage(np.repeat(gray[..., None], 3, axis=2), 1, note)
    if im.mode in ("RGBA", "PA") or "transparency" in im.info:
        note = "alpha channel discarded"
    elif im.mode.startswith("RGB") and im.mode != "RGB":
        note = f"{im.mode} samples reduced to 8-bit RGB"
    return InputImage(np.asarray(im.convert("RGB")).copy(), 3, note)


def _palette_is_gray(im: Image.Image) -> bool:
    pal = im.getpalette() or []
    triples = np.array(pal[: len(pal) // 3 * 3]).reshape(-1, 3)
    return bool(len(triples)) and bool((triples == triples[:, :1]).all())


def save_image(img: Image.Image, path: Path, fmt: str | None = None) -> None:
    """Write an image atomically, in the format named by ``fmt`` or the file extension
    (``-``: standard output, PNG unless ``fmt`` says otherwise)."""
    fmt = fmt or Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    if is_stdio(path):
        buf = io.BytesIO()
        img.save(buf, format=fmt)                  # whole image first: no partial output on failure
        write_stdout(buf.getvalue())
        return
    write_atomic(path, lambda f: img.save(f, format=fmt))


def write_bytes_atomic(data: bytes, path: Path) -> None:
    """Write bytes atomically to a file, or to standard output for ``-``."""
    if is_stdio(path):
        write_stdout(data)
        return
    write_bytes(path, data)
