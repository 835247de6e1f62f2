"""User-supplied regions: a PNG label map, a JSON list of boxes, or COCO annotations.

Each reader returns ``list[Region]`` for an image of ``width`` x ``height`` pixels and raises
``SsicError`` with a one-line message for anything malformed. Only Pillow and numpy are used.

- ``--mask labels.png``: one integer id per pixel (8/16-bit grey or palette PNG); id 0 is
  background unless the names file names it. Names: JSON ``{"1": "person", "2": "car"}`` or a
  text file of ``id name`` lines (lines starting with ``#`` are comments). Unnamed ids are called ``region<id>``.
  Ids given the same name become instances of one class (``person``, ``person#2``).
- ``--boxes boxes.json``: ``[{"label": "person", "box": [x0, y0, x1, y1], "score": 0.9}, …]``
  (pixels, half-open; ``score`` optional, default 1), or ``{"boxes": [...]}``.
- ``--coco instances.json``: COCO ``images`` / ``annotations`` / ``categories``; the image is
  picked by file name (or the only one). Polygons and RLE (compressed or not) become masks,
  annotations without a segmentation use their ``bbox``. ``iscrowd=1`` annotations are kept as
  one region of their class covering the whole crowd (so crowd pixels are not left in
  background; with instance grouping a crowd is one group).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import SsicError
from ..mask import BACKGROUND, check_group_name
from .base import Region

MAX_LABEL_IDS = 4096


def _read_json(path, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SsicError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SsicError(f"{what} {path} is not valid JSON: {exc}") from None


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


# ---------------------------------------------------------------------------- label map (PNG)

def read_names(path) -> dict[int, str]:
    """``{id: name}`` from a JSON object or from ``id name`` text lines."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SsicError(f"cannot read names file {path}: {exc}") from None
    names: dict[int, str] = {}
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
            items = [(int(k), str(v).strip()) for k, v in raw.items()]
        except (ValueError, TypeError, AttributeError) as exc:
            raise SsicError(f"names file {path} must map ids to names, e.g. {{\"1\": \"person\"}} ({exc})") from None
    else:
        items = []
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
                raise SsicError(f"{path}:{n}: expected 'id name', got {line!r}")
            items.append((int(parts[0]), parts[1].strip()))
    for i, name in items:
        if not name:
            raise SsicError(f"names file {path}: id {i} has an empty name")
        check_group_name(name, f"names file {path}: id {i}:")
        names[i] = name
    return names


