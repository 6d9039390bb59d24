"""Sweeps on a Slurm cluster: the pending points of an experiment as array jobs, submitted with
``sbatch`` and left to Slurm (nothing waits on the login node).

A submission (:func:`plan_submission`, then :func:`submit`) writes into ``results/<name>/slurm/``:

- ``<tag>.tasks``: one line ``INDEX RUN_ID`` per submitted point, in task order (the pending points
  of a sweep need not be contiguous, so array task ``i`` does not simply run point ``i``);
- ``<tag>.sbatch`` (or ``<tag>-<k>.sbatch``, one per array when the points are split): the batch
  script. Task ``i`` of an array with offset ``o`` reads line ``o + i + 1`` of the tasks file and
  ``exec`` s ``lcnrun run SPEC --index INDEX`` with the submitting interpreter, so that Slurm's
  SIGTERM (``scancel``, a time limit, a preemption) reaches the run itself: the runner turns it
  into a ``stopped`` run file, written atomically;
- ``%A_%a.out``: each task's log (array job id, array task id);
- ``submissions.jsonl``: one JSON line per submission (see :func:`submit`), from which
  :func:`slurm_states` maps the array tasks that ``squeue`` (and ``sacct``) list to run ids.

Arrays hold at most the cluster's ``MaxArraySize`` tasks (task ids ``0 .. MaxArraySize - 1``, read
from ``scontrol show config``): more points are split into several arrays, each with the offset of
its first line in the tasks file (:func:`plan_arrays`). ``max_parallel`` is Slurm's ``%K``
throttle; split arrays then run one after the other (``--dependency=afterany``), so that no more
than ``K`` tasks of the submission run at once.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..policy import LIVE, should_run
from ..store.experiment import ExperimentDir

SLURM_DIR = "slurm"
SUBMISSIONS = "submissions.jsonl"
SUBMISSION_FORMAT = "lcnrun-slurm-submission"
SUBMISSION_VERSION = 1
#: Slurm's default ``MaxArraySize``, assumed when ``scontrol`` cannot be asked (``--dry-run``)
DEFAULT_MAX_ARRAY_SIZE = 1001
#: seconds before the time limit at which the batch shell (lcnrun, after ``exec``) gets SIGTERM
STOP_WARNING_SECONDS = 60
COMMAND_TIMEOUT = 60.0
#: sbatch options that ``lcnrun submit`` sets itself (``--sbatch-arg`` may not)
RESERVED_OPTIONS = {"--array": "the array is planned by lcnrun", "-a": "the array is planned by lcnrun",
                    "--output": "logs go to results/<name>/slurm/%A_%a.out",
                    "-o": "logs go to results/<name>/slurm/%A_%a.out",
                    "--job-name": "use --job-name", "-J": "use --job-name",
                    "--chdir": "tasks run in the submitting folder", "-D": "tasks run in the submitting folder",
                    "--wrap": "lcnrun writes the batch script", "--parsable": "lcnrun reads the job id",
                    "--wait": "lcnrun submit never waits: follow with lcnrun status"}
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")

#: Slurm job states -> what ``lcnrun status`` shows for a task that is still live
LIVE_STATES = {
    "PENDING": "queued", "REQUEUED": "queued", "REQUEUE_FED": "queued", "REQUEUE_HOLD": "queued",
    "RESV_DEL_HOLD": "queued", "SPECIAL_EXIT": "queued",
    "RUNNING": "running", "CONFIGURING": "running", "COMPLETING": "running", "SIGNALING": "running",
    "STAGE_OUT": "running", "RESIZING": "running", "SUSPENDED": "running", "STOPPED": "running",
}
#: ... and for a task that ended without leaving a run file (a task that wrote one: the file says)
ENDED_STATES = {
    "FAILED": "failed", "OUT_OF_MEMORY": "failed", "NODE_FAIL": "failed", "BOOT_FAIL": "failed",
    "DEADLINE": "failed", "CANCELLED": "stopped", "TIMEOUT": "stopped", "PREEMPTED": "stopped",
}


class SlurmError(Exception):
    """Slurm cannot be used or refused a request: one message for the user."""


# -- asking Slurm ----------------------------------------------------------------------------------
def require_command(name: str) -> str:
    """The path of the Slurm command ``name`` (``sbatch`` ...); :class:`SlurmError` if missing."""
    path = shutil.which(name)
    if path is None:
        raise SlurmError(f"`{name}` not found on PATH: Slurm is not installed here (run lcnrun "
                         "submit on the cluster's login node, or `lcnrun sweep` to run locally)")
    return path


def _slurm_message(stderr: str, stdout: str = "") -> str:
    """Slurm's error lines on one line, without the ``sbatch: error:`` prefixes."""
    lines = [re.sub(r"^\w+: (error|fatal): ", "", line.strip())
             for line in (stderr or stdout).splitlines() if line.strip()]
    return "; ".join(lines) or "no message"


