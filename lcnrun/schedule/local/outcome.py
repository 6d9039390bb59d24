"""What a sweep reports: a result per point (:class:`PointResult`), the sweep's
:class:`SweepReport`, the :class:`SweepObserver` the CLI renders progress with."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ... import policy
from ...store.experiment import ExperimentDir
from ...store.runfile import RunFileError, read_run_attrs

UNREADABLE = policy.UNREADABLE


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
