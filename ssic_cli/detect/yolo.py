"""``yolo``: Ultralytics YOLO, segmentation weights preferred (instance masks), detection accepted.

Weights come from ``weights=PATH`` (``--detector-weights``) or ``$SSIC_YOLO_WEIGHTS``; without either,
a few stock names (``yolov8n-seg.pt`` …) are looked for in the current directory, in ssic's cache
(``cache_dir()``: ``$SSIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/ssic`` or ``~/.cache/ssic``) and in
Ultralytics' weights directory. A bare name that is not found locally is downloaded by
Ultralytics into ssic's cache, once, but only when GitHub answers within ~2 s; offline, ssic
fails at once with ``DetectorUnavailable`` saying what to do. ssic never lets Ultralytics pip-install anything:
the runtime a weights format needs (``ai-edge-litert`` for ``.tflite``, ``onnxruntime`` for
``.onnx`` …) is checked first, and Ultralytics' auto-install is switched off.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np

from ..errors import DetectorUnavailable
from ._util import as_float, as_int, box_from_xyxy, check_image, has_module, number_instances
from .base import Region
from .registry import register_detector

ENV_WEIGHTS = "SSIC_YOLO_WEIGHTS"
OFFLINE_ENVS = ("SSIC_OFFLINE", "YOLO_OFFLINE")
DEFAULT_NAMES = ("yolov8n-seg.pt", "yolo11n-seg.pt", "yolov8n-seg_int8.tflite")
DOWNLOAD_NAME = "yolov8n-seg.pt"
HINT = f"set {ENV_WEIGHTS}=/path/to/yolov8n-seg.pt (or .tflite) or pass --detector-weights PATH"
RELEASES = "https://github.com/ultralytics/assets/releases"


def cache_dir() -> Path:
    """Where ssic keeps (and Ultralytics downloads) detector weights."""
    if os.environ.get("SSIC_CACHE_DIR"):
        return Path(os.environ["SSIC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ssic"


def how_to_get_weights() -> str:
    """One sentence saying how to make person groups possible on a machine without weights."""
    install = "" if has_module("ultralytics") else "pip install 'ssic[yolo]', then "
    return (f"{install}put {DOWNLOAD_NAME} (from {RELEASES}) in {cache_dir()}, or pass --detector-weights FILE "
            f"(or set {ENV_WEIGHTS}); or give the groups yourself with --mask, --boxes or --coco")

# weights format -> (module that must import, pip package): checked before Ultralytics loads it
_RUNTIMES = {
    ".tflite": ("ai_edge_litert", "ai-edge-litert"),
    ".onnx": ("onnxruntime", "onnxruntime"),
    ".pt": ("torch", "torch"),
    ".torchscript": ("torch", "torch"),
    "_openvino_model": ("openvino", "openvino"),
    "_ncnn_model": ("ncnn", "ncnn"),
    "_paddle_model": ("paddle", "paddlepaddle"),
    "_saved_model": ("tensorflow", "tensorflow"),
    ".pb": ("tensorflow", "tensorflow"),
    ".mlpackage": ("coremltools", "coremltools"),
    ".engine": ("tensorrt", "tensorrt"),
}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def network_reachable(timeout: float = 2.0, host: str = "github.com", port: int = 443) -> bool:
    """Whether Ultralytics could download weights: a TCP connect to GitHub within ``timeout``.

    Returns False at once when ``SSIC_OFFLINE`` or ``YOLO_OFFLINE`` is set. DNS and connect run
    in a daemon thread, so a stalled resolver cannot hold the caller longer than ``timeout``.
    """
    if any(_env_true(e) for e in OFFLINE_ENVS):
        return False
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result)


def _ultralytics_weights_dir() -> Path | None:
    """Ultralytics' ``weights_dir`` setting, read from its settings file without importing it."""
    base = os.environ.get("YOLO_CONFIG_DIR")
    root = Path(base) / "Ultralytics" if base else \
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "Ultralytics"
    try:
        d = json.loads((root / "settings.json").read_text()).get("weights_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(d) if d else None


def _is_bare_name(s: str) -> bool:
    return os.sep not in s and "/" not in s


def find_local_weights(weights: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """Weights usable without network: ``(path, where it came from)`` or ``(None, why not)``."""
    given = weights if weights not in (None, "") else os.environ.get(ENV_WEIGHTS) or None
    source = "--weights" if weights not in (None, "") else ENV_WEIGHTS
    if given is not None:
        p = Path(given).expanduser()
        if p.exists():
            return p, f"{source}={given}"
        if not _is_bare_name(str(given)):
            return None, f"YOLO weights not found: {given} ({source})"
        names = (str(given),)
    else:
        names = DEFAULT_NAMES
    dirs = [Path.cwd(), cache_dir()]
    wd = _ultralytics_weights_dir()
    if wd is not None:
        dirs.append(wd)
    for name in names:
        for d in dirs:
            if (d / name).exists():
                return d / name, f"found {d / name}"
    if given is not None:
        return None, f"YOLO weights {given!r} are not on this machine"
    return None, "no YOLO weights found"


def _runtime_for(path: str) -> tuple[str, str] | None:
    low = path.rstrip("/\\").lower()
    for suffix, runtime in _RUNTIMES.items():
        if low.endswith(suffix):
            return runtime
    return None


def check_runtime(path: str) -> tuple[bool, str]:
    """Whether the packages to run these weights are importable (never installs anything)."""
    if not has_module("ultralytics"):
        return False, "ultralytics is not installed: pip install ultralytics"
    runtime = _runtime_for(path)
    if runtime and not has_module(runtime[0]):
        return False, (f"{Path(path).name} needs {runtime[1]}, which is not installed: "
                       f"pip install {runtime[1]}")
    return True, ""


def resolve_weights(weights: str | os.PathLike | None = None, *, allow_download: bool = True,
                    timeout: float = 2.0) -> tuple[str, bool]:
    """``(weights to load, needs network)``, or ``DetectorUnavailable`` saying what to do.

    Local files win; a bare name not found locally (or none given: ``yolov8n-seg.pt``) is
    left to Ultralytics to download into ``cache_dir()`` (the path returned), but only when
    the network answers within ``timeout``.
    """
    path, why = find_local_weights(weights)
    if path is not None:
        return str(path), False
    given = weights if weights not in (None, "") else os.environ.get(ENV_WEIGHTS) or None
    if given is not None and not _is_bare_name(str(given)):
        raise DetectorUnavailable(f"{why}; {HINT}")
    name = str(given) if given is not None else DOWNLOAD_NAME
    if not allow_download:
        raise DetectorUnavailable(f"{why}; {HINT}")
    if not network_reachable(timeout):
        raise DetectorUnavailable(f"{why} and no network to download {name}; {HINT}")
    return str(cache_dir() / name), True


def check() -> tuple[bool, str]:
    """Cheap availability: local weights and the runtime they need (no download, no import)."""
    path, why = find_local_weights()
    if path is None:
        return False, f"{why}; {HINT}; with a network, the default detector downloads {DOWNLOAD_NAME} on first use"
    ok, reason = check_runtime(str(path))
    return (ok, reason) if not ok else (True, f"weights: {path}")


@contextlib.contextmanager
def _env(**values):
    """Set environment variables (unless the user set them) for the duration of the block."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if old[k] is None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)


def _import_ultralytics(offline: bool):
    """Import ultralytics quietly; offline, skip its import-time DNS probe; never auto-install."""
    settings = {"YOLO_VERBOSE": "false", "YOLO_AUTOINSTALL": "false"}
    if offline:
        settings["YOLO_OFFLINE"] = "1"
    try:
        with _env(**settings):
            import ultralytics
            from ultralytics.utils import checks
    except ImportError as exc:
        raise DetectorUnavailable(f"ultralytics cannot be imported ({exc}): pip install ultralytics") from None
    checks.AUTOINSTALL = False                # even if ultralytics was imported before us
    with contextlib.suppress(Exception):      # no usage telemetry from a codec
        from ultralytics.utils.events import events
        events.enabled = False
    return ultralytics


_MODELS: dict[tuple[str, int | None], object] = {}


def load_model(path: str, needs_network: bool = False, threads: int | None = None):
    """Load (and cache) an Ultralytics model; ``threads`` sets LiteRT/torch CPU threads."""
    key = (path, threads)
    if key in _MODELS:
        return _MODELS[key]
    ok, reason = check_runtime(path)
    if not ok:
        raise DetectorUnavailable(reason)
    ultralytics = _import_ultralytics(offline=not needs_network)
    if threads:
        with contextlib.suppress(ImportError):
            import ultralytics.nn.backends.litert as litert
            litert.NUM_THREADS = threads
        if path.lower().endswith((".pt", ".torchscript")):
            import torch
            torch.set_num_threads(threads)
    try:
        model = ultralytics.YOLO(path)
    except Exception as exc:   # corrupt file, failed download, unsupported format …
        raise DetectorUnavailable(f"cannot load YOLO weights {path}: {exc}; {HINT}") from None
    if model.task not in ("segment", "detect"):
        raise DetectorUnavailable(f"{path} is a {model.task!r} model; ssic needs segment or detect weights")
    _MODELS[key] = model
    return model


class YoloDetector:
    """Ultralytics YOLO: instance masks (segmentation weights) or boxes (detection weights)."""

    name = "yolo"

    def __init__(self, weights=None, conf=0.25, iou=0.7, imgsz=640, threads=None, max_det=300):
        self.conf = as_float("conf", conf, 0.0, 1.0)
        self.iou = as_float("iou", iou, 0.0, 1.0)
        self.imgsz = as_int("imgsz", imgsz, 32, 4096)
        self.max_det = as_int("max_det", max_det, 1, 10000)
        threads = None if threads in (None, "") else as_int("threads", threads, 1, 256)
        path, needs_network = resolve_weights(weights)
        self.weights = path
        self.model = load_model(path, needs_network, threads)
        self.task = self.model.task

    def detect(self, image: np.ndarray) -> list[Region]:
        image = check_image(image)
        h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])      # ultralytics takes numpy arrays as BGR
        r = self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, iou=self.iou,
                               max_det=self.max_det, retina_masks=True, verbose=False)[0]
        if r.boxes is None or len(r.boxes) == 0:
            return []
        xyxy = r.boxes.xyxy.cpu().numpy()
        cls = r.boxes.cls.cpu().numpy().astype(int)
        score = r.boxes.conf.cpu().numpy()
        masks = _masks_at(r.masks.data.cpu().numpy(), w, h) if r.masks is not None else None
        regions = []
        for i in np.argsort(-score, kind="stable"):
            mask = masks[i] if masks is not None and masks[i].any() else None   # empty mask: keep box
            box = box_from_xyxy(*xyxy[i], w, h)
            if mask is not None:   # the box must hold the mask (masks can bleed a pixel past it)
                ys, xs = np.nonzero(mask)
                box = (min(box[0], int(xs.min())), min(box[1], int(ys.min())),
                       max(box[2], int(xs.max()) + 1), max(box[3], int(ys.max()) + 1))
            regions.append(Region(str(r.names[int(cls[i])]), box, float(score[i]), mask))
        return number_instances(regions)


def _masks_at(data: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, H, W) bool masks at image resolution (retina masks normally are already)."""
    masks = data > 0.5
    if masks.shape[1:] == (height, width):
        return masks
    import cv2
    return np.stack([cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
                     for m in masks])


@register_detector("yolo", "Ultralytics YOLO instance segmentation (or detection); needs weights",
                   check=check)
def make_yolo(weights=None, conf=0.25, iou=0.7, imgsz=640, threads=None, max_det=300) -> YoloDetector:
    """Ultralytics YOLO instance segmentation (or detection); needs weights."""
    return YoloDetector(weights=weights, conf=conf, iou=iou, imgsz=imgsz, threads=threads, max_det=max_det)