def run_command(args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
                cwd: os.PathLike | str | None = None) -> subprocess.CompletedProcess:
    """Run a Slurm command (``args[0]`` looked up on PATH); :class:`SlurmError` if it cannot run."""
    exe = require_command(args[0])
    try:
        return subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(args[:2])}` did not answer within {timeout:.0f} s (is the "
                         "Slurm controller up?)") from None
    except OSError as err:
        raise SlurmError(f"cannot run {args[0]}: {err}") from None


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` output -> ``{key: value}``."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def slurm_config() -> dict[str, str]:
    """The controller's configuration (``scontrol show config``)."""
    proc = run_command(["scontrol", "show", "config"])
    if proc.returncode != 0:
        raise SlurmError(f"scontrol show config failed: {_slurm_message(proc.stderr, proc.stdout)}")
    return parse_config(proc.stdout)


def max_array_size(config: Mapping[str, str]) -> int:
    """``MaxArraySize``: array task ids run from 0 to ``MaxArraySize - 1``."""
    try:
        value = int(str(config.get("MaxArraySize", "")).split()[0])
    except (ValueError, IndexError):
        return DEFAULT_MAX_ARRAY_SIZE
    return max(1, value)


# -- planning --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayPlan:
    """One array job: its tasks ``0 .. count - 1`` run lines ``offset + 1 .. offset + count`` of the
    submission's tasks file (the points ``offset .. offset + count - 1`` in task order)."""

    offset: int
    count: int

    def array_option(self, max_parallel: int | None) -> str:
        """The value of ``--array``: ``0-(count-1)``, with ``%K`` when throttled."""
        spec = f"0-{self.count - 1}" if self.count > 1 else "0"
        return spec + (f"%{max_parallel}" if max_parallel else "")


def plan_arrays(n_points: int, max_array_size: int) -> list[ArrayPlan]:
    """Split ``n_points`` tasks into arrays of at most ``max_array_size`` tasks (task ids
    ``0 .. max_array_size - 1``), in task order: full arrays first, the remainder last, so array
    ``k`` has ``offset = k * max_array_size``."""
    if n_points < 0 or max_array_size < 1:
        raise ValueError(f"bad plan: {n_points} points, MaxArraySize {max_array_size}")
    return [ArrayPlan(offset, min(max_array_size, n_points - offset))
            for offset in range(0, n_points, max_array_size)]


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

    def check(self) -> None:
        """``ValueError`` naming the option for a value Slurm would refuse or lcnrun sets itself."""
        if self.cpus_per_task < 1:
            raise ValueError(f"--cpus-per-task must be at least 1 (got {self.cpus_per_task})")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise ValueError(f"--max-parallel must be at least 1 (got {self.max_parallel})")
        for value, option in ((self.partition, "--partition"), (self.time, "--time"),
                              (self.mem, "--mem"), (self.job_name, "--job-name")):
            if value is not None and (not value.strip() or any(c in value for c in "\n\r")):
                raise ValueError(f"{option}: empty or multi-line value {value!r}")
        for arg in self.sbatch_args:
            if not arg.startswith("-") or any(c in arg for c in "\n\r"):
                raise ValueError(f"--sbatch-arg {arg!r}: expected one sbatch option, e.g. "
                                 "--sbatch-arg=--qos=short")
            name = re.split(r"[=\s]", arg, maxsplit=1)[0] if arg.startswith("--") else arg[:2]
            if name in RESERVED_OPTIONS:
                raise ValueError(f"--sbatch-arg {arg!r}: lcnrun submit sets {name} itself "
                                 f"({RESERVED_OPTIONS[name]})")


