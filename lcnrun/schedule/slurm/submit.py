"""Submitting a plan: its files written, every array given to ``sbatch``, the submission recorded.

``results/<name>/slurm/submissions.jsonl`` holds one JSON line per submission (:func:`submit`),
from which :mod:`.probe` maps the array tasks ``squeue`` and ``sacct`` list to run ids.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from ...store.atomic import open_own_file
from ...store.experiment import ExperimentDir
from .commands import SlurmError, run_command, slurm_message
from .plan import SLURM_DIR, SubmissionPlan
from .script import index_script_text, script_text

SUBMISSIONS = "submissions.jsonl"
SUBMISSION_FORMAT = "lcnrun-slurm-submission"
#: 2: bundled tasks (``task_sizes``); a version-1 record has one point per task
SUBMISSION_VERSION = 2


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
        raise SlurmError(f"sbatch refused the job: {slurm_message(proc.stderr, proc.stdout)}")
    return job_id


def submit(plan: SubmissionPlan, xdir: ExperimentDir) -> dict:
    """Write the tasks file and the scripts, submit every array, record the submission in
    ``slurm/submissions.jsonl``; returns the record::

        {"format", "version", "tag", "time_utc", "experiment", "job_name", "spec", "results",
         "workdir", "python", "user", "host", "max_array_size", "options": {...}, "force",
         "tasks_file", "points": [[index, run_id], ...]  (task order),
         "task_sizes": [points of task 0, of task 1, ...],
         "arrays": [{"job_id", "offset", "count", "array", "script", "dependency"}, ...],
         "job_ids": [...],
         "index_job": {"job_id", "script", "dependency"} (``job_id`` None and "error" sbatch's
                      message if it refused it)}

    Task ``i`` of array ``a`` is task ``a.offset + i``: the ``task_sizes[a.offset + i]`` points
    after those of the tasks before it. If sbatch refuses an array, the ones
    it accepted before are recorded and :class:`SubmitError` is raised; if it accepted none, the
    files written for this submission are removed. After the arrays, the index job
    (:func:`.script.index_script_text`) is submitted to start once all the accepted ones have
    ended (``afterany``); one that sbatch refuses (a limit on the number of jobs, say) is
    recorded with sbatch's message and costs only time: the first reader merges the index
    instead.
    """
    plan.slurm_dir.mkdir(parents=True, exist_ok=True)
    written = [plan.tasks_file]
    with open(plan.tasks_file, "x", encoding="utf-8") as fh:  # "x": a tag is never reused
        fh.write(plan.tasks_text())
    scripts = [(plan.script_path(k), script_text(plan, k)) for k in range(len(plan.arrays))]
    for path, text in scripts + [(plan.index_script_path, index_script_text(plan))]:
        with open(path, "x", encoding="utf-8") as fh:  # new files (never through a planted link)
            fh.write(text)
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
    index_job = _submit_index_job(plan, submitted)  # also after the arrays accepted before a refusal
    record = {
        "format": SUBMISSION_FORMAT, "version": SUBMISSION_VERSION, "tag": plan.tag,
        "time_utc": plan.created_utc, "experiment": plan.experiment, "job_name": plan.job_name,
        "spec": str(plan.spec_path), "results": str(plan.results), "workdir": str(plan.workdir),
        "python": plan.python, "user": _user(), "host": socket.gethostname(),
        "max_array_size": plan.max_array_size, "options": asdict(plan.options), "force": plan.force,
        "tasks_file": str(plan.tasks_file), "points": [list(p) for p in plan.points],
        "task_sizes": [len(t) for t in plan.tasks],
        "arrays": [asdict(a) for a in submitted], "job_ids": [a.job_id for a in submitted],
        "index_job": index_job,
    }
    append_submission(xdir, record)
    if error is not None:
        done = sum(len(t) for t in plan.tasks[: submitted[-1].offset + submitted[-1].count])
        raise SubmitError(f"{error} (array {len(submitted) + 1} of {len(plan.arrays)}; the first "
                          f"{done} points are submitted as job{'s' if len(submitted) > 1 else ''} "
                          f"{', '.join(a.job_id for a in submitted)})", submitted)
    return record


def _submit_index_job(plan: SubmissionPlan, submitted: list[SubmittedArray]) -> dict:
    """sbatch the index job of ``plan`` to start after every array of ``submitted``."""
    dependency = "afterany:" + ":".join(a.job_id for a in submitted)
    job = {"job_id": None, "script": str(plan.index_script_path), "dependency": dependency}
    try:
        job["job_id"] = sbatch(plan.index_script_path, dependency=dependency, cwd=plan.workdir)
    except SlurmError as err:
        job["error"] = str(err)
    return job


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
        with os.fdopen(open_own_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8") as fh:
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
