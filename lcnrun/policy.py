"""Should this point run? One answer for ``lcnrun run``, ``lcnrun sweep`` and ``lcnrun submit``.

The decision reads the point's run file (its content, never its modification time: clocks of a
shared file system disagree) and the flags:

==============================  ==============  =================  ===========
the point's state               (no flag)       ``--rerun-failed``  ``--force``
==============================  ==============  =================  ===========
no run file (``pending``)       run             run                run
``stopped`` (SIGTERM, a limit)  run             run                run
``failed``, ``diverged``        keep            run                run
``completed``                   keep            keep               run
``unreadable``                  keep            keep               run
``queued``, ``running``         never           never              never
written during this sweep       never           never              never
==============================  ==============  =================  ===========

- ``lcnrun run`` names its point: it is run with ``--rerun-failed`` implied (a failed or diverged
  point named on the command line is run again; a completed one needs ``--force``).
- ``queued`` / ``running``: another process holds the point's claim, or Slurm has a task for it.
- **Never twice in one sweep.** A sweep (or one ``lcnrun run``) reads every point's
  :class:`FileState` when it plans, before it computes anything. A point whose file is no longer
  the one planned from (another sweep of the experiment, running at the same time, or a worker of
  this one, wrote it since) is taken as it is, whatever the flags: two sweeps started with
  ``--force`` at once compute each point once. A file is told apart by its ``write_token`` (a
  random token every write of a run file stores), for files written before the token existed by
  their inode, size and modification time *as an identity*, compared for equality only.

This module reads run files (:mod:`lcnrun.store`) and nothing above: ``workflow``, the schedulers
and the CLI import it.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .store.runfile import RunFileError, read_run_state

PENDING = "pending"
UNREADABLE = "unreadable"
LIVE = ("queued", "running")  # someone is computing the point now (a claim, a Slurm task)
RUN_AGAIN = ("stopped",)  # interrupted, not finished: always run again
RERUN_FAILED = ("failed", "diverged")  # finished badly: run again with --rerun-failed


@dataclass(frozen=True)
class FileState:
    """What a point's run file says: ``status`` (``None``: no file; ``"unreadable"``: a file that
    is not a readable run file, ``reason`` says why) and ``identity`` (which file it is: equal
    identities, the same write; ``None`` without a file)."""

    status: str | None
    identity: tuple | None = None
    reason: str = ""


NO_FILE = FileState(None)


def file_state(path: os.PathLike | str) -> FileState:
    """The :class:`FileState` of the run file at ``path`` (only a regular file can be a run file:
    a FIFO or a folder of that name is ``unreadable``, and is never opened). Never raises."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return NO_FILE
    except OSError as err:
        return FileState(UNREADABLE, ("error", err.errno), f"cannot stat it: {err.strerror or err}")
    fallback = ("stat", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if not stat.S_ISREG(st.st_mode):
        return FileState(UNREADABLE, fallback, "not a regular file")
    try:
        status, token = read_run_state(path)
    except RunFileError as err:
        if not path.exists():  # removed between stat and read
            return NO_FILE
        return FileState(UNREADABLE, fallback, err.reason)
    return FileState(status, ("token", token) if token else fallback)


def should_run(status: str | None, *, force: bool = False, rerun_failed: bool = False) -> bool:
    """The table of the module docstring for a point in state ``status`` (a run file's status,
    ``None`` or ``"pending"`` for no file, ``"unreadable"``, or a live state)."""
    if status in LIVE:
        return False
    if status is None or status == PENDING or status in RUN_AGAIN or force:
        return True
    if status in RERUN_FAILED:
        return rerun_failed
    return False  # completed, unreadable: kept (--force replaces them)


def decide(now: FileState, *, force: bool = False, rerun_failed: bool = False,
           planned: FileState | None = None) -> bool:
    """Whether to compute a point whose run file is ``now`` (read under the point's claim).
    ``planned``: the state read when the sweep (or run) planned; a different file now means it
    was written during this sweep: never run it again."""
    if planned is not None and now.identity != planned.identity:
        return False
    return should_run(now.status, force=force, rerun_failed=rerun_failed)


def kept_reason(status: str | None, reason: str = "") -> str:
    """Why a point in ``status`` was not run, and the flag that would run it."""
    if status == UNREADABLE:
        return f"the existing run file is unreadable ({reason}); --force replaces it"
    if status in RERUN_FAILED:
        return f"run {status} before; --rerun-failed runs it again"
    if status == "completed":
        return "already completed; --force runs it again"
    if status in LIVE:
        return f"{status} in another process"
    return ""