@dataclass
class SubmissionPlan:
    """Everything a submission writes and runs; :meth:`script` is the batch script of array ``k``.

    ``points``: ``(sweep index, run id)`` in task order; ``arrays``: how they are split.
    """

    experiment: str
    spec_path: Path
    results: Path
    slurm_dir: Path
    tag: str
    points: list[tuple[int, str]]
    arrays: list[ArrayPlan]
    options: SubmitOptions
    max_array_size: int
    python: str = field(default_factory=lambda: sys.executable)
    workdir: Path = field(default_factory=Path.cwd)
    force: bool = False  # tasks run their point even if a completed run file exists
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc)
                             .isoformat(timespec="seconds"))

    @property
    def job_name(self) -> str:
        return self.options.job_name or self.experiment

    @property
    def tasks_file(self) -> Path:
        return self.slurm_dir / f"{self.tag}.tasks"

    def script_path(self, k: int) -> Path:
        return self.slurm_dir / (f"{self.tag}.sbatch" if len(self.arrays) == 1 else f"{self.tag}-{k + 1}.sbatch")

    def tasks_text(self) -> str:
        return "".join(f"{index} {run_id}\n" for index, run_id in self.points)

    def script(self, k: int) -> str:
        """The batch script of array ``k`` (0-based)."""
        return script_text(self, k)


def _sbatch_line(option: str, value: object | None = None, comment: str = "") -> str:
    text = f"#SBATCH {option}" if value is None else f"#SBATCH {option}={value}"
    return text + (f"  # {comment}" if comment else "")


