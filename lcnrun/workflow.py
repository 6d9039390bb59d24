"""The steps every way of running shares (``run``, ``sweep``, a Slurm task): load a spec, prepare
its experiment folder, run one point if :mod:`lcnrun.policy` says it is to run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import interrupt, policy
from .runner import ensemble_to_files, run_to_file
from .spec import ExperimentSpec, load_experiment, manifest_rows
from .store.claims import try_claim
from .store.experiment import ExperimentDir, ExperimentDirError
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
    ``experiment.yaml`` is the spec file as given, or ``spec_text`` (a spec given as text).
    The folder is always a child of ``results`` (the spec layer refuses other names; this is the
    last guard: nothing is ever written outside the results folder)."""
    if exp.name in ("", ".", "..") or Path(exp.name).name != exp.name or os.sep in exp.name:
        raise ExperimentDirError(f"experiment name {exp.name!r} is not a folder name under {results}")
    xdir = ExperimentDir(Path(results) / exp.name)
    xdir.create()
    with xdir.lock():
        xdir.write_experiment_yaml(spec_text if spec_text is not None
                                   else Path(exp.path).read_text(encoding="utf-8"))
        xdir.write_manifest(manifest_rows(exp))
    return xdir


def existing_status(xdir: ExperimentDir, run_id: str) -> dict | None:
    """Attributes of an existing, readable run file, or None."""
    path = xdir.run_path(run_id)
    if policy.file_state(path).status in (None, policy.UNREADABLE):
        return None
    try:
        return read_run_attrs(path)
    except RunFileError:
        return None


def run_point(exp: ExperimentSpec, xdir: ExperimentDir, point, *, force: bool = False,
              rerun_failed: bool = True) -> Outcome:
    """Run one sweep point (``lcnrun run``, a Slurm task) under its claim, if :mod:`lcnrun.policy`
    says so: a point named on the command line runs unless it is completed (``rerun_failed``
    defaults to True here), ``force`` runs it anyway, an unreadable file is kept unless
    ``force``; a file another process wrote while this one waited for the claim is taken as it
    is. Skipped: ``attrs`` are the file's (``status`` and ``message`` for an unreadable one)."""
    path = xdir.run_path(point.run_id)
    planned = policy.file_state(path)
    # the run's claim, as a sweep worker takes it: a Slurm task and a local sweep never compute
    # the same point at once (the second waits, then finds it written)
    with try_claim(xdir.runs_dir, point.run_id, wait=True):
        interrupt.barrier("claimed")
        now = policy.file_state(path)
        if not policy.decide(now, force=force, rerun_failed=rerun_failed, planned=planned):
            attrs = existing_status(xdir, point.run_id) or {
                "run_id": point.run_id, "status": now.status or "",
                "message": policy.kept_reason(now.status, now.reason)}
            return Outcome(point.index, point.run_id, str(attrs.get("status", "")), True, attrs)
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
