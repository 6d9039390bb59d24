"""A sweep's worker process: claim a unit of work (one point, or an ensemble), decide again under
the claims (:mod:`lcnrun.policy`), compute and write its run files; its signal handling (SIGTERM
is a stop request from the worker's first instruction, the worker dies with its sweep)."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

from ... import interrupt, policy
from ...store.claims import clean_run_temporaries, try_claim
from ...store.experiment import ExperimentDir
from .outcome import PointResult, _kept


# -- the worker process ----------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitOfWork:
    """What a worker (or ``lcnrun run --indices``) is handed at once: one point, or the points of
    one ensemble, with the sweep's flags (see :func:`attempt_unit`)."""

    indices: tuple[int, ...]  # one point, or the points of one ensemble
    force: bool
    rerun_failed: bool
    planned: dict  # index -> policy.FileState read when the sweep planned (never run twice)
    wait: bool  # block until the claim is free (otherwise give up: "busy")


_waiting_for_a_claim = False
_READY = "ready"
_DONE = "done"  # a worker sends one PointResult per point of its task, then this


def _on_worker_sigint(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
    raise KeyboardInterrupt


def abandon_claim_wait() -> None:
    # SIGTERM (the sweep's, Slurm's, or the parent's death): inside a run the runner turns it into
    # 'stopped' run files; outside, what is being written is finished and the worker exits after
    # its task. Waiting for another process's claim is given up at once.
    if _waiting_for_a_claim:
        raise KeyboardInterrupt


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM to this worker when the sweep process dies (Linux
    ``PR_SET_PDEATHSIG``), so that a worker whose sweep was killed (``kill -9``) stops within a
    step and releases its claims instead of computing for nobody; elsewhere the broken pipe
    ends the worker after its task."""
    try:
        import ctypes  # noqa: PLC0415
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        interrupt.request_stop("the sweep process died")


def attempt_unit(exp, xdir: ExperimentDir, task: UnitOfWork):
    """Yield one :class:`PointResult` per point of ``task``: claim each point (``busy`` if another
    process holds it), decide again under the claim, compute the points to run (together, as one
    ensemble, if there are several) and write their files, then give the claims up. A process
    that waits for claims (``task.wait``) and should give the wait up on a stop request installs
    :func:`abandon_claim_wait` with :func:`lcnrun.interrupt.install` (it raises KeyboardInterrupt)."""
    from ... import workflow  # noqa: PLC0415  (imported in the worker, after the BLAS variables)

    global _waiting_for_a_claim
    with contextlib.ExitStack() as claims:
        to_run = []
        for index in task.indices:
            point = exp.points[index]
            _waiting_for_a_claim = task.wait
            try:
                claim = try_claim(xdir.runs_dir, point.run_id, wait=task.wait)
            finally:
                _waiting_for_a_claim = False
            if claim is None:
                yield PointResult(point.index, point.run_id, "", "busy")
                continue
            claims.enter_context(claim)
            clean_run_temporaries(claim, point.run_id)
            state = policy.file_state(xdir.run_path(point.run_id))
            if not policy.decide(state, force=task.force, rerun_failed=task.rerun_failed,
                                 planned=task.planned.get(index, policy.NO_FILE)):
                yield _kept(xdir, point.index, point.run_id, state)
                continue
            to_run.append(point)
        if not to_run:
            return
        interrupt.barrier("claimed")
        start = time.perf_counter()
        done = 0
        try:
            for outcome in workflow.run_points(exp, xdir, to_run):
                done += 1
                yield PointResult(outcome.index, outcome.run_id, outcome.status, "ran",
                                  str(outcome.attrs.get("message", "") or ""),
                                  (time.perf_counter() - start) / len(to_run))
        except Exception as err:  # noqa: BLE001 - the runs themselves never raise: writing failed
            for point in to_run[done:]:
                yield PointResult(point.index, point.run_id, "failed", "error",
                                  f"could not write the run file: {type(err).__name__}: {err}",
                                  time.perf_counter() - start)


def _worker_main(conn, exp, root: str, parent_pid: int, ignore_sigint: bool = False) -> None:
    """A worker: receive tasks, send :class:`PointResult` s, until ``None`` or end of pipe.

    SIGTERM is a stop request (:mod:`lcnrun.interrupt`) from the worker's first instruction on:
    one that arrives while a task's claims are taken or its runs are set up still stops them. If
    the sweep process is gone (the pipe is broken), the task's remaining results are still
    written (every run file whole, ``stopped`` ones included), then the worker exits. A sweep
    that ignores SIGINT (started in the background by a script) has workers that ignore it too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else _on_worker_sigint)
    interrupt.install(abandon_claim_wait)
    _die_with_parent(parent_pid)
    interrupt.barrier("started")
    xdir = ExperimentDir(root)
    try:
        from ... import workflow  # noqa: F401, PLC0415  (numpy, scipy, h5py: once, before "ready")
        conn.send(_READY)
        while interrupt.stop_requested() is None:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            orphaned = False
            for result in attempt_unit(exp, xdir, task):
                if not orphaned:
                    try:
                        conn.send(result)
                    except (BrokenPipeError, OSError):
                        orphaned = True
            if orphaned:
                return
            conn.send(_DONE)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        return