def script_text(plan: SubmissionPlan, k: int) -> str:
    """The sbatch script of array ``k`` of ``plan`` (see the module docstring)."""
    from .. import __version__  # noqa: PLC0415

    array = plan.arrays[k]
    opts = plan.options
    q = shlex.quote
    first, last = array.offset + 1, array.offset + array.count
    part = f"array {k + 1} of {len(plan.arrays)}: " if len(plan.arrays) > 1 else ""
    lines = [
        "#!/bin/bash",
        f"# Written by `lcnrun submit` (lcnrun {__version__}) at {plan.created_utc} for experiment "
        f"{plan.experiment}:",
        f"# {part}{array.count} point{'s' if array.count != 1 else ''}, lines {first}-{last} of "
        f"{plan.tasks_file.name} (INDEX RUN_ID).",
        "# Task i runs the sweep point on line OFFSET + i + 1 of that file with lcnrun run.",
        _sbatch_line("--job-name", q(plan.job_name)),
        _sbatch_line("--array", array.array_option(opts.max_parallel)),
        _sbatch_line("--output", q(str(plan.slurm_dir / "%A_%a.out"))),
        _sbatch_line("--chdir", q(str(plan.workdir))),
        _sbatch_line("--cpus-per-task", opts.cpus_per_task),
    ]
    if opts.partition:
        lines.append(_sbatch_line("--partition", q(opts.partition)))
    if opts.time:
        lines.append(_sbatch_line("--time", q(opts.time)))
    if opts.mem:
        lines.append(_sbatch_line("--mem", q(opts.mem)))
    if opts.requeue:
        lines.append(_sbatch_line("--requeue", comment="preempted or on a failed node: back in the queue"))
        lines.append(_sbatch_line("--open-mode", "append", comment="a requeued task adds to its log"))
    lines += [
        f"# SIGTERM {STOP_WARNING_SECONDS} s before the time limit, to the batch shell (B:), which "
        "is lcnrun after",
        "# `exec`: the run ends as a `stopped` run file before Slurm's SIGKILL (KillWait after its "
        "own SIGTERM).",
        _sbatch_line("--signal", f"B:TERM@{STOP_WARNING_SECONDS}"),
    ]
    lines += [_sbatch_line(arg) for arg in opts.sbatch_args]
    python = q(plan.python)
    lines += [
        "",
        "set -u",
        f"OFFSET={array.offset}",
        f"TASKS={q(str(plan.tasks_file))}",
        'LINE=$(sed -n "$((OFFSET + SLURM_ARRAY_TASK_ID + 1))p" "$TASKS")',
        'read -r INDEX RUN_ID <<<"$LINE"',
        'if [ -z "${RUN_ID:-}" ]; then',
        '    echo "lcnrun: no line $((OFFSET + SLURM_ARRAY_TASK_ID + 1)) in $TASKS" >&2',
        "    exit 2",
        "fi",
        "# BLAS/OpenMP threads: the cpus Slurm allotted to this task",
        *[f"export {name}=${{SLURM_CPUS_PER_TASK:-1}}" for name in BLAS_VARIABLES],
        "export NO_COLOR=1  # plain lines in the log",
        'echo "[$(date \'+%F %T\')] task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (job '
        '${SLURM_JOB_ID}) on $(hostname): point ${INDEX}, run ${RUN_ID}, '
        '${SLURM_CPUS_PER_TASK:-1} cpu(s), restart ${SLURM_RESTART_COUNT:-0}"',
        "# exec: lcnrun replaces this shell, so that Slurm's signals reach it",
        f"exec {python} -m lcnrun.cli run {q(str(plan.spec_path))} --index \"$INDEX\" "
        f"--expect-run-id \"$RUN_ID\" --results {q(str(plan.results))}" + (" --force" if plan.force else ""),
        "",
    ]
    return "\n".join(lines)


def new_tag(slurm_dir: Path, now: datetime | None = None) -> str:
    """A fresh submission tag ``submit-YYYYmmddTHHMMSSZ`` (``-2``, ``-3`` ... if taken)."""
    now = now or datetime.now(timezone.utc)
    base = "submit-" + now.strftime("%Y%m%dT%H%M%SZ")
    tag, n = base, 1
    while (slurm_dir / f"{tag}.tasks").exists():
        n += 1
        tag = f"{base}-{n}"
    return tag


def plan_submission(experiment: str, spec_path: Path, results: Path, points: Sequence[tuple[int, str]],
                    options: SubmitOptions, *, max_array_size: int, tag: str | None = None,
                    python: str | None = None, workdir: Path | None = None,
                    force: bool = False) -> SubmissionPlan:
    """The arrays, files and scripts that would submit ``points`` (``(index, run_id)``);
    ``force``: the tasks recompute completed points too (``lcnrun run --force``)."""
    options.check()
    results = Path(results).absolute()
    slurm_dir = results / experiment / SLURM_DIR
    return SubmissionPlan(
        experiment=experiment, spec_path=Path(spec_path).absolute(), results=results,
        slurm_dir=slurm_dir, tag=tag or new_tag(slurm_dir), points=list(points),
        arrays=plan_arrays(len(points), max_array_size), options=options,
        max_array_size=max_array_size, python=python or sys.executable,
        workdir=Path(workdir or Path.cwd()).absolute(), force=force)


# -- choosing the points ---------------------------------------------------------------------------
@dataclass
class Selection:
    """The points of an experiment split by what ``lcnrun submit`` does with them (each a list
    of :class:`lcnrun.report.status.RunState`)."""

    submit: list = field(default_factory=list)
    completed: list = field(default_factory=list)
    live: list = field(default_factory=list)  # queued or running (Slurm, or a local sweep)
    kept: list = field(default_factory=list)  # failed / diverged / unreadable, not submitted


