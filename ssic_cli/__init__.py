"""ssic: semantically structured image compression (Feng et al., ICCV 2023).

The library in four calls (see ``api``): ``encode(image, …) -> bytes``, ``decode(source, …)``,
``inspect(source)`` and ``extract(source, groups)``.
"""

__version__ = "0.7.0"

from .api import decode, encode, extract, inspect  # noqa: E402  (after __version__: the CLI reads it)
from .errors import SsicError  # noqa: E402

__all__ = ["encode", "decode", "inspect", "extract", "SsicError", "__version__"]
