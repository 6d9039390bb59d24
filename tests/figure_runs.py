"""The small figures, produced once per test session and shared by every test that needs them (the figure
tests and the test of ``lcnrun reproduce``), also between pytest-xdist workers.

The results live in one folder of the session (``figure-runs`` under the session's base temporary folder,
the parent of the workers' own ones under xdist). A figure is produced under an exclusive ``flock`` of its
own lock file, so the first test of the session that asks for it computes its runs and every later one
(in any worker) finds them finished and only redraws: no figure is computed twice, and no two sweeps of
one experiment run at once. Each worker draws into its own ``out/<worker>`` folder.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from lcnrun.figures import FIGURES
from lcnrun.figures.driver import Produced, produce, specs_dir
from lcnrun.spec import load_experiment
from lcnrun.store.runfile import read_run


def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def shared_dir(tmp_path_factory) -> Path:
    """The session's shared folder (created on first use)."""
    base = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        base = base.parent  # the session's folder, common to its workers
    d = base / "figure-runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def produce_small(name: str, base: Path) -> Produced:
    """The small version of figure ``name``, its missing runs computed first (under the figure's lock)."""
    with locked(base / f".{name}.lock"):
        return produce(name, results=base / "results", out_dir=base / "out" / worker(), small=True, jobs=2)


def runs_of(base: Path, name: str):
    """``(overrides, run_spec, RunData)`` of every point of a figure's small spec."""
    (rel,) = FIGURES[name]().specs(True)
    exp = load_experiment(specs_dir() / rel)
    return [(p.overrides, p.run_spec, read_run(base / "results" / exp.name / "runs" / f"{p.run_id}.h5"))
            for p in exp.points]
