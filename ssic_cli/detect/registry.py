"""Detector registry: a dict and a decorator (like ``compressai.registry`` / timm's ``_registry``).

Built-in detectors register themselves when their module is imported; this module imports them
lazily, and their factories import the heavy packages (ultralytics, OpenCV) only when called,
so ``import ssic_cli`` and ``ssic --help`` stay fast and offline.

Third-party detectors
---------------------
A package adds a detector through the entry-point group ``ssic.detectors``::

    [project.entry-points."ssic.detectors"]
    mydet = "my_pkg.ssic_plugin:make_detector"

The entry point's name is the detector name; the object it points to is a factory
``make_detector(**options) -> Detector`` (an object with ``name`` and
``detect(rgb) -> list[Region]``). Optional attributes on the factory: ``description`` (one
line) and ``check() -> (available: bool, reason: str)``. Alternatively the module may call
``register_detector`` itself on import. Built-in names win over entry points of the same name.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import DetectorUnavailable, SsicError
from .base import Detector

ENTRY_POINT_GROUP = "ssic.detectors"
_BUILTIN_MODULES = ("yolo", "saliency", "people", "faces", "grid")

Check = Callable[[], "tuple[bool, str]"]


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    description: str
    available: bool
    reason: str = ""          # why it is (un)available, e.g. "weights: /path" or "pip install …"


@dataclass
class _Entry:
    factory: Callable[..., Detector]
    description: str
    check: Optional[Check] = None


_REGISTRY: dict[str, _Entry] = {}
_loaded = {"builtins": False, "entry_points": False}
_entry_point_errors: dict[str, str] = {}


def register_detector(name: str, description: str = "", *, check: Optional[Check] = None):
    """Decorator: register ``factory(**options) -> Detector`` under ``name``; returns it unchanged.

    ``check()`` (optional) says cheaply, without importing heavy packages, whether the detector
    can run here: ``(True, "")`` or ``(False, "what to do")``.
    """
    def decorate(factory):
        doc = (inspect.getdoc(factory) or "").strip().splitlines()
        _REGISTRY[name] = _Entry(factory, description or (doc[0] if doc else ""), check)
        return factory
    return decorate


def _load_builtins() -> None:
    if not _loaded["builtins"]:
        _loaded["builtins"] = True
        for mod in _BUILTIN_MODULES:
            importlib.import_module(f"{__package__}.{mod}")


def _entry_points():
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _load_entry_points() -> None:
    if _loaded["entry_points"]:
        return
    _loaded["entry_points"] = True
    for ep in _entry_points():
        if ep.name in _REGISTRY:
            continue                       # built-ins (and earlier plugins) win
        try:
            obj = ep.load()
        except Exception as exc:           # a broken plugin must not break ssic
            _entry_point_errors[ep.name] = f"cannot load {ep.value}: {exc}"
            continue
        if ep.name in _REGISTRY:           # the module registered itself on import
            continue
        doc = (inspect.getdoc(obj) or "").strip().splitlines()
        _REGISTRY[ep.name] = _Entry(obj, getattr(obj, "description", None) or (doc[0] if doc else ""),
                                    getattr(obj, "check", None))


def _load_all() -> None:
    _load_builtins()
    _load_entry_points()


def detector_names() -> list[str]:
    """Names of all registered detectors (built-in first, then plugins), for ``--detector`` choices."""
    _load_all()
    return list(_REGISTRY)


def detector_options(name: str) -> list[str]:
    """Names of the options the detector ``name`` takes (its factory's keyword parameters)."""
    _load_all()
    entry = _REGISTRY.get(name)
    if entry is None:
        return []
    try:
        params = inspect.signature(entry.factory).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _run_check(entry: _Entry) -> tuple[bool, str]:
    if entry.check is None:
        return True, ""
    try:
        ok, reason = entry.check()
    except Exception as exc:
        return False, f"availability check failed: {exc}"
    return bool(ok), str(reason)


def available_detectors() -> list[DetectorInfo]:
    """Every registered detector, whether it can run here, and why (no heavy imports)."""
    _load_all()
    infos = [DetectorInfo(name, e.description, *_run_check(e)) for name, e in _REGISTRY.items()]
    infos += [DetectorInfo(name, "(plugin failed to load)", False, err)
              for name, err in _entry_point_errors.items() if name not in _REGISTRY]
    return infos


def get_detector(name: str, **options) -> Detector:
    """Build the detector ``name`` with its ``options`` (e.g. ``weights=PATH`` for ``yolo``).

    Raises ``SsicError`` for an unknown name or option, ``DetectorUnavailable`` when it
    cannot run here (missing package or weights) with a message saying what to do.
    """
    _load_all()
    entry = _REGISTRY.get(name)
    if entry is None:
        if name in _entry_point_errors:
            raise DetectorUnavailable(f"detector {name!r}: {_entry_point_errors[name]}")
        raise SsicError(f"unknown detector {name!r}; choose from: {', '.join(_REGISTRY)}")
    try:
        inspect.signature(entry.factory).bind(**options)
    except TypeError:
        known = ", ".join(detector_options(name)) or "none"
        raise SsicError(f"detector {name!r} does not take option(s) "
                        f"{', '.join(sorted(options))}; its options: {known}") from None
    except ValueError:                 # builtins without a signature: let the call decide
        pass
    return entry.factory(**options)
