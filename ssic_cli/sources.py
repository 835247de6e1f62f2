"""Byte sources: where the bytes of an ``.ssb`` come from — memory, a local file, a pipe, or an
HTTP(S) server that answers range requests.

``container`` parses a file through the small interface every source offers (``size``,
``read(offset, n)``, ``crc(offset, n)``, and optionally ``prefetch(ranges)``); it knows nothing of
files or HTTP. ``open_source`` picks the source for what the caller handed over.

Remote files (selective transmission, as JPIP does for JPEG 2000, over plain HTTP that every
server and object store speaks): the first request fetches the head of the file (the header and
the section index, which come first by design), and later reads fetch only the byte ranges asked
for; ``prefetch`` merges the wanted sections' ranges into as few requests as their gaps allow. A
server that ignores ``Range`` (answers 200 with the whole body) still works: the body is read as
a stream only as far as the reads need, then dropped. Everything that can go wrong on the wire —
a timeout, too many redirects, a 404, a response shorter than it said, a ``Content-Range`` other
than the one asked for, a file that changed on the server between requests — raises
``SsicError`` with one line naming the URL.
"""
from __future__ import annotations

import os
import re
import select
import stat
import time
import zlib
from typing import Optional

from .errors import FormatError, SsicError


STREAM_WAIT = 20.0              # seconds a FIFO may stay silent before ssic gives up on it


