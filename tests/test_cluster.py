"""The cluster recipe (examples/cluster_encode.py) on a dask LocalCluster of 2 worker processes."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from PIL import Image

from ssic_cli import codec

from .conftest import EXAMPLES, crop

pytest.importorskip("dask.distributed", reason="the cluster recipe needs dask[distributed] (the test extra has it)")


def _recipe():
    spec = importlib.util.spec_from_file_location("cluster_encode", EXAMPLES / "cluster_encode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_recipe_encodes_on_two_local_workers(tmp_path, kodak, capsys, monkeypatch):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(4):
        Image.fromarray(crop(kodak, 64, 80, 30 * i, 40 * i)).save(src / f"p{i}.png")
    (src / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["cluster_encode.py"])
    code = _recipe().main([*map(str, sorted(src.iterdir())), "--out", str(out), "--local", "2", "-q", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("ssic: error:") == 1 and "bad.png" in err
    assert "4 of 5 images encoded" in err
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.ssb" for i in range(4)]
    for i in range(4):
        img = np.asarray(codec.decode((out / f"p{i}.ssb").read_bytes()).image)
        assert img.shape == (64, 80, 3)
