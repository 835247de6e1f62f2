"""Finding, loading, hashing and exporting model weights.

A weights file is ``<model id>-<sha256[:8]>.pt`` (its *weights id* plus ``.pt``) holding
``{"model_id", "config", "state_dict", "card"}``. The container stores the model id and the
first 16 bytes of the file's SHA-256, and decoding refuses a file made with other weights.

Released weights are listed in ``weights_data/manifest.json`` (package data): id -> SHA-256,
model, a short card, and where the file is: ``"package"`` (shipped in ``weights_data/``, as the
default is) or, for a retired set, the release source tree that holds it. A release edits that
data (the file plus one entry, and ``"default"``), never this module. Retired weights are not
installed, but their model configs stay in the code: a file made with them decodes once the user
supplies them (``--weights``, ``$SSIC_WEIGHTS``, or the file dropped into a weights folder).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import os
import re
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import write_bytes
from .errors import SsicError, WeightsMissingError
from .model import MODEL_CONFIGS, SSICModel
from .model.ssic import config_dict

WEIGHTS_ENV = "SSIC_WEIGHTS"
PACKAGE_DIR = Path(__file__).resolve().parent / "weights_data"   # the weights inside the package (wheel)
MANIFEST = PACKAGE_DIR / "manifest.json"
HASH_BYTES = 16


def user_weights_dir() -> Path:
    """Where a user drops weights this install lacks (retired ones): ``$XDG_DATA_HOME/ssic/weights``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ssic" / "weights"


def weights_dirs() -> list[Path]:
    """Folders searched for the weights a file names: the package's, the user's, and in a source
    checkout its top-level ``weights/`` (where ``git show v0.5.0:weights/<id>.pt`` can put one)."""
    dirs = [PACKAGE_DIR, user_weights_dir()]
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        dirs.append(checkout / "weights")
    return dirs


@functools.cache
def manifest() -> dict:
    """The released weights: ``{"format", "default": id, "weights": {id: entry}}``."""
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, ValueError) as exc:
        raise SsicError(f"the weights manifest {MANIFEST} is missing or unreadable ({exc.__class__.__name__}); "
                        f"reinstall ssic") from None


def default_weights_id() -> str:
    """The weights ``ssic encode`` uses (the manifest's ``default``)."""
    return manifest()["default"]


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


def weights_id(model_id: str, weights_hash: bytes) -> str:
    return f"{model_id}-{weights_hash.hex()[:8]}"


def default_weights_path() -> Path:
    """The weights to encode with: ``$SSIC_WEIGHTS`` if set, else the shipped default."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    path = PACKAGE_DIR / f"{default_weights_id()}.pt"
    if not path.is_file():
        raise SsicError(f"shipped weights {path} are missing; pass --weights or set {WEIGHTS_ENV}")
    return path


# What a model id may look like ("ssic-convhaar"): one plain file-name part.
_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9_.+-]{0,47}", re.IGNORECASE)


def find_weights(wid: str) -> "Path | None":
    """The installed (or user-supplied) file of weights ``wid``, if any weights folder holds it."""
    for folder in weights_dirs():
        path = folder / f"{wid}.pt"
        if path.is_file():
            return path
    return None


def weights_for_file(model_id: str, weights_hash: bytes, chosen=None) -> "Path | LoadedModel | None":
    """The weights to decode a file with: those the caller chose (argument or ``$SSIC_WEIGHTS``;
    ``None`` means the latter, which the caller's hash check then holds to the file), else the
    weights the file names from a weights folder. Raises ``WeightsMissingError`` (one line naming
    the weights and where to get them) when no folder holds them."""
    if chosen is not None or os.environ.get(WEIGHTS_ENV):
        return chosen
    if not _MODEL_ID.fullmatch(model_id):
        # The id is joined into paths below: an id such as "../../x" must not reach a folder
        # outside the weights folders, nor tell whoever forged it whether a file exists there.
        raise WeightsMissingError(f"file names weights {model_id!r}, which is not a name ssic gives weights")
    wid = weights_id(model_id, weights_hash)
    found = find_weights(wid)
    if found is not None:
        return found
    raise WeightsMissingError(missing_weights_message(wid))


def missing_weights_message(wid: str) -> str:
    entry = manifest()["weights"].get(wid)
    if entry is None:
        where = "they are not weights ssic released: ask whoever made the file for them"
    elif entry["source"] == "package":
        where = "they should ship with ssic: reinstall it"
    else:
        where = f"retired weights: get them from the {entry['source']}"
    return (f"file was made with weights {wid}, which this install lacks ({where}); pass them with --weights FILE, "
            f"set ${WEIGHTS_ENV}, or put {wid}.pt in {user_weights_dir()}")


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
    buffer = io.BytesIO()                 # the name is the content's hash: serialise first
    torch.save(blob, buffer)
    data = buffer.getvalue()
    final = out_dir / f"{model_id}-{hashlib.sha256(data).hexdigest()[:8]}.pt"
    write_bytes(final, data)
    return final


def _storage_dtype(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Transform weights are stored as float16 (half the file; loading widens them exactly, so
    encoder and decoder still see identical fp32 weights). Entropy tables and gains stay fp32."""
    if tensor.is_floating_point() and not name.startswith("entropy_bottleneck") and name != "log_gains":
        return tensor.half()
    return tensor


def export_from_checkpoint(checkpoint: Path, out_dir: Path, average: bool = False) -> Path:
    """Freeze a training checkpoint (``last.pt``) into a shippable weights file with a card;
    ``average``: its exponential moving average of the weights instead of the trunk's own."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise SsicError(f"no checkpoint at {checkpoint}") from None
    model = SSICModel(MODEL_CONFIGS[state["model_id"]])
    weights = state["model"]
    if average:
        if "ema" not in state:
            raise SsicError(f"{checkpoint} holds no weight average (trained with --ema-decay 0, or before 0.7)")
        weights = {**weights, **state["ema"]}
    model.load_state_dict(weights)
    card = {
        "model_id": state["model_id"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": state["step"],
        "images_seen": state["images_seen"],
        "cpu_hours": round(state["cpu_seconds"] / 3600, 2),
        "training_options": state.get("options", {}),
        **({"weight_average": f"exponential, decay {state.get('ema_decay')} per step"} if average else {}),
    }
    return export_weights(model.eval(), state["model_id"], Path(out_dir), card)
