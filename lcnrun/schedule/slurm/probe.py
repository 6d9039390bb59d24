"""What Slurm says about a submission's tasks (``squeue``, and ``sacct`` for tasks the controller
has forgotten), mapped to the points they run: the status probe :func:`slurm_states`, which the
CLI passes to :func:`lcnrun.report.status.scheduler_states`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .commands import SlurmError, run_command, slurm_message
from .submit import read_submissions

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


@dataclass(frozen=True)
class TaskState:
    """One array task as ``squeue`` / ``sacct`` report it."""

    job_id: str  # the array job id (%F / the part before "_")
    task_id: int
    state: str  # Slurm's state, e.g. RUNNING, FAILED
    started: bool
    name: str = ""
    start: str = ""  # Slurm's start time, e.g. 2026-12-01T23:10:04 (the controller's local time)

    def start_epoch(self) -> float | None:
        """The start time in seconds since the epoch (``None`` if not started or unreadable)."""
        if not self.started:
            return None
        try:
            return datetime.fromisoformat(self.start).timestamp()
        except ValueError:
            return None


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
                             _started(parts[3]), parts[4] if len(parts) > 4 else "", parts[3]))
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
                             _started(parts[2]), parts[3] if len(parts) > 3 else "", parts[2]))
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
        raise SlurmError(f"squeue failed: {slurm_message(proc.stderr, proc.stdout)}")
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


@dataclass(frozen=True)
class _Task:
    run_ids: tuple[str, ...]
    order: int  # later submissions have larger order
    job_name: str


def task_index(submissions: Sequence[dict]) -> dict[tuple[str, int], _Task]:
    """``{(array job id, task id): the task's runs}`` of the recorded submissions (a version-1
    record, without ``task_sizes``, has one point per task)."""
    out = {}
    order = 0
    for sub in submissions:
        points = sub.get("points") or []
        sizes = sub.get("task_sizes") or [1] * len(points)
        starts = [0]
        for size in sizes:
            starts.append(starts[-1] + int(size))
        for array in sub.get("arrays") or []:
            try:
                job_id, offset, count = str(array["job_id"]), int(array["offset"]), int(array["count"])
            except (KeyError, TypeError, ValueError):
                continue
            for i in range(count):
                if offset + i < len(sizes):
                    lo, hi = starts[offset + i], starts[offset + i + 1]
                    out[(job_id, i)] = _Task(tuple(str(p[1]) for p in points[lo:hi]), order,
                                             str(sub.get("job_name", "")))
                    order += 1
    return out


def task_states(submissions: Sequence[dict], tasks: Iterable[TaskState],
                written: Mapping[str, float] | None = None) -> dict[str, str]:
    """``{run_id: state}`` from the tasks Slurm reports, for ``lcnrun status``; ``written``:
    ``{run_id: modification time}`` of the run files there are.

    - a queued task: ``queued`` for each of its points;
    - a running task: ``running`` for its one point; of a bundled task, its points whose run file
      was written since the task started are left to their files, the others are ``queued`` (they
      wait inside the task; those being computed hold their claims, which ``status`` shows as
      ``running`` first);
    - otherwise, if the latest task of a point ended badly and left no run file: ``failed``
      (FAILED, OUT_OF_MEMORY, NODE_FAIL ...) or ``stopped`` (CANCELLED or TIMEOUT after it
      started, PREEMPTED: a bundled task killed at its time limit before it reached the point); a
      run file always has the last word over a finished task.

    A task whose job name differs from the recorded one is another job that reuses the id (a
    cluster whose job ids restarted) and is ignored.
    """
    index = task_index(submissions)
    written = written or {}
    live: dict[str, str] = {}
    latest: dict[str, tuple[int, str]] = {}
    for t in tasks:
        known = index.get((t.job_id, t.task_id))
        if known is None or (t.name and known.job_name and t.name != known.job_name):
            continue
        if t.state in LIVE_STATES:
            for run_id, state in _live_states(known, t, written).items():
                if live.get(run_id) != "running":
                    live[run_id] = state
            continue
        ended = ENDED_STATES.get(t.state)
        if ended == "stopped" and t.state == "CANCELLED" and not t.started:
            ended = None  # cancelled before it ran: simply pending
        for run_id in known.run_ids:
            if run_id not in latest or known.order > latest[run_id][0]:
                latest[run_id] = (known.order, ended or "")
    out = dict(live)
    for run_id, (_, ended) in latest.items():
        if run_id not in out and ended and run_id not in written:
            out[run_id] = ended
    return out


def _live_states(task: _Task, t: TaskState, written: Mapping[str, float]) -> dict[str, str]:
    state = LIVE_STATES[t.state]
    if state != "running" or len(task.run_ids) == 1:
        return {run_id: state for run_id in task.run_ids}
    since = t.start_epoch()
    if since is None:
        return {run_id: state for run_id in task.run_ids}
    return {run_id: "queued" for run_id in task.run_ids if written.get(run_id, -1.0) < since}


def _mtimes(paths: Mapping[str, os.PathLike]) -> dict[str, float]:
    out = {}
    for run_id, path in paths.items():
        try:
            out[run_id] = os.stat(path).st_mtime
        except OSError:
            continue
    return out


def slurm_states(source) -> dict[str, str]:
    """The status probe: ``{run_id: state}`` for the runs of ``source`` (a
    :class:`lcnrun.report.source.ExperimentSource`) that this experiment's recorded array jobs
    know about (see :func:`task_states`); ``{}`` for an experiment never submitted to Slurm."""
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
    return task_states(submissions, tasks, _mtimes(source.run_files()))
