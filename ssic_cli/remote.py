"""Reading an ``.ssb`` over HTTP(S) with range requests (selective transmission, as JPIP does for
JPEG 2000, over plain HTTP that every server and object store speaks).

``HttpSource`` is a byte source for ``container.read_ssb``: the first request fetches the head
of the file (the header and the section index, which come first by design), and later reads
fetch only the byte ranges asked for; ``prefetch`` merges the wanted sections' ranges into as
few requests as their gaps allow. A server that ignores ``Range`` (answers 200 with the whole
body) still works: the body is read as a stream only as far as the reads need, then dropped.

Everything that can go wrong on the wire — a timeout, too many redirects, a 404, a response
shorter than it said, a ``Content-Range`` other than the one asked for, a file that changed
on the server between requests — raises ``SsicError`` with one line naming the URL.
"""
from __future__ import annotations

import os
import re
import zlib
from typing import Optional

from .errors import FormatError, SsicError

FIRST_READ = 4 * 1024           # header + index of most files (usually < 2 kB) in one request
MIN_READ = 4 * 1024             # later reads are rounded up to this (the parser reads small pieces)
MERGE_GAP = 16 * 1024           # wanted ranges closer than this are fetched in one request
MAX_REDIRECTS = 5
TIMEOUT_ENV = "SSIC_HTTP_TIMEOUT"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def is_url(value) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


class HttpSource:
    """Byte source over HTTP: ``read(offset, n)``, ``crc(offset, n)``, ``size``, ``prefetch``.

    ``fetched`` counts body bytes received and ``requests`` the requests made, for reports.
    """

    def __init__(self, url: str, timeout: Optional[float] = None):
        import httpx                                 # only remote reads pay for it
        self._httpx = httpx
        self.url = url
        seconds = timeout if timeout is not None else float(os.environ.get(TIMEOUT_ENV, "20"))
        self._client = httpx.Client(follow_redirects=True, max_redirects=MAX_REDIRECTS,
                                    timeout=httpx.Timeout(seconds))
        self._chunks: dict[int, bytes] = {}          # start offset -> bytes fetched there
        self._stream = None                          # open 200 response of a server ignoring Range
        self._prefix = bytearray()                   # what that stream has delivered so far
        self._validator: Optional[tuple] = None
        self.fetched = self.requests = 0
        self.size = -1
        self._fetch(0, FIRST_READ)

    # ----- the byte-source interface ---------------------------------------------------------
    def read(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.size)
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
        wanted = sorted((o, o + n) for o, n in ranges if n > 0 and self._cached(o, min(o + n, self.size)) is None)
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
        self._check_validator(response)
        return response

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
        httpx = self._httpx
        try:
            body = b"".join(response.iter_bytes())
        except httpx.TimeoutException:
            raise SsicError(f"{self.url}: timed out while receiving data") from None
        except httpx.RemoteProtocolError:
            raise SsicError(f"{self.url}: short response (the server hung up before sending {want} bytes)") from None
        except httpx.HTTPError as exc:
            raise SsicError(f"{self.url}: the response broke off ({exc.__class__.__name__})") from None
        self.fetched += len(body)
        if len(body) != want:
            raise SsicError(f"{self.url}: short response ({len(body)} of {want} bytes)")
        return body

    def _start_stream(self, response, end: int) -> None:
        length = response.headers.get("content-length")
        self._stream = response
        self._iter = response.iter_bytes(chunk_size=MIN_READ)     # consume only what the reads need
        self.size = int(length) if length and length.isdigit() else -1
        if self.size < 0:                            # no length given: the whole body it is
            self._read_stream(1 << 62)
            self.size = len(self._prefix)
        else:
            self._read_stream(end)

    def _read_stream(self, end: int) -> None:
        httpx = self._httpx
        goal = min(end, self.size) if self.size >= 0 else end
        try:
            while len(self._prefix) < goal:
                piece = next(self._iter, None)
                if piece is None:
                    if self.size >= 0:
                        raise SsicError(f"{self.url}: short response ({len(self._prefix)} of {self.size} bytes)")
                    return
                self._prefix += piece
                self.fetched += len(piece)
        except httpx.TimeoutException:
            raise SsicError(f"{self.url}: timed out while receiving data") from None
        except httpx.RemoteProtocolError:
            raise SsicError(f"{self.url}: short response (the server hung up after {len(self._prefix)} "
                            f"of {self.size} bytes)") from None
        except httpx.HTTPError as exc:
            raise SsicError(f"{self.url}: the response broke off ({exc.__class__.__name__})") from None


def open_url(url: str) -> HttpSource:
    """An ``HttpSource`` for ``url``; ``FormatError`` if what it serves is empty."""
    source = HttpSource(url)
    if source.size == 0:
        source.close()
        raise FormatError(f"{url}: not an .ssb file (the file is empty)")
    return source
