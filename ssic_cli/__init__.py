"""ssic: semantically structured image compression (Feng et al., ICCV 2023)."""

__version__ = "0.5.0"
