"""The parent of a sweep: the pool of worker processes (spawned with pinned BLAS), handing out
units of work, collecting results, replacing dead workers, stopping on a signal; the clean-up of
what killed sweeps left behind."""
from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait as wait_for
from pathlib import Path

from ... import policy
from ...provenance import BLAS_VARIABLES, available_cores
from ...store.claims import clean_run_temporaries, clean_stale_claims, try_claim
from ...store.experiment import ExperimentDir
from ...store.index import merge_journals
from .grouping import ensemble_groups
from .outcome import UNREADABLE, PointResult, SweepError, SweepObserver, SweepReport, _kept
from .worker import _DONE, _READY, UnitOfWork, _worker_main

GRACE_SECONDS = 20.0  # how long interrupted runs may take to end before they are killed


# -- the parent ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _pinned_blas_environment():
    # every BLAS variable set to 1 before the worker starts (so before it imports numpy)
    saved = {name: os.environ.get(name) for name in BLAS_VARIABLES}
    os.environ.update({name: "1" for name in BLAS_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Worker:
    def __init__(self, ctx, exp, root: Path, number: int):
        parent_end, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child_end, exp, str(root), os.getpid(),
                                                       signal.getsignal(signal.SIGINT) == signal.SIG_IGN),
                                name=f"lcnrun-sweep-worker-{number}", daemon=True)
        with _pinned_blas_environment():
            self.proc.start()
        child_end.close()
        self.conn = parent_end
        self.task: UnitOfWork | None = None
        self.pending: list[int] = []  # points of its task without a result yet
        self.ready = False  # it has imported everything and said so

    def send(self, task: UnitOfWork | None) -> bool:
        try:
            self.conn.send(task)
        except (BrokenPipeError, OSError):
            return False
        if task is not None:
            self.task = task
            self.pending = list(task.indices)
        return True

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):
            if self.proc.is_alive():
                os.kill(self.proc.pid, signum)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()


class _Terminate(BaseException):
    pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "disappeared"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def _record_lost_point(exp, xdir: ExperimentDir, worker: _Worker, index: int) -> PointResult | None:
    """The worker running a point died: keep a run file it finished, else write a failed one.
    ``None`` if another process claimed the point meanwhile (it is then waited for)."""
    from ...provenance import collect_provenance, finish_provenance  # noqa: PLC0415
    from ...runner import make_record, seeds_of  # noqa: PLC0415
    from ...store.runfile import write_run  # noqa: PLC0415

    point = exp.points[index]
    claim = try_claim(xdir.runs_dir, point.run_id)
    if claim is None:
        return None
    with claim:
        clean_run_temporaries(claim, point.run_id)
        state = policy.file_state(xdir.run_path(point.run_id))
        planned = worker.task.planned.get(index, policy.NO_FILE)
        if state.status not in (None, UNREADABLE) and state.identity != planned.identity:
            return PointResult(point.index, point.run_id, state.status, "ran", "")  # it wrote it
        message = f"the worker process running this point {_describe_exit(worker.proc.exitcode)}"
        if len(worker.task.indices) > 1:
            message += f" (in an ensemble of {len(worker.task.indices)} points)"
        provenance = collect_provenance(seeds_of(point.run_spec))
        finish_provenance(provenance, message)
        record = make_record(point.run_spec, point.run_id, "failed", message, provenance)
        try:
            write_run(xdir.run_path(point.run_id), record)
        except OSError as err:
            message += f"; its failed run file could not be written ({err})"
        return PointResult(point.index, point.run_id, "failed", "lost", message)