def select_points(states: Iterable, *, rerun_failed: bool = False, force: bool = False) -> Selection:
    """What to submit, as :func:`lcnrun.policy.should_run` decides for every verb: points with no
    run file and ``stopped`` ones; ``failed`` and ``diverged`` ones with ``rerun_failed``;
    everything with ``force``; never a point that is queued or running now."""
    sel = Selection()
    for s in states:
        if s.state in LIVE:
            sel.live.append(s)
        elif should_run(s.state, force=force, rerun_failed=rerun_failed):
            sel.submit.append(s)
        elif s.state == "completed":
            sel.completed.append(s)
        else:
            sel.kept.append(s)
    return sel


# -- submitting ------------------------------------------------------------------------------------
@dataclass
class SubmittedArray:
    job_id: str
    offset: int
    count: int
    array: str
    script: str
    dependency: str | None = None


class SubmitError(SlurmError):
    """sbatch refused an array; ``submitted`` holds the arrays it accepted before."""

    def __init__(self, message: str, submitted: list[SubmittedArray]):
        super().__init__(message)
        self.submitted = submitted


def sbatch(script: Path, *, dependency: str | None = None, cwd: Path | None = None) -> str:
    """``sbatch --parsable SCRIPT``; returns the job id. :class:`SlurmError` with sbatch's message."""
    args = ["sbatch", "--parsable"]
    if dependency:
        args.append(f"--dependency={dependency}")
    proc = run_command([*args, str(script)], cwd=cwd)
    job_id = proc.stdout.strip().split(";")[0].strip()
    if proc.returncode != 0 or not job_id.isdigit():
        raise SlurmError(f"sbatch refused the job: {_slurm_message(proc.stderr, proc.stdout)}")
    return job_id


def submit(plan: SubmissionPlan, xdir: ExperimentDir) -> dict:
    """Write the tasks file and the scripts, submit every array, record the submission in
    ``slurm/submissions.jsonl``; returns the record::

        {"format", "version", "tag", "time_utc", "experiment", "job_name", "spec", "results",
         "workdir", "python", "user", "host", "max_array_size", "options": {...}, "force",
         "tasks_file", "points": [[index, run_id], ...]  (task order),
         "arrays": [{"job_id", "offset", "count", "array", "script", "dependency"}, ...],
         "job_ids": [...]}

    Task ``i`` of array ``a`` runs ``points[a.offset + i]``. If sbatch refuses an array, the ones
    it accepted before are recorded and :class:`SubmitError` is raised; if it accepted none, the
    files written for this submission are removed.
    """
    plan.slurm_dir.mkdir(parents=True, exist_ok=True)
    written = [plan.tasks_file]
    with open(plan.tasks_file, "x", encoding="utf-8") as fh:  # "x": a tag is never reused
        fh.write(plan.tasks_text())
    for k in range(len(plan.arrays)):
        path = plan.script_path(k)
        path.write_text(plan.script(k), encoding="utf-8")
        path.chmod(0o755)
        written.append(path)
    with _no_interruption():  # a job that sbatch accepted is always recorded
        return _submit_arrays(plan, xdir, written)


