"""Run what a figure needs (as sweeps, skipping finished runs), read the runs, draw, save."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..schedule.local import SweepObserver, run_sweep
from ..spec import load_experiment
from ..store.runfile import read_run
from ..workflow import prepare
from . import FIGURES
from .base import FigureResult, PointRuns


def specs_dir() -> Path:
    """The figure specs shipped with the package: ``lcnrun/figures/specs/`` (package data, so that
    ``lcnrun figure`` works after a plain ``pip install .``; pyproject.toml ships ``specs/*.yaml``)."""
    return Path(str(resources.files(__package__).joinpath("specs")))


class FigureError(Exception):
    """Unknown figure, missing spec, or a run the figure needs did not complete."""


@dataclass
class Produced:
    result: FigureResult
    files: list[Path]
    n_runs: int
    n_ran: int


def produce(name: str, *, results: Path, out_dir: Path, experiments: Path | None = None,
            jobs: int | None = None, small: bool = False, observer: SweepObserver | None = None) -> Produced:
    """Run the sweeps figure ``name`` needs (spec files from ``experiments``, default :func:`specs_dir`),
    skipping finished runs; draw it into ``out_dir``."""
    if name not in FIGURES:
        raise FigureError(f"unknown figure {name!r}; known: {', '.join(sorted(FIGURES))}")
    fig = FIGURES[name]()
    experiments = Path(experiments) if experiments is not None else specs_dir()
    data: dict[str, PointRuns] = {}
    n_runs = n_ran = 0
    for rel in fig.specs(small):
        path = experiments / rel
        if not path.exists():
            raise FigureError(f"figure {name} needs {path}, which does not exist")
        exp = load_experiment(path)
        xdir = prepare(exp, results)
        report = run_sweep(exp, xdir, jobs=jobs, observer=observer)
        if report.interrupted:
            raise FigureError(f"interrupted ({report.interrupted}) while running {path}")
        n_runs += report.total
        n_ran += len(report.ran)
        runs = [read_run(xdir.run_path(p.run_id)) for p in exp.points]
        data[Path(rel).stem] = PointRuns(path, list(exp.points), runs)
    result = fig.make(data, small)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    stem = f"{name}.small" if small else name
    for ext in ("png", "pdf"):
        target = out_dir / f"{stem}.{ext}"
        tmp = out_dir / f".{stem}.tmp.{ext}"
        result.figure.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(target)
        files.append(target)
    import matplotlib.pyplot as plt
    plt.close(result.figure)
    return Produced(result, files, n_runs, n_ran)
