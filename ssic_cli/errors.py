"""Error classes shared by the library and the CLI.

The CLI maps them to exit codes: ``SsicError`` (bad input or data) -> 2.
Usage errors are Click's own and exit 1 (see ``cli.py``).
"""


class SsicError(Exception):
    """Bad input or data: unreadable image, forged/truncated file, unknown group, wrong key."""


class FormatError(SsicError):
    """A .ssb file (or part of it) is not valid."""


class WeightsMismatchError(SsicError):
    """The file was made with other weights than the ones loaded."""


class DetectorUnavailable(SsicError):
    """A detector cannot run here (missing package or weights)."""


class UndecodableError(FormatError):
    """An intact section (its CRC passes) whose entropy-coded stream did not decode: the decoder's
    model arithmetic or weights differ from the encoder's, or the CRC itself was forged."""
