"""Planning a submission: the tasks (bundles of points), the arrays they are split into, the
options of the tasks, and the files a submission writes.

The tasks file ``<tag>.tasks`` has one line per array task, in task order::

    INDICES RUN_IDS        e.g.  0-3,7 9f2c1a0b3d4e,5e6f...,...

``INDICES`` the task's sweep points in ``lcnrun run --indices`` form, ``RUN_IDS`` their run ids,
comma-separated, in index order (a one-point task: ``INDEX RUN_ID``). Task ``i`` of an array with
offset ``o`` reads line ``o + i + 1``.

Arrays hold at most the cluster's ``MaxArraySize`` tasks (task ids ``0 .. MaxArraySize - 1``): more
tasks are split into several arrays, each with the offset of its first line (:func:`plan_arrays`).
"""
from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SLURM_DIR = "slurm"
#: sbatch options that ``lcnrun submit`` sets itself (``--sbatch-arg`` may not)
RESERVED_OPTIONS = {"--array": "the array is planned by lcnrun", "-a": "the array is planned by lcnrun",
                    "--output": "logs go to results/<name>/slurm/%A_%a.out",
                    "-o": "logs go to results/<name>/slurm/%A_%a.out",
                    "--job-name": "use --job-name", "-J": "use --job-name",
                    "--chdir": "tasks run in the submitting folder", "-D": "tasks run in the submitting folder",
                    "--wrap": "lcnrun writes the batch script", "--parsable": "lcnrun reads the job id",
                    "--wait": "lcnrun submit never waits: follow with lcnrun status"}

Point = tuple[int, str]  # (sweep index, run id)


def sbatch_option_name(arg: str) -> str:
    """The option an ``--sbatch-arg`` sets: ``--qos=short`` -> ``--qos``, ``-A lab`` -> ``-A``."""
    return re.split(r"[=\s]", arg, maxsplit=1)[0] if arg.startswith("--") else arg[:2]


def format_indices(indices: Sequence[int]) -> str:
    """Sorted indices as ``lcnrun run --indices`` reads them: ``[0, 1, 2, 3, 7] -> '0-3,7'``."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


@dataclass(frozen=True)
class ArrayPlan:
    """One array job: its tasks ``0 .. count - 1`` run lines ``offset + 1 .. offset + count`` of the
    submission's tasks file."""

    offset: int
    count: int

    def array_option(self, max_parallel: int | None) -> str:
        """The value of ``--array``: ``0-(count-1)``, with ``%K`` when throttled."""
        spec = f"0-{self.count - 1}" if self.count > 1 else "0"
        return spec + (f"%{max_parallel}" if max_parallel else "")


def plan_arrays(n_tasks: int, max_array_size: int) -> list[ArrayPlan]:
    """Split ``n_tasks`` tasks into arrays of at most ``max_array_size`` tasks, in task order: full
    arrays first, the remainder last, so array ``k`` has ``offset = k * max_array_size``."""
    if n_tasks < 0 or max_array_size < 1:
        raise ValueError(f"bad plan: {n_tasks} tasks, MaxArraySize {max_array_size}")
    return [ArrayPlan(offset, min(max_array_size, n_tasks - offset))
            for offset in range(0, n_tasks, max_array_size)]


@dataclass(frozen=True)
class SubmitOptions:
    """What the researcher chose for the tasks (``None``: the cluster's default)."""

    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    cpus_per_task: int = 1
    max_parallel: int | None = None
    requeue: bool = False
    job_name: str | None = None
    sbatch_args: tuple[str, ...] = ()
    points_per_task: int | None = None  # None: chosen from the cost of a point
    memory_budget: str | None = None  # the memory of one ensemble in a task (None: from --mem)

    def check(self) -> None:
        """``ValueError`` naming the option for a value Slurm would refuse or lcnrun sets itself."""
        from ..estimate import parse_bytes  # noqa: PLC0415
        from .bundle import MAX_POINTS_PER_TASK, parse_time_limit  # noqa: PLC0415

        if self.cpus_per_task < 1:
            raise ValueError(f"--cpus-per-task must be at least 1 (got {self.cpus_per_task})")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise ValueError(f"--max-parallel must be at least 1 (got {self.max_parallel})")
        if self.points_per_task is not None and not 1 <= self.points_per_task <= MAX_POINTS_PER_TASK:
            raise ValueError(f"--points-per-task must be 1 .. {MAX_POINTS_PER_TASK} (got "
                             f"{self.points_per_task})")
        for value, option in ((self.partition, "--partition"), (self.time, "--time"),
                              (self.mem, "--mem"), (self.job_name, "--job-name"),
                              (self.memory_budget, "--memory-budget")):
            if value is not None and (not value.strip() or any(c in value for c in "\n\r")):
                raise ValueError(f"{option}: empty or multi-line value {value!r}")
        parse_time_limit(self.time)
        for value, option, unit in ((self.mem, "--mem", "m"), (self.memory_budget, "--memory-budget", "")):
            if value is not None:
                try:
                    parse_bytes(value, default_unit=unit)
                except ValueError as err:
                    raise ValueError(f"{option}: {err}") from None
        for arg in self.sbatch_args:
            if not arg.startswith("-") or any(c in arg for c in "\n\r"):
                raise ValueError(f"--sbatch-arg {arg!r}: expected one sbatch option, e.g. "
                                 "--sbatch-arg=--qos=short")
            name = sbatch_option_name(arg)
            if name in RESERVED_OPTIONS:
                raise ValueError(f"--sbatch-arg {arg!r}: lcnrun submit sets {name} itself "
                                 f"({RESERVED_OPTIONS[name]})")

    def task_memory_budget(self) -> int | None:
        """Bytes one ensemble of a task may use: ``--memory-budget``, else half of ``--mem``
        (:data:`lcnrun.schedule.estimate.MEMORY_FRACTION`); ``None``: the task decides from the
        memory Slurm gives it."""
        from ..estimate import MEMORY_FRACTION, parse_bytes  # noqa: PLC0415

        if self.memory_budget is not None:
            return parse_bytes(self.memory_budget)
        if self.mem is not None:
            return int(parse_bytes(self.mem, default_unit="m") * MEMORY_FRACTION)
        return None