def clean_leftovers(xdir: ExperimentDir) -> list[Path]:
    """Remove what killed sweeps left in an experiment folder: temporaries of dead writers and
    unheld claim files. Safe while other sweeps run (only what nobody can be writing goes):

    - in the folder itself (``manifest.tsv``, ``experiment.yaml``, written under the folder's
      lock): with the lock held, temporaries of dead writers on this host;
    - in ``runs/``: with a run's claim held, that run's temporaries of dead writers
      (:func:`lcnrun.store.claims.clean_run_temporaries`); unheld claim files;
    - anywhere: temporaries older than 10 minutes whose writer is gone
      (:meth:`ExperimentDir.clean_stale_temporaries`).
    """
    from ...store.atomic import TEMPORARY_PATTERN, host_tag, pid_alive  # noqa: PLC0415

    removed = xdir.clean_stale_temporaries()
    with contextlib.suppress(FileNotFoundError, TimeoutError), xdir.lock(timeout=10):
        for name in os.listdir(xdir.root):
            m = TEMPORARY_PATTERN.match(name)
            if m and m["host"] == host_tag() and not pid_alive(int(m["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    (xdir.root / name).unlink()
                    removed.append(xdir.root / name)
    removed += clean_stale_claims(xdir.runs_dir)
    stems = set()
    with contextlib.suppress(FileNotFoundError):
        stems = {m["stem"] for n in os.listdir(xdir.runs_dir) if (m := TEMPORARY_PATTERN.match(n))}
    for run_id in sorted(stems):
        claim = try_claim(xdir.runs_dir, run_id)
        if claim is not None:
            with claim:
                removed += clean_run_temporaries(claim, run_id)
    return removed


def run_sweep(exp, xdir: ExperimentDir, *, jobs: int | None = None, force: bool = False,
              rerun_failed: bool = False, observer: SweepObserver | None = None,
              indices: list[int] | None = None, grace_seconds: float = GRACE_SECONDS,
              max_members: int | None = None, memory_budget: int | None = None) -> SweepReport:
    """Compute the points of ``exp`` (all, or ``indices``) into the prepared folder ``xdir``.

    ``jobs``: worker processes (default: :func:`available_cores`; never more than units of work).
    ``max_members``: the largest ensemble (1: every point alone; default
    :data:`ENSEMBLE_MAX_MEMBERS`) and ``memory_budget`` the bytes one worker's ensemble may use
    (default: a share of the machine's memory), see :func:`ensemble_groups`.
    See the module docstring for what is skipped, re-run and guaranteed. Returns when every point
    has a result, or after an interruption (then ``report.interrupted`` is set and the points
    without a result are pending). Raises :class:`SweepError` if workers cannot start.
    """
    observer = observer or SweepObserver()
    started = time.perf_counter()
    jobs = available_cores() if jobs is None else max(1, int(jobs))
    chosen = list(range(len(exp.points))) if indices is None else list(indices)
    clean_leftovers(xdir)

    skipped, to_run, planned = [], [], {}
    for i in chosen:
        point = exp.points[i]
        planned[i] = state = policy.file_state(xdir.run_path(point.run_id))
        if policy.decide(state, force=force, rerun_failed=rerun_failed):
            to_run.append(i)
        else:
            skipped.append(_kept(xdir, i, point.run_id, state))
    queue = collections.deque(ensemble_groups(exp, to_run, jobs, max_members=max_members,
                                                memory_budget=memory_budget))
    report = SweepReport(total=len(chosen), workers=min(jobs, len(queue)))
    for r in skipped:
        report.results[r.index] = r
    observer.planned(len(chosen), len(to_run), skipped, report.workers)  # points, not ensembles
    if queue:
        _Pool(exp, xdir, report, observer, queue, force, rerun_failed, planned, grace_seconds).run()
        if not report.interrupted:  # the next status/summary reads one snapshot, not the journals
            merge_journals(xdir.runs_dir)
    report.elapsed = time.perf_counter() - started
    return report


class _Pool:
    """The parent's loop: hand out tasks, collect results, replace dead workers."""

    def __init__(self, exp, xdir, report, observer, queue, force, rerun_failed, planned, grace):
        self.exp, self.xdir, self.report, self.observer = exp, xdir, report, observer
        self.queue: collections.deque[tuple[int, ...]] = queue  # units of work (ensembles)
        self.deferred: collections.deque[tuple[int, ...]] = collections.deque()  # held by others
        self.force, self.rerun_failed, self.planned, self.grace = force, rerun_failed, planned, grace
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.started_workers = 0
        self.failed_starts = 0

    # -- workers --
    def _start_worker(self) -> None:
        self.started_workers += 1
        self.workers.append(_Worker(self.ctx, self.exp, self.xdir.root, self.started_workers))

    def _running(self) -> list[_Worker]:
        return [w for w in self.workers if w.task is not None]

    def _work_left(self) -> bool:
        return bool(self.queue or self.deferred)

    def _dispatch(self) -> None:
        for w in self.workers:
            if w.task is not None or not self._work_left():
                continue
            wait = not self.queue  # only points held by others are left: wait for them
            unit = (self.deferred if wait else self.queue).popleft()
            task = UnitOfWork(unit, self.force, self.rerun_failed,
                         {i: self.planned[i] for i in unit}, wait)
            if not w.send(task):
                (self.queue if not task.wait else self.deferred).appendleft(task.indices)

    def _finish(self, result: PointResult) -> None:
        self.report.results[result.index] = result
        self.observer.result(result)

    def _receive(self, w: _Worker) -> bool:
        """Read one message of ``w``; False if there was none (the worker is gone)."""
        try:
            result = w.conn.recv()
        except (EOFError, OSError):
            return False  # its sentinel will say so
        if result == _READY:
            w.ready = True
            return True
        if result == _DONE:
            w.task, w.pending = None, []
            return True
        if result.index in w.pending:
            w.pending.remove(result.index)
        if result.action == "busy":
            self.deferred.append((result.index,))
        else:
            self._finish(result)
        return True

    def _bury(self, w: _Worker) -> None:
        """``w`` died: settle its point, forget it."""
        while w.task is not None and w.conn.poll():  # what it sent before it died
            if not self._receive(w):
                break
        w.proc.join(timeout=1)
        self.workers.remove(w)
        w.close()
        task, pending = w.task, list(w.pending)
        if not w.ready:  # died while starting: not the point's fault
            self.failed_starts += 1
            w.task = None
            if task is not None:
                (self.deferred if task.wait else self.queue).appendleft(task.indices)
            return
        if task is None:
            return
        for index in pending:
            result = _record_lost_point(self.exp, self.xdir, w, index)
            if result is None:
                self.deferred.append((index,))
            else:
                self._finish(result)
        w.task, w.pending = None, []

    # -- the loop --
    def run(self) -> None:
        interrupted = None
        previous = None
        if threading.current_thread() is threading.main_thread():
            def on_sigterm(signum, frame):
                raise _Terminate()
            previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            try:
                self._loop()
            except KeyboardInterrupt:
                interrupted = signal.SIGINT
            except _Terminate:
                interrupted = signal.SIGTERM
            if interrupted is not None:
                self.report.interrupted = signal.Signals(interrupted).name
                self.observer.interrupting(self.report.interrupted)
                self._stop(interrupted)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self._shutdown()

    def _loop(self) -> None:
        target = self.report.workers
        while self._work_left() or self._running():
            while len(self.workers) < target and self._work_left():
                if self.failed_starts > 2 + target:
                    raise SweepError(f"{self.failed_starts} worker processes died before running "
                                     "anything (see the messages above)")
                self._start_worker()
            self._dispatch()
            objects = {w.conn: w for w in self.workers}
            objects.update({w.proc.sentinel: w for w in self.workers})
            ready = wait_for(list(objects), timeout=0.5)
            for obj in ready:  # results first: a worker may send its result and then die
                w = objects[obj]
                if obj is w.conn and w in self.workers:
                    self._receive(w)
            for obj in ready:
                w = objects[obj]
                if obj is w.proc.sentinel and w in self.workers:
                    self._bury(w)
            self.observer.tick()

    def _stop(self, signum: int) -> None:
        """Forward the signal to the workers, collect what they still report, kill the rest."""
        self.queue.clear()
        self.deferred.clear()
        for w in self.workers:
            w.signal(signum)
            if signum == signal.SIGTERM and w.task is None:
                w.send(None)
        deadline = time.monotonic() + self.grace
        try:
            while self.workers and time.monotonic() < deadline:
                objects = {w.conn: w for w in self.workers}
                objects.update({w.proc.sentinel: w for w in self.workers})
                for obj in wait_for(list(objects), timeout=0.2):
                    w = objects[obj]
                    if w not in self.workers:
                        continue
                    if obj is w.conn:
                        try:
                            result = w.conn.recv()
                        except (EOFError, OSError):
                            continue  # gone: its sentinel says so
                        if result == _READY:
                            continue
                        if result == _DONE:
                            w.task, w.pending = None, []
                            if signum == signal.SIGTERM:
                                w.send(None)
                            continue
                        if result.action != "busy":
                            self._finish(result)
                    else:
                        w.proc.join(timeout=1)
                        self.workers.remove(w)
                        w.close()
        except (KeyboardInterrupt, _Terminate):
            pass  # asked twice: stop waiting

    def _shutdown(self) -> None:
        for w in self.workers:
            w.send(None)
        deadline = time.monotonic() + 5
        for w in self.workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.close()
        self.workers.clear()
