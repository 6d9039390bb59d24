"""Claim files: who is computing a run right now, so that no run is computed twice at once.

Whoever computes a run ``<run_id>`` (a sweep worker) first takes its *claim*: an exclusive
``flock`` on ``runs/.<run_id>.claim``, held for the whole run (compute, write, rename) and released
by removing the file. Two sweeps of one experiment started at once therefore never compute the
same run at the same time: the second finds the claim taken and moves on (or waits for it).

- A lock dies with its process: after ``kill -9`` (or an OOM kill) the claim file stays behind
  but nobody holds its lock, so the next :func:`try_claim` takes it at once.
  :func:`clean_stale_claims` removes such leftovers.
- Removing a claim file is race-free: a holder removes the file only while it still holds the lock
  on the very inode the name points to, and a claimant that locked an inode whose name was removed
  meanwhile notices (inode check) and retries on the new file.
- Holding the claim of a run means nobody else (who follows this protocol) writes that run, so
  leftover temporaries of that run from dead writers can be removed at once
  (:func:`clean_run_temporaries`), without the age guard of
  :func:`lcnrun.store.atomic.clean_stale_temporaries`.
- The claim file holds one line ``<host> <pid> <UTC start>`` (who runs it; informational).
- ``flock`` works between processes of one host; across nodes only where the file system supports
  it (NFSv4, Lustre mounted with ``flock``).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from .atomic import TEMPORARY_PATTERN, host_tag, open_own_file, pid_alive

CLAIM_PATTERN = re.compile(r"^\.(?P<run_id>[A-Za-z0-9_-]+)\.claim$")


def claim_path(runs_dir: os.PathLike | str, run_id: str) -> Path:
    """``runs/.<run_id>.claim``."""
    return Path(runs_dir) / f".{run_id}.claim"


class Claim:
    """A held claim (see the module docstring); :meth:`release` (or leaving ``with``) gives it up."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the claim file (if it is still ours) and unlock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                if _same_file(fd, self.path):
                    os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # a forgotten claim is still given up when collected
        with contextlib.suppress(Exception):
            self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def try_claim(runs_dir: os.PathLike | str, run_id: str, *, wait: bool = False,
              timeout: float | None = None) -> Claim | None:
    """Take the claim of ``run_id``; ``None`` if someone else holds it.

    ``wait=True`` blocks until the claim is free (at most ``timeout`` seconds, then ``None``).
    The folder is created if needed.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = claim_path(runs_dir, run_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = open_own_file(path, os.O_RDWR | os.O_CREAT)
        try:
            if wait and deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if not wait or time.monotonic() >= deadline:
                            os.close(fd)
                            return None
                        time.sleep(0.02)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        if not _same_file(fd, path):  # its holder removed it before we got the lock: retry
            os.close(fd)
            continue
        try:
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.write(fd, f"{host_tag()} {os.getpid()} {stamp}\n".encode())
        except OSError:
            pass
        return Claim(path, fd)


def is_claimed(runs_dir: os.PathLike | str, run_id: str) -> bool:
    """Whether a live process holds the claim of ``run_id`` (a brief shared-lock probe)."""
    return _probe(claim_path(runs_dir, run_id))


def _probe(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as exc:  # e.g. a file system without flock: nobody can hold it either
        if exc.errno in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
            return False
        raise
    finally:
        os.close(fd)  # also unlocks
    return False


def claim_files(runs_dir: os.PathLike | str) -> dict[str, Path]:
    """``{run_id: path}`` of every claim file in ``runs_dir`` (held or stale)."""
    out: dict[str, Path] = {}
    try:
        names = os.listdir(runs_dir)
    except FileNotFoundError:
        return out
    for name in names:
        m = CLAIM_PATTERN.match(name)
        if m:
            out[m["run_id"]] = Path(runs_dir) / name
    return out


def claimed_runs(runs_dir: os.PathLike | str) -> dict[str, str]:
    """``{run_id: holder}`` of the runs being computed right now (held claims); ``holder`` is the
    claim file's ``<host> <pid> <start>`` line ("" if unreadable)."""
    out: dict[str, str] = {}
    for run_id, path in claim_files(runs_dir).items():
        if _probe(path):
            try:
                out[run_id] = path.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                out[run_id] = ""
    return out


def clean_stale_claims(runs_dir: os.PathLike | str) -> list[Path]:
    """Remove claim files nobody holds (left by killed processes); return them."""
    removed = []
    for run_id, path in claim_files(runs_dir).items():
        claim = try_claim(runs_dir, run_id)
        if claim is not None:
            claim.release()
            removed.append(path)
    return removed


def temporaries_of(runs_dir: os.PathLike | str, run_id: str) -> list[Path]:
    """Hidden temporaries of ``runs/<run_id>.h5`` (any writer)."""
    try:
        names = os.listdir(runs_dir)
    except FileNotFoundError:
        return []
    return [Path(runs_dir) / n for n in names
            if (m := TEMPORARY_PATTERN.match(n)) is not None and m["stem"] == run_id]


def clean_run_temporaries(claim: Claim, run_id: str, older_than_seconds: float = 600.0) -> list[Path]:
    """With the claim of ``run_id`` held, remove its leftover temporaries: those of a writer on
    this host that is dead, and any older than ``older_than_seconds`` (a writer elsewhere that
    has not touched its file for that long is gone too). Returns the removed paths."""
    if not claim.held:
        raise ValueError("clean_run_temporaries needs the run's claim held")
    removed = []
    now = time.time()
    for path in temporaries_of(claim.path.parent, run_id):
        m = TEMPORARY_PATTERN.match(path.name)
        dead_here = m["host"] == host_tag() and not pid_alive(int(m["pid"]))
        try:
            if not dead_here and now - path.stat().st_mtime < older_than_seconds:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
