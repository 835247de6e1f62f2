"""Finding, loading, hashing and exporting model weights.

A weights file is ``weights/<model id>-<sha256[:8]>.pt`` holding ``{"model_id", "config",
"state_dict", "card"}``. The container stores the model id and the first 16 bytes of the
file's SHA-256, and decoding refuses a file made with other weights.

``weights/`` keeps every generation that has shipped: encoding uses ``DEFAULT_WEIGHTS``, and
decoding, unless told otherwise, loads the weights the file names, so files made by an earlier
release still decode after the default moves on.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import SsicError
from .model import MODEL_CONFIGS, SSICModel
from .model.ssic import config_dict

WEIGHTS_ENV = "SSIC_WEIGHTS"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "weights"
HASH_BYTES = 16
# What ``ssic encode`` uses. Older shipped weights stay beside it so their files keep decoding.
DEFAULT_WEIGHTS = "ssic-convhaar-783eaa21.pt"


@dataclass
class LoadedModel:
    model: SSICModel
    model_id: str
    weights_hash: bytes           # first HASH_BYTES of the file's SHA-256
    path: Path
    card: dict


def file_hash(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def default_weights_path() -> Path:
    """The weights to encode with: ``$SSIC_WEIGHTS`` if set, else the shipped default."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    path = DEFAULT_DIR / DEFAULT_WEIGHTS
    if not path.is_file():
        raise SsicError(f"shipped weights {path} are missing; pass --weights or set {WEIGHTS_ENV}")
    return path


def weights_for_file(model_id: str, weights_hash: bytes, chosen=None) -> "Path | LoadedModel | None":
    """The weights to decode a file with: those the caller chose (argument or ``$SSIC_WEIGHTS``),
    else the shipped weights the file names if this install has them, else the default (which
    the caller's hash check then refuses with a message naming both)."""
    if chosen is not None or os.environ.get(WEIGHTS_ENV):
        return chosen
    named = DEFAULT_DIR / f"{model_id}-{weights_hash.hex()[:8]}.pt"
    return named if named.is_file() else None


_CACHE: dict[Path, LoadedModel] = {}


def read_weights_file(path: Path) -> dict:
    """The stored ``{"model_id", "config", "state_dict", "card"}`` of a weights file, unchecked
    beyond its shape: the full training state (the z prior's density included), fp16 transforms."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SsicError(f"weights file not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError):
        raise SsicError(f"cannot load weights {path}: not a readable weights file (empty, truncated or "
                        f"another format)") from None
    except OSError as exc:
        raise SsicError(f"cannot load weights {path}: {_first_line(exc)}") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict) or blob.get("model_id") not in MODEL_CONFIGS:
        raise SsicError(f"cannot load weights {path}: not an ssic weights file (or a model this version lacks)")
    return blob


def _first_line(exc: Exception) -> str:
    """torch's loader errors run to several lines of advice; an error here is one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_weights(path: "Path | LoadedModel | None" = None) -> LoadedModel:
    """Load (and cache) a weights file, ready for inference (a ``LoadedModel`` passes through)."""
    if isinstance(path, LoadedModel):
        return path
    path = Path(path) if path else default_weights_path()
    key = path.resolve()
    if key in _CACHE:
        return _CACHE[key]
    blob = read_weights_file(path)
    model_id = blob["model_id"]
    try:
        model = SSICModel(MODEL_CONFIGS[model_id], coding_only=True)
        state = blob["state_dict"]
        model.entropy_bottleneck.fit_tables(state, "entropy_bottleneck.")
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise KeyError(f"missing {', '.join(missing[:3])}")
        # The density model's own parameters (matrices …) are for training only.
        model.load_state_dict({k: v for k, v in state.items() if k in own})
    except (KeyError, RuntimeError, ValueError) as exc:
        raise SsicError(f"cannot load weights {path}: {_first_line(exc)}") from None
    model.eval()
    card = dict(blob.get("card", {}))
    sidecar = path.with_suffix(".json")            # measured figures, written after export
    if sidecar.exists():
        card.update(json.loads(sidecar.read_text()))
    loaded = LoadedModel(model, model_id, file_hash(path)[:HASH_BYTES], path, card)
    _CACHE[key] = loaded
    return loaded


def freeze(model: SSICModel, model_id: str, tag: bytes = b"in-memory") -> LoadedModel:
    """An inference copy of a model being trained (for evaluation with real bitstreams)."""
    frozen = copy.deepcopy(model).eval()
    frozen.entropy_bottleneck.update(force=True)
    digest = hashlib.sha256(tag).digest()[:HASH_BYTES]
    return LoadedModel(frozen, model_id, digest, Path("<memory>"), {})


def export_weights(model: SSICModel, model_id: str, out_dir: Path, card: dict) -> Path:
    """Freeze the entropy-bottleneck tables and write ``<model id>-<hash8>.pt``; returns the path."""
    model.entropy_bottleneck.update(force=True)
    blob = {"model_id": model_id, "config": config_dict(model.config),
            "state_dict": {k: _storage_dtype(k, v.detach().cpu()) for k, v in model.state_dict().items()},
            "card": card}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{model_id}.tmp"
    torch.save(blob, tmp)
    digest = file_hash(tmp).hex()[:8]
    final = out_dir / f"{model_id}-{digest}.pt"
    os.replace(tmp, final)
    return final


def _storage_dtype(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Transform weights are stored as float16 (half the file; loading widens them exactly, so
    encoder and decoder still see identical fp32 weights). Entropy tables and gains stay fp32."""
    if tensor.is_floating_point() and not name.startswith("entropy_bottleneck") and name != "log_gains":
        return tensor.half()
    return tensor


def export_from_checkpoint(checkpoint: Path, out_dir: Path) -> Path:
    """Freeze a training checkpoint (``last.pt``) into a shippable weights file with a card."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise SsicError(f"no checkpoint at {checkpoint}") from None
    model = SSICModel(MODEL_CONFIGS[state["model_id"]])
    model.load_state_dict(state["model"])
    card = {
        "model_id": state["model_id"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": state["step"],
        "images_seen": state["images_seen"],
        "cpu_hours": round(state["cpu_seconds"] / 3600, 2),
        "training_options": state.get("options", {}),
    }
    return export_weights(model.eval(), state["model_id"], Path(out_dir), card)
