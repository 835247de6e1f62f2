"""Pillow plugin: ``Image.open("photo.ssb")`` after ``register_ssb_plugin()``.

Opening reads the header only (size, mode, group names in ``info["groups"]``); pixels are
decoded by ``load()``, with every group that can be decoded (undecodable groups transparent).

    >>> from ssic_cli.pillow_plugin import register_ssb_plugin
    >>> register_ssb_plugin()
    >>> "SSB" in __import__("PIL.Image").Image.OPEN
    True
"""
from __future__ import annotations

from PIL import Image, ImageFile

from . import container
from .errors import SsicError


def _accept(prefix: bytes) -> bool:
    return container.is_ssb(prefix)


class SsbImageFile(ImageFile.ImageFile):
    format = "SSB"
    format_description = "ssic semantically structured bitstream"

    def _open(self) -> None:
        try:
            self._ssb = container.read_ssb(self.fp.read())
        except SsicError as exc:
            raise SyntaxError(str(exc)) from None       # Pillow's "not my format" signal
        hdr = self._ssb.header
        self._size = (hdr.width, hdr.height)
        self._mode = "L" if hdr.channels == 1 else "RGB"
        self.info["groups"] = [g.name for g in hdr.groups]
        self.info["quality"] = hdr.quality
        self.tile = []

    def load(self):
        if self._ssb is not None:
            from . import codec
            try:
                result = codec.decode(self._ssb)
            except SsicError as exc:
                raise OSError(str(exc)) from None        # what Pillow's loaders raise on bad data
            self._ssb = None
            self.im = result.image.im
            self._mode = result.image.mode
        return Image.Image.load(self)


def register_ssb_plugin() -> None:
    """Teach Pillow to open .ssb files (decode only; there is no Pillow writer)."""
    Image.register_open(SsbImageFile.format, SsbImageFile, _accept)
    Image.register_extension(SsbImageFile.format, ".ssb")
    Image.register_mime(SsbImageFile.format, "image/x-ssb")