@dataclass
class SubmissionPlan:
    """Everything a submission writes and runs; :func:`lcnrun.schedule.slurm.script.script_text`
    renders the batch script of array ``k``.

    ``tasks``: the points of each task (``(sweep index, run id)``, index order), in task order;
    ``arrays``: how the tasks are split.
    """

    experiment: str
    spec_path: Path
    results: Path
    slurm_dir: Path
    tag: str
    tasks: list[list[Point]]
    arrays: list[ArrayPlan]
    options: SubmitOptions
    max_array_size: int
    python: str = field(default_factory=lambda: sys.executable)
    workdir: Path = field(default_factory=Path.cwd)
    force: bool = False  # tasks run their points even if a completed run file exists
    #: the run files the experiment will have (its index job merges the entries of all of them):
    #: its points, or the files there already (orphans of an edited spec too) if more; 0: the tasks'
    experiment_runs: int = 0
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc)
                             .isoformat(timespec="seconds"))

    @property
    def points(self) -> list[Point]:
        """Every point, in task order."""
        return [p for task in self.tasks for p in task]

    @property
    def job_name(self) -> str:
        return self.options.job_name or self.experiment

    @property
    def tasks_file(self) -> Path:
        return self.slurm_dir / f"{self.tag}.tasks"

    def script_path(self, k: int) -> Path:
        return self.slurm_dir / (f"{self.tag}.sbatch" if len(self.arrays) == 1 else f"{self.tag}-{k + 1}.sbatch")

    @property
    def index_script_path(self) -> Path:
        """The batch script of the index job (:func:`lcnrun.schedule.slurm.script.index_script_text`)."""
        return self.slurm_dir / f"{self.tag}-index.sbatch"

    def tasks_text(self) -> str:
        return "".join(f"{format_indices([i for i, _ in task])} {','.join(r for _, r in task)}\n"
                       for task in self.tasks)

    def array_points(self, k: int) -> int:
        """The number of points of array ``k``."""
        a = self.arrays[k]
        return sum(len(t) for t in self.tasks[a.offset: a.offset + a.count])


def new_tag(slurm_dir: Path, now: datetime | None = None) -> str:
    """A fresh submission tag ``submit-YYYYmmddTHHMMSSZ`` (``-2``, ``-3`` ... if taken)."""
    now = now or datetime.now(timezone.utc)
    base = "submit-" + now.strftime("%Y%m%dT%H%M%SZ")
    tag, n = base, 1
    while (slurm_dir / f"{tag}.tasks").exists():
        n += 1
        tag = f"{base}-{n}"
    return tag


def plan_submission(experiment: str, spec_path: Path, results: Path, tasks: Sequence[Sequence[Point]],
                    options: SubmitOptions, *, max_array_size: int, tag: str | None = None,
                    python: str | None = None, workdir: Path | None = None,
                    force: bool = False, experiment_runs: int = 0) -> SubmissionPlan:
    """The arrays, files and scripts that would submit ``tasks`` (each a list of ``(index,
    run_id)``); ``force``: the tasks recompute completed points too (``lcnrun run --force``);
    ``experiment_runs``: :attr:`SubmissionPlan.experiment_runs`."""
    options.check()
    results = Path(results).absolute()
    slurm_dir = results / experiment / SLURM_DIR
    tasks = [sorted(t) for t in tasks]
    return SubmissionPlan(
        experiment=experiment, spec_path=Path(spec_path).absolute(), results=results,
        slurm_dir=slurm_dir, tag=tag or new_tag(slurm_dir), tasks=tasks,
        arrays=plan_arrays(len(tasks), max_array_size), options=options,
        max_array_size=max_array_size, python=python or sys.executable,
        workdir=Path(workdir or Path.cwd()).absolute(), force=force,
        experiment_runs=experiment_runs)
