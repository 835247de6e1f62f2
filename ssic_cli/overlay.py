"""A picture of a group mask: the photo, each group tinted and named, and the block grid.

``ssic mask photo.jpg -o overlay.png`` writes ``render_overlay(rgb, group_mask)``.
"""
from __future__ import annotations

import colorsys

import numpy as np

from .errors import SsicError
from .mask import BACKGROUND, GroupMask

TINT = 0.45            # weight of a group's colour over the photo
GRID_RGBA = (255, 255, 255, 70)


def group_colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct saturated colours (golden-ratio hue steps, so neighbours differ most)."""
    out = []
    for i in range(n):
        h = (0.02 + i * 0.618033988749895) % 1.0
        s, v = (0.85, 0.95) if i % 2 == 0 else (0.65, 0.85)
        r, g, b = colorsys.hsv_to_rgb(h, s, v)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _label_block(ids: np.ndarray, g: int) -> tuple[int, int]:
    """(row, col) of the group's block nearest its centre of mass (a block the group owns)."""
    rows, cols = np.nonzero(ids == g)
    cy, cx = rows.mean(), cols.mean()
    k = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    return int(rows[k]), int(cols[k])


def render_overlay(image_rgb: np.ndarray, group_mask: GroupMask):
    """The image with each non-background group tinted in its own colour and outlined, every
    group's name written on one of its blocks, and the block grid drawn. Returns a PIL RGB image.
    """
    from PIL import Image, ImageDraw

    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise SsicError(f"expected an RGB uint8 image, got {img.dtype} array {img.shape}")
    h, w = img.shape[:2]
    b = group_mask.block_size
    ids = group_mask.ids
    rows, cols = ids.shape
    if rows != -(-h // b) or cols != -(-w // b):
        raise SsicError(f"group mask is {cols}x{rows} blocks of {b}; the image is {w}x{h}")

    colours = group_colours(group_mask.num_groups)
    pixel_ids = group_mask.pixel_ids(w, h)
    out = img.astype(np.float32)
    for g, name in enumerate(group_mask.names):
        if name == BACKGROUND:
            continue
        sel = pixel_ids == g
        out[sel] = (1 - TINT) * out[sel] + TINT * np.asarray(colours[g], np.float32)
    canvas = Image.fromarray(out.round().clip(0, 255).astype(np.uint8)).convert("RGBA")

    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for x in range(b, w, b):
        draw.line([(x, 0), (x, h - 1)], fill=GRID_RGBA, width=1)
    for y in range(b, h, b):
        draw.line([(0, y), (w - 1, y)], fill=GRID_RGBA, width=1)
    # Group outlines: block edges where the group changes.
    for g, name in enumerate(group_mask.names):
        if name == BACKGROUND:
            continue
        rgba = colours[g] + (255,)
        own = ids == g
        for r, c in zip(*np.nonzero(own)):
            x0, y0, x1, y1 = c * b, r * b, min((c + 1) * b, w) - 1, min((r + 1) * b, h) - 1
            if r == 0 or not own[r - 1, c]:
                draw.line([(x0, y0), (x1, y0)], fill=rgba, width=2)
            if r == rows - 1 or not own[r + 1, c]:
                draw.line([(x0, y1), (x1, y1)], fill=rgba, width=2)
            if c == 0 or not own[r, c - 1]:
                draw.line([(x0, y0), (x0, y1)], fill=rgba, width=2)
            if c == cols - 1 or not own[r, c + 1]:
                draw.line([(x1, y0), (x1, y1)], fill=rgba, width=2)

    font = _font(max(11, min(24, min(h, w) // 32)))
    for g, name in enumerate(group_mask.names):
        if not (ids == g).any():
            continue
        r, c = _label_block(ids, g)
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        tw, th = right - left + 6, bottom - top + 4
        x = int(min(max(0, c * b + (b - tw) // 2), max(0, w - tw)))
        y = int(min(max(0, r * b + (b - th) // 2), max(0, h - th)))
        fill = colours[g] if name != BACKGROUND else (40, 40, 40)
        draw.rectangle([x, y, x + tw, y + th], fill=fill + (200,))
        draw.text((x + 3 - left, y + 2 - top), name, font=font, fill=(255, 255, 255, 255))
    return Image.alpha_composite(canvas, layer).convert("RGB")