@contextlib.contextmanager
def _no_interruption():
    """Ignore Ctrl-C (SIGINT) for the duration (main thread only)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _submit_arrays(plan: SubmissionPlan, xdir: ExperimentDir, written: list[Path]) -> dict:
    submitted: list[SubmittedArray] = []
    error = None
    for k, array in enumerate(plan.arrays):
        # with a throttle, split arrays run one after the other: never more than K tasks at once
        dependency = (f"afterany:{submitted[-1].job_id}"
                      if submitted and plan.options.max_parallel else None)
        try:
            job_id = sbatch(plan.script_path(k), dependency=dependency, cwd=plan.workdir)
        except SlurmError as err:
            error = err
            break
        submitted.append(SubmittedArray(job_id, array.offset, array.count,
                                        array.array_option(plan.options.max_parallel),
                                        str(plan.script_path(k)), dependency))
    if not submitted:
        for path in written:
            path.unlink(missing_ok=True)
        raise SubmitError(str(error), [])
    record = {
        "format": SUBMISSION_FORMAT, "version": SUBMISSION_VERSION, "tag": plan.tag,
        "time_utc": plan.created_utc, "experiment": plan.experiment, "job_name": plan.job_name,
        "spec": str(plan.spec_path), "results": str(plan.results), "workdir": str(plan.workdir),
        "python": plan.python, "user": _user(), "host": socket.gethostname(),
        "max_array_size": plan.max_array_size, "options": asdict(plan.options), "force": plan.force,
        "tasks_file": str(plan.tasks_file), "points": [list(p) for p in plan.points],
        "arrays": [asdict(a) for a in submitted], "job_ids": [a.job_id for a in submitted],
    }
    append_submission(xdir, record)
    if error is not None:
        done = sum(a.count for a in submitted)
        raise SubmitError(f"{error} (array {len(submitted) + 1} of {len(plan.arrays)}; the first "
                          f"{done} points are submitted as job{'s' if len(submitted) > 1 else ''} "
                          f"{', '.join(a.job_id for a in submitted)})", submitted)
    return record


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def submissions_path(xdir: ExperimentDir) -> Path:
    return xdir.root / SLURM_DIR / SUBMISSIONS


def append_submission(xdir: ExperimentDir, record: dict) -> None:
    """Append one line to ``slurm/submissions.jsonl`` (under the experiment's lock)."""
    path = submissions_path(xdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, separators=(",", ":")) + "\n"
    with xdir.lock(timeout=60):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def read_submissions(xdir: ExperimentDir) -> list[dict]:
    """The submissions of an experiment, oldest first (unreadable lines skipped)."""
    try:
        text = submissions_path(xdir).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("format") == SUBMISSION_FORMAT:
            out.append(record)
    return out


# -- what Slurm says about the tasks ---------------------------------------------------------------
@dataclass(frozen=True)
class TaskState:
    """One array task as ``squeue`` / ``sacct`` report it."""

    job_id: str  # the array job id (%F / the part before "_")
    task_id: int
    state: str  # Slurm's state, e.g. RUNNING, FAILED
    started: bool
    name: str = ""


def _started(start: str) -> bool:
    return bool(start) and start[0].isdigit()


def parse_squeue(text: str) -> list[TaskState]:
    """Lines ``%F|%K|%T|%S|%j`` of ``squeue -h -r`` (array job, task, state, start, name)."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) < 4 or not parts[1].isdigit():
            continue
        out.append(TaskState(parts[0], int(parts[1]), parts[2].split()[0] if parts[2] else "",
                             _started(parts[3]), parts[4] if len(parts) > 4 else ""))
    return out


def parse_sacct(text: str) -> list[TaskState]:
    """Lines ``JobID|State|Start|JobName`` of ``sacct -n -P -X`` (array tasks ``123_4`` only)."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        m = re.fullmatch(r"(\d+)_(\d+)", parts[0]) if parts else None
        if m is None or len(parts) < 3:
            continue
        out.append(TaskState(m[1], int(m[2]), parts[1].split()[0] if parts[1] else "",
                             _started(parts[2]), parts[3] if len(parts) > 3 else ""))
    return out


def squeue_tasks(job_ids: Iterable[str]) -> list[TaskState]:
    """The tasks of these array jobs that the controller still knows (live ones, and finished
    ones for ``MinJobAge`` seconds). :class:`SlurmError` if ``squeue`` cannot be asked."""
    ids = sorted(set(job_ids), key=int)
    if not ids:
        return []
    proc = run_command(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids), "-o", "%F|%K|%T|%S|%j"])
    if proc.returncode != 0:
        if "invalid job id" in proc.stderr.lower():  # none of them is known any more
            return []
        raise SlurmError(f"squeue failed: {_slurm_message(proc.stderr, proc.stdout)}")
    return parse_squeue(proc.stdout)


