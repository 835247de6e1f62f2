"""Import this module to make Pillow open .ssb files (``import ssic_cli.SsbImagePlugin``)."""
from .pillow_plugin import register_ssb_plugin

register_ssb_plugin()
