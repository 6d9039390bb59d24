"""The local scheduler: every point of an experiment, in a pool of worker processes.

:func:`run_sweep` computes the points of a prepared experiment (``workflow.prepare``) in ``jobs``
worker processes and returns a :class:`SweepReport`. What it guarantees:

- **Pinned BLAS.** Workers are started with the ``spawn`` method and ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` (and friends) set to 1 in their environment, so
  numpy's BLAS is single-threaded there from its first import: N workers use N cores.
- **Skips finished work** as :mod:`lcnrun.policy` decides (the one rule of run, sweep and
  submit): a point whose run file is ``completed`` is skipped; ``failed`` and ``diverged`` ones
  too unless ``rerun_failed``; ``stopped`` ones (interrupted by SIGTERM: a time limit, a
  preemption) are run again; ``force`` runs everything again. A run file written *during this
  sweep* (by it, or by another sweep of the same experiment running at the same time: a file that
  is not the one the sweep planned from) is never run again, whatever the flags. File times play
  no part (clock skew on a shared file system).
- **Exactly once under concurrency.** A worker holds the run's claim
  (:mod:`lcnrun.store.claims`) while it decides, computes and writes; the decision is taken again
  under the claim. A point whose claim another process holds is deferred and, once nothing else is
  left, waited for: its file then says how it ended (or, if its holder died, it is run here).
- **Ensembles.** Points that differ only in what an ensemble may vary (``runner.ensemble_key``:
  initialization, data, step size, ...) are handed to a worker together (at most
  :data:`ENSEMBLE_MAX_MEMBERS`, at most :data:`ENSEMBLE_MAX_DATASETS` distinct data sets, split so
  that every worker gets a share) and computed as one batched computation; each member still gets
  its own claim and its own run file, the same file as if it had run alone (bitwise the same
  numbers). Its run files are written one by one as the ensemble ends.
- **Failures are data.** A run that raises or diverges is recorded in its run file by the runner and
  does not stop the others. A worker that dies (``kill -9``, the OOM killer) loses only the point it
  was running: that point gets a ``failed`` run file naming the signal, a new worker takes over.
- **Interruptible.** Ctrl-C (SIGINT) stops at once: runs in progress are abandoned, leaving no
  file (their temporaries are removed), so they are pending on the next sweep. SIGTERM (``kill``,
  Slurm's time limit) asks the runs in progress to stop: they write ``stopped`` run files. Either
  way :attr:`SweepReport.interrupted` names the signal. After ``kill -9`` of everything, the next
  sweep removes the leftovers (temporaries, claim files of dead processes) before it starts.

Nothing here prints: progress goes to a :class:`SweepObserver`.
"""
from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path

from .. import interrupt, policy
from ..provenance import BLAS_VARIABLES, available_cores
from ..store.claims import clean_run_temporaries, clean_stale_claims, try_claim
from ..store.experiment import ExperimentDir
from ..store.runfile import RunFileError, read_run_attrs

GRACE_SECONDS = 20.0  # how long interrupted runs may take to end before they are killed
UNREADABLE = policy.UNREADABLE
#: at most this many points in one ensemble (each holds a claim, i.e. an open file, while it runs;
#: the stored trajectories of all members are in memory until they are written)
ENSEMBLE_MAX_MEMBERS = 512
#: at most this many distinct data sets in one ensemble (each problem keeps its data in memory)
ENSEMBLE_MAX_DATASETS = 16


class SweepError(Exception):
    """The sweep cannot go on (e.g. worker processes die as soon as they start)."""


@dataclass(frozen=True)
class PointResult:
    """What happened to one point.

    ``status``: the run file's status (``completed``, ``diverged``, ``failed``, ``stopped``), or
    ``unreadable`` (an existing file that is not a readable run file: kept, not overwritten
    without ``force``). ``action``: ``ran`` (computed now), ``skipped`` (its file was kept),
    ``lost`` (its worker died; a failed run file says so), ``error`` (the run could not be
    written, e.g. a full disk: ``message`` says why, no file). ``seconds``: wall time of the
    computation and writing in the worker (0 if not run).
    """

    index: int
    run_id: str
    status: str
    action: str
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "completed"


