"""The figure specs are package data: ``lcnrun figure`` finds them through ``importlib.resources``
(not the source checkout), every spec a figure names is there, and the package-data glob of
pyproject.toml ships every YAML file of the folder (a new figure's spec needs no packaging change).

(That a non-editable ``pip install .`` followed by ``lcnrun figure invariants --small`` in another
folder works was checked by hand: building a wheel in the suite would be too slow.)
"""
from __future__ import annotations

import fnmatch
import sys
from importlib import resources
from pathlib import Path

import pytest

from lcnrun.figures import FIGURES
from lcnrun.figures.driver import specs_dir
from lcnrun.spec import load_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_specs_dir_is_the_package_resource():
    resource = resources.files("lcnrun.figures").joinpath("specs")
    assert resource.is_dir()
    assert specs_dir() == Path(str(resource))
    assert specs_dir().resolve().parent == Path(sys.modules["lcnrun.figures"].__file__).resolve().parent


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_finds_its_specs(name):
    for small in (False, True):
        for rel in FIGURES[name]().specs(small):
            assert resources.files("lcnrun.figures").joinpath("specs", rel).is_file(), (name, rel)


def test_the_package_data_glob_ships_every_spec_and_each_loads():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["lcnrun.figures"]
    files = sorted(p for p in specs_dir().iterdir() if p.is_file())
    assert files and all(p.suffix == ".yaml" for p in files), files
    for path in files:
        rel = path.relative_to(specs_dir().parent).as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} is not shipped by {patterns}"
        assert load_experiment(path).points
