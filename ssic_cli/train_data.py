"""What a training step sees: random crops of a photo folder in the 8 symmetries of the square,
and random irregular group masks (paper §4.1) — shared by ``ssic train`` and the
benches that need the same masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import SsicError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


def list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SsicError(f"no images found under {folder}")
    return files


class CropSampler:
    """Random crops, flipped and turned by multiples of 90° (the 8 symmetries of the square), from
    a folder of images; small images are upscaled to fit."""

    def __init__(self, files: list[Path], crop: int, rng: np.random.Generator):
        self.files, self.crop, self.rng = files, crop, rng
        self.cache: dict[Path, np.ndarray] = {}

    def _load(self, path: Path) -> np.ndarray:
        img = self.cache.get(path)
        if img is None:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if min(im.size) < self.crop:
                    s = self.crop / min(im.size)
                    im = im.resize((max(self.crop, round(im.width * s)), max(self.crop, round(im.height * s))))
                img = np.asarray(im)
            if len(self.cache) < 4096:
                self.cache[path] = img
        return img

    def sample(self) -> np.ndarray:
        img = self._load(self.files[self.rng.integers(len(self.files))])
        y = self.rng.integers(img.shape[0] - self.crop + 1)
        x = self.rng.integers(img.shape[1] - self.crop + 1)
        out = img[y:y + self.crop, x:x + self.crop]
        if self.rng.random() < 0.5:
            out = out[:, ::-1]
        return np.rot90(out, int(self.rng.integers(4)))

    def batch(self, n: int) -> torch.Tensor:
        arr = np.stack([self.sample() for _ in range(n)]).astype(np.float32) / 255.0
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def random_group_blocks(rows: int, cols: int, rng: np.random.Generator, max_groups: int = 5) -> np.ndarray:
    """Irregular groups: seeds grown block by block (random flood fill), connected regions."""
    groups = int(rng.integers(2, max_groups + 1))
    ids = np.full((rows, cols), -1, np.int64)
    frontier = []
    for g in range(groups):
        r, c = int(rng.integers(rows)), int(rng.integers(cols))
        if ids[r, c] < 0:
            ids[r, c] = g
            frontier.append((r, c))
    while frontier:
        r, c = frontier.pop(int(rng.integers(len(frontier))))
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < rows and 0 <= cc < cols and ids[rr, cc] < 0:
                ids[rr, cc] = ids[r, c]
                frontier.append((rr, cc))
    _, ids = np.unique(ids, return_inverse=True)       # renumber 0..G-1
    return ids.reshape(rows, cols)


def random_masks(n: int, crop: int, rng: np.random.Generator, single_fraction: float) -> tuple[torch.Tensor, int]:
    """Block keys (n, crop/B, crop/B) and the block size B ∈ {16, 32} for one batch."""
    block = int(rng.choice([16, 32]))
    side = crop // block
    keys = np.zeros((n, side, side), np.int64)
    for i in range(n):
        if rng.random() >= single_fraction:
            keys[i] = random_group_blocks(side, side, rng)
    return torch.from_numpy(keys), block
