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


class WeightsMissingError(WeightsMismatchError):
    """The file names weights this install lacks (retired, or never released)."""


class CorruptSectionError(FormatError):
    """A section's bytes do not match the length or CRC-32 in the index; ``.group`` names it."""

    def __init__(self, message: str, group: str):
        super().__init__(message)
        self.group = group


class WrongKeyError(SsicError):
    """Keys were given, but none of them opens this group (``.group`` names it)."""

    def __init__(self, group: str):
        super().__init__(f"wrong key for group {group!r}")
        self.group = group


class KeyRequiredError(SsicError):
    """The group is sealed and no key was given."""

    def __init__(self, group: str):
        super().__init__(f"group {group!r} is sealed; no key opens it")
        self.group = group


class KdfBudgetError(SsicError):
    """Trying the keys on this group would take more key derivations than one decode allows."""

    def __init__(self, spent: int, budget: int):
        super().__init__(f"not tried: the file asks for more key derivations than one decode allows "
                         f"({spent / budget:.0%} of the budget spent on earlier groups)")
