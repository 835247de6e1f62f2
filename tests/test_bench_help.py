"""Every maintained benchmark is a module of the ``bench`` package with a working ``--help``."""
from __future__ import annotations

import importlib

import pytest

BENCHMARKS = ["rd", "holdout", "speed", "effort", "roi", "fuzz", "tiles", "remote_fetch", "portability", "detectors"]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_help_names_the_module_command(name, capsys):
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m bench.{name} ")


def test_the_package_lists_every_benchmark():
    import bench
    assert all(f"python -m bench.{name} " in bench.__doc__ for name in BENCHMARKS)
