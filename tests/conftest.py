"""Shared fixtures: the shipped weights, small real-image crops, multi-group masks."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssic_cli.mask import GroupMask, grid_shape

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# Optional extras: tests that need one skip, with the command that installs it, when it is absent.
HAS_CRYPTO = _importable("cryptography")
CRYPTO_MISSING = "sealing and scrambling need the crypto extra: pip install 'ssic[crypto]'"
needs_crypto = pytest.mark.skipif(not HAS_CRYPTO, reason=CRYPTO_MISSING)


def require_crypto() -> None:
    """Skip the calling test (or fixture) where the crypto extra is not installed."""
    if not HAS_CRYPTO:
        pytest.skip(CRYPTO_MISSING)
SHARED = Path(os.environ.get("SSIC_SHARED", ROOT.parent / "shared"))

torch.set_flush_denormal(True)


@pytest.fixture(scope="session")
def kodak() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))


@pytest.fixture(scope="session")
def loaded():
    from ssic_cli.weights import load_weights
    return load_weights()


def crop(img: np.ndarray, h: int, w: int, y: int = 0, x: int = 0) -> np.ndarray:
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def three_groups(width: int, height: int, block: int = 32) -> GroupMask:
    """background + an irregular 'person' + a 'car' in the bottom-left corner."""
    rows, cols = grid_shape(width, height, block)
    ids = np.zeros((rows, cols), np.uint8)
    ids[rows // 4: rows // 2 + 1, cols // 3: cols // 3 + 2] = 1
    ids[rows // 2, cols // 3 + 2] = 1                       # irregular: an extra block
    ids[rows - 1:, : max(1, cols // 4)] = 2
    return GroupMask(block, ids, ["background", "person", "car"], ["background", "person", "car"])


def block_pixels(gm: GroupMask, width: int, height: int) -> np.ndarray:
    """Group index per pixel (H, W)."""
    return gm.pixel_ids(width, height)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny images: one torch thread is faster, and fair to whatever else runs on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_kdf(monkeypatch):
    """scrypt at N=2^10 (1 MiB) instead of 2^15: the suite stays fast; the format is the same."""
    from ssic_cli import crypto
    monkeypatch.setattr(crypto, "DEFAULT_KDF", crypto.FAST_KDF)