@dataclass
class SweepReport:
    """The outcome of :func:`run_sweep`: one :class:`PointResult` per point that got one (all of
    them unless interrupted), by index."""

    total: int
    workers: int
    results: dict[int, PointResult] = field(default_factory=dict)
    interrupted: str | None = None  # "SIGINT" / "SIGTERM"
    elapsed: float = 0.0

    @property
    def ran(self) -> list[PointResult]:
        return [r for r in self.sorted() if r.action in ("ran", "lost", "error")]

    @property
    def failures(self) -> list[PointResult]:
        """Points that did not end ``completed`` (this sweep or before), by index."""
        return [r for r in self.sorted() if not r.ok]

    @property
    def pending(self) -> int:
        return self.total - len(self.results)

    def sorted(self) -> list[PointResult]:
        return [self.results[i] for i in sorted(self.results)]

    def counts(self) -> dict[str, int]:
        """``{status: number of points}`` (``pending``: no result yet)."""
        out: dict[str, int] = collections.Counter(r.status for r in self.results.values())
        if self.pending:
            out["pending"] = self.pending
        return dict(out)


class SweepObserver:
    """Receives progress; the CLI renders it. Every method is optional (no-ops here)."""

    def planned(self, total: int, to_run: int, skipped: list[PointResult], workers: int) -> None:
        """Called once before anything runs: ``skipped`` are the points whose files are kept."""

    def result(self, result: PointResult) -> None:
        """A point got its result (in completion order)."""

    def tick(self) -> None:
        """Called about twice a second while the sweep runs (for periodic output)."""

    def interrupting(self, signal_name: str) -> None:
        """The sweep was interrupted and is stopping its workers."""


# -- the decision (lcnrun.policy), shared by the planner and the workers --------------------------
def _kept(xdir: ExperimentDir, index: int, run_id: str, state: policy.FileState) -> PointResult:
    """The result of a point whose run file is kept (its message read if it did not complete)."""
    status, message = state.status, ""
    if status == UNREADABLE:
        message = policy.kept_reason(status, state.reason)
    elif status != "completed":
        try:
            message = str(read_run_attrs(xdir.run_path(run_id)).get("message", "") or "")
        except RunFileError:
            pass
    return PointResult(index, run_id, status, "skipped", message)


# -- the worker process ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Task:
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


def _on_stop_request() -> None:
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


def _attempt(exp, xdir: ExperimentDir, task: _Task):
    """Yield one :class:`PointResult` per point of ``task``: claim each point (``busy`` if another
    process holds it), decide again under the claim, compute the points to run (together, as one
    ensemble, if there are several) and write their files, then give the claims up."""
    from .. import workflow  # noqa: PLC0415  (imported in the worker, after the BLAS variables)

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
    interrupt.install(_on_stop_request)
    _die_with_parent(parent_pid)
    interrupt.barrier("started")
    xdir = ExperimentDir(root)
    try:
        from .. import workflow  # noqa: F401, PLC0415  (numpy, scipy, h5py: once, before "ready")
        conn.send(_READY)
        while interrupt.stop_requested() is None:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            orphaned = False
            for result in _attempt(exp, xdir, task):
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
        self.task: _Task | None = None
        self.pending: list[int] = []  # points of its task without a result yet
        self.ready = False  # it has imported everything and said so

    def send(self, task: _Task | None) -> bool:
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
    from ..provenance import collect_provenance, finish_provenance  # noqa: PLC0415
    from ..runner import make_record, seeds_of  # noqa: PLC0415
    from ..store.runfile import write_run  # noqa: PLC0415

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
    from ..store.atomic import TEMPORARY_PATTERN, host_tag, pid_alive  # noqa: PLC0415

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


