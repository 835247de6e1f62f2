import numpy as np
from PIL import Image

import ssic_cli.SsbImagePlugin  # noqa: F401  (registers the plugin)
from ssic_cli import codec
from ssic_cli.mask import single_group

from .conftest import crop


def test_pillow_opens_and_decodes_ssb(tmp_path, kodak):
    img = crop(kodak, 64, 96)
    path = tmp_path / "a.ssb"
    data = codec.encode(img, single_group(96, 64), 5.0)
    path.write_bytes(data)
    with Image.open(path) as im:
        assert im.format == "SSB" and im.size == (96, 64) and im.info["groups"] == ["background"]
        pixels = np.asarray(im.convert("RGB"))
    assert np.array_equal(pixels, np.asarray(codec.decode(data).image))


def test_pillow_rejects_other_files(tmp_path):
    path = tmp_path / "b.png"
    Image.new("RGB", (4, 4)).save(path)
    with Image.open(path) as im:
        assert im.format == "PNG"
