"""rANS coding of one group's section with constriction.

A section is one ANS stream holding, in decoding order, a sequence of *chunks*: the hyper
latent ẑ_g channel by channel (categorical models from fixed integer tables) and then the
latent slices (zero-mean quantised Gaussians whose std is ``SCALE_TABLE[index]``). Only
integers and table entries reach the coder, so both sides build identical models.

ANS is a stack: ``SectionEncoder`` buffers the chunks and encodes them last-to-first, so
``SectionDecoder`` reads them first-to-last. Words are little-endian uint32 on every host.

Example::

    >>> import numpy as np
    >>> enc = SectionEncoder()
    >>> enc.add_gaussian(np.array([0, -3, 7], np.int32), np.array([10, 20, 30]))
    >>> enc.add_categorical(np.array([1, 0, 2], np.int32), np.array([1.0, 2.0, 1.0]))
    >>> dec = SectionDecoder(enc.finish())
    >>> dec.gaussian(np.array([10, 20, 30])).tolist(), dec.categorical(3, np.array([1.0, 2.0, 1.0])).tolist()
    ([0, -3, 7], [1, 0, 2])
    >>> dec.check_end()
"""
from __future__ import annotations

import constriction
import numpy as np

from .errors import FormatError
from .model.entropy import SCALE_TABLE, SYMBOL_LIMIT

_GAUSSIAN = constriction.stream.model.QuantizedGaussian(-SYMBOL_LIMIT, SYMBOL_LIMIT)
# Two fixed 16-bit symbols at the bottom of every stack, decoded last: an ANS decoder turns
# any words into *some* symbols, so this check (plus "stream fully consumed") is what tells a
# damaged or foreign section from a good one when its CRC was forged (false pass ~2^-32).
_SENTINEL_MODEL = constriction.stream.model.Uniform(1 << 16)
_SENTINEL = np.array([0x55AA, 0xC33C], np.int32)


def _categorical(probabilities: np.ndarray):
    # perfect=False: a fast, deterministic quantisation of the table, identical on both sides.
    return constriction.stream.model.Categorical(np.asarray(probabilities, np.float64), perfect=False)


class SectionEncoder:
    def __init__(self):
        self._chunks: list[tuple] = []

    def add_gaussian(self, symbols: np.ndarray, scale_indexes: np.ndarray) -> None:
        """Symbols (already ``round(y − μ̂)``, clipped to ±SYMBOL_LIMIT) with table indexes."""
        symbols = np.ascontiguousarray(symbols, np.int32).ravel()
        if symbols.size:
            stds = SCALE_TABLE[np.asarray(scale_indexes).ravel()]
            self._chunks.append(("g", symbols, stds))

    def add_categorical(self, symbols: np.ndarray, probabilities: np.ndarray) -> None:
        symbols = np.ascontiguousarray(symbols, np.int32).ravel()
        if symbols.size:
            self._chunks.append(("c", symbols, probabilities))

    def finish(self) -> bytes:
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(_SENTINEL, _SENTINEL_MODEL)
        for kind, symbols, param in reversed(self._chunks):
            if kind == "g":
                coder.encode_reverse(symbols, _GAUSSIAN, np.zeros_like(param), param)
            else:
                coder.encode_reverse(symbols, _categorical(param))
        return coder.get_compressed().astype("<u4").tobytes()


class SectionDecoder:
    """Reads chunks in the order they were added; any inconsistency raises ``FormatError``."""

    def __init__(self, data: bytes):
        if len(data) % 4:
            raise FormatError("section length is not a whole number of 32-bit words")
        words = np.frombuffer(data, "<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except Exception as exc:  # constriction rejects some word sequences up front
            raise FormatError(f"section data is invalid ({exc})") from None

    def gaussian(self, scale_indexes: np.ndarray) -> np.ndarray:
        stds = SCALE_TABLE[np.asarray(scale_indexes).ravel()]
        if not stds.size:
            return np.zeros(0, np.int32)
        try:
            return self._coder.decode(_GAUSSIAN, np.zeros_like(stds), stds)
        except Exception as exc:
            raise FormatError(f"section data is invalid ({exc})") from None

    def categorical(self, count: int, probabilities: np.ndarray) -> np.ndarray:
        if count == 0:
            return np.zeros(0, np.int32)
        try:
            return self._coder.decode(_categorical(probabilities), count)
        except Exception as exc:
            raise FormatError(f"section data is invalid ({exc})") from None

    def check_end(self) -> None:
        """A valid section ends with the sentinel and is consumed exactly; anything else means
        damage or a foreign section."""
        try:
            tail = self._coder.decode(_SENTINEL_MODEL, len(_SENTINEL))
        except Exception:
            tail = None
        if tail is None or not np.array_equal(tail, _SENTINEL):
            raise FormatError("section data is damaged (end-of-section check failed)")
        if not self._coder.is_empty():
            raise FormatError("section data does not match its group (stream not fully consumed)")