def is_url(value) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def open_source(obj) -> "MemorySource | FileSource | PathSource | StreamSource | HttpSource":
    """The byte source for ``obj``: bytes-like, an ``http(s)://`` URL, a binary file object or a
    path. A pipe, a FIFO or a device is read as a stream, only as far as the parser asks.
    ``SsicError`` if a path cannot be opened (or a FIFO gets no writer)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return MemorySource(obj)
    if is_url(obj):
        return open_url(obj)
    if hasattr(obj, "read"):
        seekable = getattr(obj, "seekable", None)
        if seekable is not None and seekable():
            return FileSource(obj)
        return StreamSource(obj)
    name = os.fsdecode(obj)
    try:
        mode = os.stat(obj).st_mode
    except OSError as exc:
        raise _unreadable(name, exc) from None
    if stat.S_ISDIR(mode):
        raise SsicError(f"{name} is a directory")
    if stat.S_ISREG(mode):
        return PathSource(obj)
    return StreamSource(_open_special(obj, mode, name), name)


def _open_special(path, mode: int, name: str):
    """A FIFO or device opened for reading; a FIFO is opened without blocking (a FIFO nobody
    writes to would otherwise block forever) and given ``STREAM_WAIT`` seconds to deliver."""
    try:
        if not stat.S_ISFIFO(mode):
            return open(path, "rb", buffering=0)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        ready, _, _ = select.select([fd], [], [], STREAM_WAIT)
        if not ready:
            os.close(fd)
            raise SsicError(f"{name}: nothing to read after {STREAM_WAIT:g} s (a FIFO nobody writes to?)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except OSError as exc:
        raise _unreadable(name, exc) from None


# ----- local sources -------------------------------------------------------------------------------
class MemorySource:
    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self.size = len(self._view)

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self._view[offset:offset + n])

    def crc(self, offset: int, n: int) -> int:
        return zlib.crc32(self._view[offset:offset + n])


class FileSource:
    """A seekable binary file; offsets count from where the file was when it was handed over."""

    def __init__(self, fp, name: str = "the .ssb file"):
        self._fp, self._name = fp, name
        self._base = fp.tell()
        self.size = fp.seek(0, os.SEEK_END) - self._base

    def read(self, offset: int, n: int) -> bytes:
        try:
            self._fp.seek(self._base + offset)
            return self._fp.read(n)
        except (OSError, ValueError) as exc:     # ValueError: the file was closed
            raise SsicError(f"cannot read {self._name}: {exc}") from None

    def crc(self, offset: int, n: int, chunk: int = 1 << 20) -> int:
        crc, end = 0, offset + n
        while offset < end:
            data = self.read(offset, min(chunk, end - offset))
            if not data:
                raise FormatError(f"{self._name} got shorter while it was being read")
            crc, offset = zlib.crc32(data, crc), offset + len(data)
        return crc


class PathSource(FileSource):
    """A file by path. While the header is parsed it reads from one open handle; after
    ``release`` each read re-opens the file and refuses if it changed since it was first opened
    (a section must come from the same file as the index that located it)."""

    def __init__(self, path):
        self._path = path
        name = os.fsdecode(path)
        try:
            fp = open(path, "rb")
        except OSError as exc:
            raise _unreadable(name, exc) from None
        self._stamp = _stamp(os.fstat(fp.fileno()))
        super().__init__(fp, name)

    def release(self) -> None:
        """Close the handle the header was parsed from; later reads re-open the file."""
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def read(self, offset: int, n: int) -> bytes:
        if self._fp is not None:
            return super().read(offset, n)
        try:
            with open(self._path, "rb") as fp:
                if _stamp(os.fstat(fp.fileno())) != self._stamp:
                    raise SsicError(f"{self._name} changed since it was opened; open it again")
                fp.seek(offset)
                return fp.read(n)
        except OSError as exc:
            raise SsicError(f"cannot read {self._name}: {exc.strerror or exc}") from None


class StreamSource:
    """A pipe, FIFO or device: bytes are read only as far as the parser asks for them
    (``available``), so garbage is refused after its first bytes and a file is never read past
    the end its header and index give (plus one byte, to see that it ends there)."""

    def __init__(self, fp, name: str = "standard input"):
        self._fp, self._name = fp, name
        self._buf = bytearray()
        self._ended = False

    def available(self, end: int) -> int:
        """How many of the bytes [0, end) exist (reading them if need be)."""
        while len(self._buf) < end and not self._ended:
            try:
                piece = self._fp.read(min(end - len(self._buf), 1 << 20))
            except (OSError, ValueError) as exc:
                raise SsicError(f"cannot read {self._name}: {exc}") from None
            if not piece:
                self._ended = True
            self._buf += piece
        return min(end, len(self._buf))

    @property
    def size(self) -> int:
        """The whole length once the stream has ended (the parser sees to that), else -1."""
        return len(self._buf) if self._ended else -1

    def read(self, offset: int, n: int) -> bytes:
        self.available(offset + n)
        return bytes(self._buf[offset:offset + n])

    def crc(self, offset: int, n: int) -> int:
        self.available(offset + n)
        return zlib.crc32(memoryview(self._buf)[offset:offset + n])


def _unreadable(name: str, exc: OSError) -> SsicError:
    """The one-line error for a local file that cannot be opened or read."""
    if isinstance(exc, FileNotFoundError):
        return SsicError(f"{name}: no such file")
    if isinstance(exc, PermissionError):
        return SsicError(f"{name}: permission denied")
    return SsicError(f"cannot read {name}: {exc.strerror or exc}")


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# ----- HTTP(S) range reads -----------------------------------------------------------------------
FIRST_READ = 4 * 1024           # header + index of most files (usually < 2 kB) in one request
MIN_READ = 4 * 1024             # later reads are rounded up to this (the parser reads small pieces)
MERGE_GAP = 16 * 1024           # wanted ranges closer than this are fetched in one request
MAX_REDIRECTS = 5
TIMEOUT_ENV = "SSIC_HTTP_TIMEOUT"
# After its first byte a response must keep coming at this rate on average: a request gets
# TIMEOUT + bytes / MIN_RATE seconds in all, so a server dripping a byte a second is cut off
# (a read timeout alone restarts with every byte). 8 kB/s is a 64 kbit/s link.
MIN_RATE = 8 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HttpSource:
    """Byte source over HTTP: ``read(offset, n)``, ``crc(offset, n)``, ``size``, ``prefetch``.

    ``fetched`` counts body bytes received and ``requests`` the requests made, for reports.
    """

    def __init__(self, url: str, timeout: Optional[float] = None):
        import httpx                                 # only remote reads pay for it
        self._httpx = httpx
        self.url = url
        seconds = timeout if timeout is not None else float(os.environ.get(TIMEOUT_ENV, "20"))
        # Ranges count the bytes as stored: a compressed response would make them meaningless
        # (and a small gzip body can inflate to gigabytes), so ask for none and accept none.
        self._client = httpx.Client(follow_redirects=True, max_redirects=MAX_REDIRECTS,
                                    timeout=httpx.Timeout(seconds), headers={"Accept-Encoding": "identity"})
        self._seconds = seconds
        self._chunks: dict[int, bytes] = {}          # start offset -> bytes fetched there
        self._stream = None                          # open 200 response of a server ignoring Range
        self._prefix = bytearray()                   # what that stream has delivered so far
        self._validator: Optional[tuple] = None
        self.fetched = self.requests = 0
        self.size = -1
        self._fetch(0, FIRST_READ)

    # ----- the byte-source interface ---------------------------------------------------------
    def available(self, end: int) -> int:
        """How many of the bytes [0, end) the file has; a server that sent no length is read on
        only that far."""
        if self.size < 0:
            self._read_stream(end)
            return min(end, len(self._prefix))
        return min(end, self.size)

    def read(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.available(offset + n))
        if offset >= end:
            return b""
        cached = self._cached(offset, end)
        if cached is None:
            self._fetch(offset, max(end, offset + MIN_READ))
            cached = self._cached(offset, end)
        if cached is None:
            raise SsicError(f"{self.url}: the server did not send bytes {offset}-{end - 1}")
        return cached

    def crc(self, offset: int, n: int) -> int:
        return zlib.crc32(self.read(offset, n))

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch the (offset, length) ranges not cached yet, neighbours merged."""
        wanted = sorted((o, o + n) for o, n in ranges if n > 0 and self._cached(o, self.available(o + n)) is None)
        merged: list[list[int]] = []
        for start, end in wanted:
            if merged and start - merged[-1][1] <= MERGE_GAP:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            self._fetch(start, end)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._client.close()

    # ----- wire ----------------------------------------------------------------------------------
    def _cached(self, start: int, end: int) -> Optional[bytes]:
        if end <= len(self._prefix):
            return bytes(self._prefix[start:end])
        for at, data in self._chunks.items():
            if at <= start and end <= at + len(data):
                return data[start - at:end - at]
        return None

    def _fetch(self, start: int, end: int) -> None:
        """Bytes [start, end) (clipped to the file) into the cache."""
        if self._stream is not None:                 # no Range support: read on along the stream
            self._read_stream(end)
            return
        if self.size >= 0:
            end = min(end, self.size)
        response = self._send({"Range": f"bytes={start}-{end - 1}"})
        try:
            if response.status_code == 200:
                self._start_stream(response, end)
                response = None                      # kept open as the stream
                return
            total, body = self._ranged_body(response, start, end)
        finally:
            if response is not None:
                response.close()
        if self.size < 0:
            self.size = total
        elif total != self.size:
            raise SsicError(f"{self.url}: the file changed on the server while it was being read "
                            f"(size {self.size} became {total})")
        self._chunks[start] = body

    def _send(self, headers: dict):
        httpx = self._httpx
        try:
            request = self._client.build_request("GET", self.url, headers=headers)
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise SsicError(f"{self.url}: timed out (after {self._client.timeout.read:g} s; "
                            f"set {TIMEOUT_ENV} to wait longer)") from None
        except httpx.TooManyRedirects:
            raise SsicError(f"{self.url}: more than {MAX_REDIRECTS} redirects") from None
        except httpx.UnsupportedProtocol as exc:
            raise SsicError(f"{self.url}: {exc}") from None
        except httpx.HTTPError as exc:
            raise SsicError(f"{self.url}: {exc.__class__.__name__}: {exc or 'connection failed'}") from None
        self.requests += 1
        if response.status_code not in (200, 206):
            response.close()
            raise SsicError(f"{self.url}: HTTP {response.status_code} {response.reason_phrase}".rstrip())
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise SsicError(f"{self.url}: the server compressed the response (Content-Encoding: {encoding}); "
                            "range reads need the file's bytes as stored")
        self._check_validator(response)
        self._deadline = time.monotonic() + self._seconds
        return response

    def _check_deadline(self, want: int) -> None:
        if time.monotonic() > self._deadline + want / MIN_RATE:
            raise SsicError(f"{self.url}: too slow (under {MIN_RATE // 1024} kB/s after {self._seconds:g} s; "
                            f"set {TIMEOUT_ENV} to wait longer)")

    def _check_validator(self, response) -> None:
        """ETag / Last-Modified must stay the same across requests: else the ranges mix versions."""
        validator = (response.headers.get("etag"), response.headers.get("last-modified"))
        if self._validator is None:
            self._validator = validator
        elif validator != self._validator and any(validator):
            response.close()
            raise SsicError(f"{self.url}: the file changed on the server while it was being read")

    def _ranged_body(self, response, start: int, end: int) -> tuple[int, bytes]:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if not match or match.group(3) == "*":
            raise SsicError(f"{self.url}: answered 206 without a usable Content-Range")
        first, last, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if first != start or last >= total or (last != end - 1 and last != total - 1):
            raise SsicError(f"{self.url}: asked for bytes {start}-{end - 1}, the server sent "
                            f"{first}-{last}/{total}")
        body = self._body(response, last - first + 1)
        return total, body

    def _body(self, response, want: int) -> bytes:
        """Exactly the ``want`` bytes a 206 announced: more is refused as soon as it arrives."""
        httpx = self._httpx
        body = bytearray()
        try:
            for piece in response.iter_raw():
                body += piece
                self.fetched += len(piece)
                if len(body) > want:
                    raise SsicError(f"{self.url}: the server sent more than the {want} bytes it announced")
                self._check_deadline(want)
        except httpx.TimeoutException:
            raise SsicError(f"{self.url}: timed out while receiving data") from None
        except httpx.RemoteProtocolError:
            raise SsicError(f"{self.url}: short response (the server hung up before sending {want} bytes)") from None
        except httpx.HTTPError as exc:
            raise SsicError(f"{self.url}: the response broke off ({exc.__class__.__name__})") from None
        if len(body) != want:
            raise SsicError(f"{self.url}: short response ({len(body)} of {want} bytes)")
        return bytes(body)

    def _start_stream(self, response, end: int) -> None:
        length = response.headers.get("content-length")
        self._stream = response
        self._iter = response.iter_raw(chunk_size=MIN_READ)       # consume only what the reads need
        self.size = int(length) if length and length.isdigit() else -1   # -1: found at the end
        self._read_stream(end)

    def _read_stream(self, end: int) -> None:
        """Read on along a 200 response until it holds ``end`` bytes or ends; bytes past the
        length it announced are refused, and a response without a length ends where it ends."""
        if self._stream is None:
            return
        httpx = self._httpx
        goal = min(end, self.size) if self.size >= 0 else end
        try:
            while len(self._prefix) < goal:
                piece = next(self._iter, None)
                if piece is None:
                    if self.size >= 0:
                        raise SsicError(f"{self.url}: short response ({len(self._prefix)} of {self.size} bytes)")
                    self.size = len(self._prefix)
                    return
                self._prefix += piece
                self.fetched += len(piece)
                if 0 <= self.size < len(self._prefix):
                    raise SsicError(f"{self.url}: the server sent more than the {self.size} bytes it announced")
                self._check_deadline(goal)
        except httpx.TimeoutException:
            raise SsicError(f"{self.url}: timed out while receiving data") from None
        except httpx.RemoteProtocolError:
            raise SsicError(f"{self.url}: short response (the server hung up after {len(self._prefix)} "
                            f"bytes)") from None
        except httpx.HTTPError as exc:
            raise SsicError(f"{self.url}: the response broke off ({exc.__class__.__name__})") from None


def open_url(url: str) -> HttpSource:
    """An ``HttpSource`` for ``url``; ``FormatError`` if what it serves is empty."""
    source = HttpSource(url)
    if source.size == 0:
        source.close()
        raise FormatError(f"{url}: not an .ssb file (the file is empty)")
    return source
