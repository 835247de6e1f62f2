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
# ssic codes no alpha channel. What to do with an image that has transparent pixels: refuse it
# (the default: dropping alpha would show whatever colours the transparent pixels hold),
# flatten it onto white (what a viewer shows), or ignore alpha and code those colours too.
ALPHA_MODES = ("refuse", "flatten", "ignore")


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
    warning: str = ""        # what the user should hear (only the first frame of an animation)


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


def load_image(path: Path, max_pixels: int | None = None, alpha: str = "refuse") -> InputImage:
    """Open any Pillow-readable image (``-``: standard input), apply its EXIF orientation, and
    bring it to 8-bit RGB; transparent pixels as ``alpha`` says (``ALPHA_MODES``), and of an
    animation the first frame. ssic's pixel budget (``SSIC_MAX_PIXELS``) replaces Pillow's own
    decompression-bomb limit: the size is checked from the header, before any pixel is decoded."""
    bomb_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return _load_image(path, default_max_pixels() if max_pixels is None else max_pixels, alpha)
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit


def _load_image(path: Path, max_pixels: int, alpha: str) -> InputImage:
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
            return _from_image(im, alpha, str(path), ImageOps.exif_transpose(im))
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


def from_pil(im: Image.Image, alpha: str = "refuse") -> InputImage:
    """An in-memory Pillow image brought to 8-bit RGB by the rules ``load_image`` applies."""
    if not isinstance(im, Image.Image):
        raise SsicError(f"expected a PIL image, got {type(im).__name__}")
    if im.width == 0 or im.height == 0:
        raise SsicError("image has zero size")
    return _from_image(im, alpha)


def from_array(a: np.ndarray, alpha: str = "refuse") -> InputImage:
    """An (H, W) grey, (H, W, 1) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA
    array of uint8 values 0..255; alpha as in ``load_image``.

    Anything else is refused with one line rather than guessed at: a float array would be read
    as 0..255 and give an almost black image.

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
    if a.ndim != 3 or a.shape[2] not in (2, 3, 4):
        raise SsicError(f"image array must be (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or "
                        f"(H, W, 4) RGBA, got shape {a.shape}")
    if 0 in a.shape:
        raise SsicError("image has zero size")
    if a.shape[2] != 3:
        return _to_rgb(Image.fromarray(np.ascontiguousarray(a)), alpha)            # LA or RGBA
    return InputImage(np.ascontiguousarray(a), 3)


def _from_image(im: Image.Image, alpha: str, what: str = "image", frame: Image.Image | None = None) -> InputImage:
    """``_to_rgb`` of ``frame`` (default: ``im``'s current frame), with a warning when ``im``
    holds more frames than the one coded."""
    img = _to_rgb(im if frame is None else frame, alpha, what)
    if getattr(im, "is_animated", False):
        img.warning = f"{what}: animated image: only the first frame is coded"
    return img


def _to_rgb(im: Image.Image, alpha: str = "refuse", what: str = "image") -> InputImage:
    """8-bit RGB (grey sources repeated, ``channels`` 1) with transparency dealt with (``alpha``)."""
    im, note = _without_alpha(im, alpha, what)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.uint32)
        arr = (arr >> 8) if arr.max(initial=0) > 255 else arr
        gray = np.clip(arr, 0, 255).astype(np.uint8)
        return InputImage(np.repeat(gray[..., None], 3, axis=2), 1, "16-bit samples reduced to 8 bits")
    if im.mode == "F":
        gray = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return InputImage(np.repeat(gray[..., None], 3, axis=2), 1, "float samples clipped to 8 bits")
    if im.mode in ("1", "L") or (im.mode == "P" and _palette_is_gray(im)):
        gray = np.asarray(im.convert("L"))
        return InputImage(np.repeat(gray[..., None], 3, axis=2), 1, note)
    if im.mode.startswith("RGB") and im.mode != "RGB":
        note = f"{im.mode} samples reduced to 8-bit RGB"
    return InputImage(np.asarray(im.convert("RGB")).copy(), 3, note)


def _without_alpha(im: Image.Image, alpha: str, what: str) -> tuple[Image.Image, str]:
    """``im`` without alpha channel or transparent colour, as ``alpha`` says, and a note of what
    was done. A fully opaque alpha channel hides nothing: it is dropped whatever ``alpha`` says."""
    if alpha not in ALPHA_MODES:
        raise SsicError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    if not _has_alpha(im):
        return im, ""
    grey = im.mode in ("LA", "La", "L", "1") or (im.mode == "P" and _palette_is_gray(im))
    pixels = np.asarray(im.convert("LA" if grey else "RGBA"))
    colour, opacity = pixels[..., :-1], pixels[..., -1:]
    note = ""
    if opacity.min(initial=255) < 255:
        if alpha == "refuse":
            raise SsicError(f"{what} has transparent pixels and ssic codes no alpha channel: set alpha to "
                            "'flatten' (onto white) or 'ignore' (codes the hidden colours too), e.g. --alpha flatten")
        if alpha == "flatten":
            colour, note = _over_white(colour, opacity), "transparent pixels flattened onto white"
        else:
            note = "alpha channel discarded"
    return Image.fromarray(np.ascontiguousarray(colour[..., 0] if grey else colour)), note


def _has_alpha(im: Image.Image) -> bool:
    """An alpha channel, or a transparent colour (tRNS) in an 8-bit mode."""
    return im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        "transparency" in im.info and im.mode in ("1", "L", "P", "RGB"))


def _over_white(colour: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """uint8 ``colour`` composited over white, as a viewer shows it: what transparency hid stays hidden."""
    c, a = colour.astype(np.uint32), opacity.astype(np.uint32)
    return ((c * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


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