def sacct_tasks(job_ids: Iterable[str]) -> list[TaskState]:
    """What the accounting database says about these array jobs' tasks; ``[]`` when there is no
    accounting (``sacct`` missing, or ``AccountingStorageType=none``)."""
    ids = sorted(set(job_ids), key=int)
    if not ids:
        return []
    try:
        proc = run_command(["sacct", "-n", "-P", "-X", "-j", ",".join(ids),
                            "-o", "JobID,State,Start,JobName"], timeout=30)
    except SlurmError:
        return []
    return parse_sacct(proc.stdout) if proc.returncode == 0 else []


def _task_index(submissions: Sequence[dict]) -> dict[tuple[str, int], tuple[str, int, str]]:
    """``{(array job id, task id): (run id, order, job name)}``; later submissions have larger order."""
    out = {}
    order = 0
    for sub in submissions:
        points = sub.get("points") or []
        for array in sub.get("arrays") or []:
            try:
                job_id, offset, count = str(array["job_id"]), int(array["offset"]), int(array["count"])
            except (KeyError, TypeError, ValueError):
                continue
            for i in range(count):
                if offset + i < len(points):
                    out[(job_id, i)] = (str(points[offset + i][1]), order, str(sub.get("job_name", "")))
                    order += 1
    return out


def task_states(submissions: Sequence[dict], tasks: Iterable[TaskState],
                has_file: Iterable[str] = ()) -> dict[str, str]:
    """``{run_id: state}`` from the tasks Slurm reports, for ``lcnrun status``:

    - ``queued`` / ``running`` for a run with a live task (any submission);
    - otherwise, if its latest task ended badly and left no run file (``has_file``: ids of the
      run files there are): ``failed`` (FAILED, OUT_OF_MEMORY, NODE_FAIL ...) or ``stopped``
      (CANCELLED or TIMEOUT after it started, PREEMPTED); a run file always has the last word
      over a finished task.

    A task whose job name differs from the recorded one is another job that reuses the id (a
    cluster whose job ids restarted) and is ignored.
    """
    index = _task_index(submissions)
    has_file = set(has_file)
    live: dict[str, str] = {}
    latest: dict[str, tuple[int, str]] = {}
    for t in tasks:
        known = index.get((t.job_id, t.task_id))
        if known is None:
            continue
        run_id, order, name = known
        if t.name and name and t.name != name:
            continue
        if t.state in LIVE_STATES:
            if live.get(run_id) != "running":
                live[run_id] = LIVE_STATES[t.state]
            continue
        ended = ENDED_STATES.get(t.state)
        if ended == "stopped" and t.state == "CANCELLED" and not t.started:
            ended = None  # cancelled before it ran: simply pending
        if run_id not in latest or order > latest[run_id][0]:
            latest[run_id] = (order, ended or "")
    out = dict(live)
    for run_id, (_, ended) in latest.items():
        if run_id not in out and ended and run_id not in has_file:
            out[run_id] = ended
    return out


def slurm_states(source) -> dict[str, str]:
    """The status probe (``lcnrun.report.status.SCHEDULER_PROBES``): ``{run_id: state}`` for the
    runs of ``source`` that this experiment's recorded array jobs know about (see
    :func:`task_states`); ``{}`` for an experiment never submitted to Slurm."""
    xdir = getattr(source, "xdir", None)
    if xdir is None:
        return {}
    submissions = read_submissions(xdir)
    if not submissions:
        return {}
    job_ids = {str(j) for sub in submissions for j in sub.get("job_ids") or []}
    tasks = squeue_tasks(job_ids)
    seen = {t.job_id for t in tasks}
    if job_ids - seen:  # finished long ago (no longer in squeue): the accounting may know them
        tasks += sacct_tasks(job_ids - seen)
    return task_states(submissions, tasks, source.run_files())


def register_status_probe() -> None:
    """Let ``lcnrun status`` ask Slurm (idempotent)."""
    from ..report.status import SCHEDULER_PROBES  # noqa: PLC0415

    if slurm_states not in SCHEDULER_PROBES:
        SCHEDULER_PROBES.append(slurm_states)
