"""The steps every way of running shares (``run``, ``sweep``, a Slurm task): load a spec, prepare
its experiment folder, run one point unless its completed run file exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .runner import ensemble_to_files, run_to_file
from .spec import ExperimentSpec, load_experiment, manifest_rows
from .store.experiment import ExperimentDir
from .store.runfile import RunFileError, read_run_attrs


@dataclass
class Outcome:
    """What happened to one sweep point: its status, whether it was skipped, its attributes."""

    index: int
    run_id: str
    status: str
    skipped: bool
    attrs: dict


def load(spec_path: Path) -> ExperimentSpec:
    return load_experiment(Path(spec_path))


def prepare(exp: ExperimentSpec, results: Path, spec_text: str | None = None) -> ExperimentDir:
    """Create ``results/<name>/`` with ``experiment.yaml`` and ``manifest.tsv`` (idempotent).
    ``experiment.yaml`` is the spec file as given, or ``spec_text`` (a spec given as text)."""
    xdir = ExperimentDir(Path(results) / exp.name)
    xdir.create()
    with xdir.lock():
        xdir.write_experiment_yaml(spec_text if spec_text is not None else Path(exp.path).read_text())
        xdir.write_manifest(manifest_rows(exp))
    return xdir


def existing_status(xdir: ExperimentDir, run_id: str) -> dict | None:
    """Attributes of an existing, readable run file, or None."""
    path = xdir.run_path(run_id)
    if not path.exists():
        return None
    try:
        return read_run_attrs(path)
    except RunFileError:
        return None


def run_point(exp: ExperimentSpec, xdir: ExperimentDir, point, *, force: bool = False,
              rerun_failed: bool = True) -> Outcome:
    """Run one sweep point unless a completed run file exists (``force`` runs it anyway; a failed,
    diverged or stopped one is run again only with ``rerun_failed``)."""
    existing = None if force else existing_status(xdir, point.run_id)
    if existing is not None and (existing.get("status") == "completed" or not rerun_failed):
        return Outcome(point.index, point.run_id, existing.get("status", ""), True, existing)
    path = xdir.run_path(point.run_id)
    run_to_file(point.run_spec, point.run_id, path)
    attrs = read_run_attrs(path)
    return Outcome(point.index, point.run_id, attrs.get("status", ""), False, attrs)


def run_points(exp: ExperimentSpec, xdir: ExperimentDir, points):
    """Compute ``points`` (several: one ensemble, see ``runner.ensemble_key``) and write their run
    files, whatever exists; yields an :class:`Outcome` per point as its file is written (``attrs``:
    ``status`` and ``message``)."""
    points = list(points)
    paths = [xdir.run_path(p.run_id) for p in points]
    for i, status, message in ensemble_to_files([p.run_spec for p in points], [p.run_id for p in points],
                                                paths):
        p = points[i]
        yield Outcome(p.index, p.run_id, status, False, {"status": status, "message": message})
