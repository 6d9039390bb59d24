"""From a spec to a plan: what ``lcnrun submit`` would submit now, and as which tasks.

:func:`prepare_submission` loads the spec, asks Slurm what is queued or running already, selects
the points to submit (:func:`.select.select_points`), chooses the points per task
(:mod:`.bundle`) and plans the arrays (:mod:`.plan`); nothing is submitted (:func:`.submit.submit`
does that). With ``dry_run`` nothing is written either, and a Slurm that cannot be asked only
adds notes.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .bundle import (Bundling, bundle_points, choose_points_per_task, given_points_per_task,
                     parse_time_limit)
from .commands import (DEFAULT_MAX_ARRAY_SIZE, SlurmError, cluster_cpus, max_array_size,
                       require_command, slurm_config)
from .plan import SubmissionPlan, SubmitOptions, plan_submission
from .probe import slurm_states
from .select import Selection, select_points


@dataclass
class PreparedSubmission:
    """What ``lcnrun submit`` found and planned (``plan`` is ``None`` when nothing is to submit)."""

    exp: object
    xdir: object
    total: int
    selection: Selection
    max_array_size: int
    bundling: Bundling | None = None
    plan: SubmissionPlan | None = None
    notes: list[str] = field(default_factory=list)


def _max_array_size(dry_run: bool, notes: list[str]) -> int:
    try:
        return max_array_size(slurm_config())
    except SlurmError as err:
        if not dry_run:
            raise
        notes.append(f"MaxArraySize assumed {DEFAULT_MAX_ARRAY_SIZE} ({err})")
        return DEFAULT_MAX_ARRAY_SIZE


def _slots(options: SubmitOptions) -> int | None:
    """How many tasks may run at once: ``--max-parallel``, else the partition's cpus per task."""
    if options.max_parallel:
        return options.max_parallel
    cpus = cluster_cpus(options.partition)
    return max(1, cpus // options.cpus_per_task) if cpus else None


def choose_bundling(exp, xdir, selection: Selection, states, options: SubmitOptions,
                    limit: int) -> Bundling:
    """``--points-per-task``, or ``K`` from the time of a point (measured on the experiment's
    completed points, else modelled) and the time limit."""
    from ..estimate import seconds_per_point  # noqa: PLC0415

    n = len(selection.submit)
    if options.points_per_task is not None:
        return given_points_per_task(n, options.points_per_task)
    completed = [xdir.run_path(s.run_id) for s in states if s.file_status == "completed"]
    estimate = seconds_per_point([exp.points[s.index].run_spec for s in selection.submit], completed)
    return choose_points_per_task(n, estimate.seconds, time_limit=parse_time_limit(options.time),
                                  max_array_size=limit, slots=_slots(options),
                                  source=estimate.source, detail=estimate.detail)


#: ``(exp, xdir, probe) -> point states``: what ``lcnrun status`` would say about each
#: point, the probe's word on live work included (the CLI composes it from ``lcnrun.report``)
PointStates = Callable[[object, object, Callable[[object], Mapping[str, str]]], list]


def prepare_submission(spec: Path, results: Path, options: SubmitOptions, point_states: PointStates, *,
                       rerun_failed: bool = False, force: bool = False,
                       dry_run: bool = False) -> PreparedSubmission:
    """Everything :func:`.submit.submit` needs for the pending points of ``spec`` (see the module
    docstring). :class:`SlurmError` if Slurm is needed and cannot be asked; ``ValueError`` for a
    bad option."""
    from ... import workflow  # noqa: PLC0415  (numpy, scipy: only for this verb)
    from ...store.experiment import ExperimentDir  # noqa: PLC0415

    options.check()
    exp = workflow.load(spec)
    notes: list[str] = []
    if not dry_run:
        require_command("sbatch")
    limit = _max_array_size(dry_run, notes)
    xdir = workflow.prepare(exp, results) if not dry_run else ExperimentDir(Path(results) / exp.name)

    def probe(source) -> Mapping[str, str]:
        try:
            return slurm_states(source)
        except SlurmError as err:
            if not dry_run:
                raise SlurmError(f"cannot tell which points are queued or running already: {err}") from None
            notes.append(f"queued and running tasks unknown ({err})")
            return {}
    states = point_states(exp, xdir, probe)
    selection = select_points(states, rerun_failed=rerun_failed, force=force)
    prepared = PreparedSubmission(exp, xdir, len(states), selection, limit, notes=notes)
    if selection.submit:
        prepared.bundling = choose_bundling(exp, xdir, selection, states, options, limit)
        points = [(s.index, s.run_id) for s in selection.submit]
        tasks = bundle_points(exp, points, prepared.bundling.points_per_task)
        prepared.plan = plan_submission(exp.name, Path(spec), Path(results), tasks, options,
                                        max_array_size=limit, force=force,
                                        experiment_runs=max(len(states), _run_files(xdir)))
    return prepared


def _run_files(xdir) -> int:
    """How many files named ``*.h5`` the experiment's ``runs/`` holds (names only, no ``stat``)."""
    try:
        with os.scandir(xdir.runs_dir) as entries:
            return sum(1 for e in entries if e.name.endswith(".h5"))
    except OSError:
        return 0