def _open_file_limit() -> int:
    try:
        import resource  # noqa: PLC0415
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return soft if soft > 0 else 1 << 16
    except (ImportError, OSError, ValueError):
        return 1024


def ensemble_groups(exp, indices, jobs: int, *, max_members: int | None = None,
                    memory_budget: int | None = None) -> list[tuple[int, ...]]:
    """The points ``indices`` as units of work: points with one ``runner.ensemble_key`` together,
    in chunks of at most ``max_members`` (default :data:`ENSEMBLE_MAX_MEMBERS`, and at most a
    quarter of the open-file limit: each member holds a claim) with at most
    :data:`ENSEMBLE_MAX_DATASETS` distinct data sets, and small enough that ``jobs`` workers all get
    a share, and whose memory stays within ``memory_budget`` bytes (default
    :func:`lcnrun.schedule.estimate.default_memory_budget`; see
    :func:`~lcnrun.schedule.estimate.ensemble_size_within`); points that cannot be batched alone.
    Ordered by their first point."""
    from ..runner import data_key, ensemble_key  # noqa: PLC0415

    cap = ENSEMBLE_MAX_MEMBERS if max_members is None else max(1, int(max_members))
    cap = max(1, min(cap, _open_file_limit() // 4))
    groups: dict[str, list[int]] = {}
    units: list[tuple[int, ...]] = []
    for i in indices:
        key = ensemble_key(exp.points[i].run_spec) if cap > 1 else None
        if key is None:
            units.append((i,))
        else:
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        size = min(cap, max(1, -(-len(members) // max(1, jobs))))
        size = min(size, _memory_cap(exp, members, jobs, memory_budget) or size)
        chunk: list[int] = []
        datasets: set[str] = set()
        for i in members:
            data = data_key(exp.points[i].run_spec)
            if len(chunk) >= size or (data not in datasets and len(datasets) >= ENSEMBLE_MAX_DATASETS):
                units.append(tuple(chunk))
                chunk, datasets = [], set()
            chunk.append(i)
            datasets.add(data)
        if chunk:
            units.append(tuple(chunk))
    units.sort(key=lambda u: u[0])
    return units


def _memory_cap(exp, members, jobs: int, memory_budget: int | None) -> int | None:
    """The largest ensemble of ``members`` within the memory budget (``None``: no budget known)."""
    from .estimate import default_memory_budget, ensemble_size_within  # noqa: PLC0415

    budget = default_memory_budget(jobs) if memory_budget is None else memory_budget
    return ensemble_size_within(budget, [exp.points[i].run_spec for i in members], ENSEMBLE_MAX_DATASETS)


def run_sweep(exp, xdir: ExperimentDir, *, jobs: int | None = None, force: bool = False,
              rerun_failed: bool = False, observer: SweepObserver | None = None,
              indices: list[int] | None = None, grace_seconds: float = GRACE_SECONDS,
              max_members: int | None = None) -> SweepReport:
    """Compute the points of ``exp`` (all, or ``indices``) into the prepared folder ``xdir``.

    ``jobs``: worker processes (default: :func:`available_cores`; never more than units of work).
    ``max_members``: the largest ensemble (1: every point alone; default
    :data:`ENSEMBLE_MAX_MEMBERS`), see :func:`ensemble_groups`.
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
    queue = collections.deque(ensemble_groups(exp, to_run, jobs, max_members=max_members))
    report = SweepReport(total=len(chosen), workers=min(jobs, len(queue)))
    for r in skipped:
        report.results[r.index] = r
    observer.planned(len(chosen), len(to_run), skipped, report.workers)  # points, not ensembles
    if queue:
        _Pool(exp, xdir, report, observer, queue, force, rerun_failed, planned, grace_seconds).run()
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
            task = _Task(unit, self.force, self.rerun_failed,
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
