"""The one way ssic writes a file: atomically and durably.

A temporary file in the target's directory (same file system), written, flushed and fsync'ed,
then renamed over the target, and the directory fsync'ed so the rename survives a power cut.
Readers never see a partial file; a failure, Ctrl-C or SIGTERM (turned into an exception by the
CLI) leaves no file behind and an existing target untouched. Every output goes through here:
.ssb files, decoded images, extracted files, weights and training checkpoints.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     target = pathlib.Path(d) / "a.bin"
...     write_bytes(target, b"abc")
...     target.read_bytes(), sorted(p.name for p in pathlib.Path(d).iterdir())
(b'abc', ['a.bin'])
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union

from .errors import SsicError

PathLike = Union[str, os.PathLike]


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    write_atomic(path, lambda fp: fp.write(data))


def write_atomic(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fp)`` on a temporary file next to ``path``, then move it into place.

    ``SsicError`` (one line) when the directory is missing or the file cannot be written;
    exceptions raised by ``write`` itself propagate after the temporary file is removed, except
    ``OSError`` / ``ValueError`` / ``KeyError``, which a writer raises for a full disk, unwritable
    data or an unknown format (Pillow), and which become ``SsicError`` too.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise SsicError(f"output directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # 0o666 through the umask gives the same permissions as a plain open(path, "wb").
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise SsicError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fp:
            write(fp)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, ValueError, KeyError)):
            raise SsicError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); best effort, some systems cannot open directories."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