def read_label_map(path) -> np.ndarray:
    """The PNG label map as an H x W integer array."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                ids = np.asarray(im if mode != "1" else im.convert("L"))
            elif mode in ("RGB", "RGBA", "LA"):
                a = np.asarray(im)
                if mode == "LA" or np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
                    ids = a[..., 0]
                else:
                    raise SsicError(f"label map {path} is a colour image; save it as 8/16-bit grey "
                                    "or palette PNG with one id per pixel")
            else:
                raise SsicError(f"label map {path} has unsupported mode {mode}")
    except OSError as exc:
        raise SsicError(f"cannot read label map {path}: {exc}") from None
    return np.asarray(ids).astype(np.int64)


def regions_from_label_map(path, names_path=None, width: int | None = None,
                           height: int | None = None) -> list[Region]:
    """One region (with mask) per id in the label map; id 0 is background unless named."""
    ids = read_label_map(path)
    if width is not None and height is not None and ids.shape != (height, width):
        raise SsicError(f"label map {path} is {ids.shape[1]}x{ids.shape[0]}, the image is {width}x{height}")
    names = read_names(names_path) if names_path is not None else {}
    present = np.unique(ids)
    if present.size > MAX_LABEL_IDS:
        raise SsicError(f"label map {path} has {present.size} distinct ids (at most {MAX_LABEL_IDS}); "
                        "is it a photo rather than a label map?")
    regions = []
    for i in present:
        i = int(i)
        name = names.get(i, BACKGROUND if i == 0 else f"region{i}")
        if name == BACKGROUND:
            continue
        mask = ids == i
        regions.append(Region(name, _mask_box(mask), 1.0, mask))
    return _number(regions)


def _number(regions: list[Region]) -> list[Region]:
    seen: dict[str, int] = {}
    for r in regions:
        seen[r.label] = seen.get(r.label, 0) + 1
        r.instance = seen[r.label]
    return regions


# ---------------------------------------------------------------------------- boxes (JSON)

def regions_from_boxes(path, width: int, height: int) -> list[Region]:
    """Regions from ``[{"label", "box": [x0, y0, x1, y1], "score"?}]`` (boxes clipped to the image)."""
    data = _read_json(path, "boxes file")
    if isinstance(data, dict) and "boxes" in data:
        data = data["boxes"]
    if not isinstance(data, list):
        raise SsicError(f"boxes file {path} must be a JSON list of {{\"label\", \"box\"}} objects")
    regions = []
    for n, item in enumerate(data):
        where = f"boxes file {path}, item {n}"
        if not isinstance(item, dict) or "label" not in item or "box" not in item:
            raise SsicError(f"{where}: needs \"label\" and \"box\": [x0, y0, x1, y1]")
        label, box = str(item["label"]).strip(), item["box"]
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
            score = float(item.get("score", 1.0))
        except (TypeError, ValueError):
            raise SsicError(f"{where}: box must be 4 numbers [x0, y0, x1, y1], score a number") from None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1, score)) or not label:
            raise SsicError(f"{where}: empty label or non-finite number")
        if x1 <= x0 or y1 <= y0:
            raise SsicError(f"{where}: box {box} is empty (need x0 < x1 and y0 < y1)")
        b = (max(0, math.floor(x0)), max(0, math.floor(y0)), min(width, math.ceil(x1)), min(height, math.ceil(y1)))
        if b[2] <= b[0] or b[3] <= b[1]:
            continue                                   # entirely outside the image
        regions.append(Region(label, b, score))
    return _number(regions)


# ---------------------------------------------------------------------------- COCO

def rle_counts_from_string(s: str) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools ``rleFrString``) to run lengths."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise SsicError("COCO RLE string is truncated")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(rle: dict, height: int, width: int) -> np.ndarray:
    """COCO RLE (``{"size": [h, w], "counts": list | str}``, column-major) -> bool H x W."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise SsicError("COCO RLE needs \"size\": [h, w] and \"counts\"") from None
    if (h, w) != (height, width):
        raise SsicError(f"COCO RLE is {w}x{h}, the image is {width}x{height}")
    if isinstance(counts, str):
        counts = rle_counts_from_string(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if (counts < 0).any() or counts.sum() != h * w:
        raise SsicError("COCO RLE counts do not add up to the image size")
    values = (np.arange(counts.size) % 2).astype(bool)
    return np.repeat(values, counts).reshape(w, h).T.copy()


def polygons_to_mask(polygons: list, height: int, width: int) -> np.ndarray:
    """COCO polygons ``[[x0, y0, x1, y1, …], …]`` -> bool H x W (boundary pixels included)."""
    from PIL import Image, ImageDraw
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        try:
            xy = [float(v) for v in poly]
        except (TypeError, ValueError):
            raise SsicError("COCO polygon must be a flat list of numbers") from None
        if len(xy) >= 6:
            draw.polygon(xy, fill=1, outline=1)
        elif len(xy) >= 2:   # degenerate polygon: keep its points
            draw.line(xy + xy[:2], fill=1)
    return np.asarray(canvas, dtype=bool)


def _pick_coco_image(data: dict, path, image_name, width, height) -> dict:
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise SsicError(f"{path} is not COCO annotations (no \"images\" list)")
    if image_name is None:
        if len(images) != 1:
            raise SsicError(f"{path} describes {len(images)} images; say which one (its file name)")
        return images[0]
    base = os.path.basename(str(image_name))
    hits = [im for im in images if os.path.basename(str(im.get("file_name", ""))) == base]
    if not hits:
        stem = os.path.splitext(base)[0]
        hits = [im for im in images if os.path.splitext(os.path.basename(str(im.get("file_name", ""))))[0] == stem]
    if not hits:
        raise SsicError(f"no image named {base!r} in {path}")
    im = hits[0]
    if (width is not None and height is not None
            and (int(im.get("width", width)), int(im.get("height", height))) != (width, height)):
        raise SsicError(f"{path} annotates {base} at {im.get('width')}x{im.get('height')}, "
                        f"the image is {width}x{height}")
    return im


def regions_from_coco(path, image_name=None, width: int | None = None, height: int | None = None,
                      *, include_crowd: bool = True, data: dict | None = None) -> list[Region]:
    """Regions (masks) for one image of a COCO annotation file; ``data`` skips re-reading it."""
    data = _read_json(path, "COCO file") if data is None else data
    im = _pick_coco_image(data, path, image_name, width, height)
    w, h = int(im.get("width", width or 0)), int(im.get("height", height or 0))
    if w <= 0 or h <= 0:
        raise SsicError(f"{path}: image {im.get('file_name')} has no size")
    cats = {c.get("id"): str(c.get("name")) for c in data.get("categories", []) if isinstance(c, dict)}
    anns = [a for a in data.get("annotations", []) if isinstance(a, dict) and a.get("image_id") == im.get("id")]
    anns.sort(key=lambda a: bool(a.get("iscrowd", 0)))           # crowds after single instances
    regions = []
    for a in anns:
        crowd = bool(a.get("iscrowd", 0))
        if crowd and not include_crowd:
            continue
        label = cats.get(a.get("category_id"), f"class{a.get('category_id')}")
        seg = a.get("segmentation")
        if isinstance(seg, dict):
            mask = rle_to_mask(seg, h, w)
        elif isinstance(seg, list) and seg:
            mask = polygons_to_mask(seg, h, w)
        else:
            mask = None
        if mask is not None and mask.any():
            box = _mask_box(mask)
        else:
            try:
                x, y, bw, bh = (float(v) for v in a["bbox"])
            except (KeyError, TypeError, ValueError):
                continue
            box = (max(0, math.floor(x)), max(0, math.floor(y)), min(w, math.ceil(x + bw)), min(h, math.ceil(y + bh)))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            mask = None
        regions.append(Region(label, box, float(a.get("score", 1.0)), mask))
    return _number(regions)


def coco_boxes_only(regions: list[Region]) -> list[Region]:
    """The same regions with masks dropped (the "GT boxes" variant of COCO ground truth)."""
    return [Region(r.label, r.box, r.score, None, r.instance) for r in regions]
