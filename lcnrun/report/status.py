"""``lcnrun status``: where each point of an experiment stands.

The state of a point, first rule that applies:

1. ``running``: a live process holds its claim (:mod:`lcnrun.store.claims`: a local sweep worker);
2. the scheduler's word, if one is given (``scheduler={run_id: state}``: e.g. a Slurm module maps
   the array tasks it sees in ``squeue`` to ``queued`` / ``running``): it knows about live work,
   which files do not show yet;
3. its run file's status: ``completed``, ``diverged``, ``failed``, ``stopped`` (``unreadable`` for a
   file that is not a readable run file);
4. ``pending``: no run file yet.

Run files whose id is not a point of the experiment (left from an earlier version of the spec, or
of the code) are counted apart as ``orphans``. Statuses come from the run index beside the run
files (:mod:`lcnrun.store.index`: the same answer as reading every file), else three attributes
per file.
"""
from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store.claims import claimed_runs
from ..store.index import statuses
from ..store.runfile import RunFileError
from .source import ExperimentSource, file_reader

#: display order; a scheduler's own states (``queued`` ...) come after ``running``
STATUS_ORDER = ("completed", "diverged", "failed", "stopped", "unreadable", "running", "pending")
FINISHED_BAD = ("diverged", "failed", "stopped", "unreadable")


#: A probe is a function ``source -> {run_id: state}``, e.g. one that maps the array tasks
#: ``squeue`` lists for this experiment to ``queued`` / ``running``. The CLI composes the probes it
#: asks (this layer does not import the schedulers): arrows point down only.
Probe = Callable[[ExperimentSource], Mapping[str, str]]


def scheduler_states(source: ExperimentSource, probes: Iterable[Probe] = ()) -> tuple[dict[str, str], list[str]]:
    """What the ``probes`` (none by default: the caller names the schedulers it asks, e.g. the
    CLI's ``[slurm_states]``) say about ``source``'s runs, merged, and a note for each probe that
    failed (a scheduler that cannot be reached must not break ``status``)."""
    states: dict[str, str] = {}
    notes: list[str] = []
    for probe in probes:
        try:
            states.update(probe(source) or {})
        except Exception as err:  # noqa: BLE001
            notes.append(f"{getattr(probe, '__name__', probe)}: {type(err).__name__}: {err}")
    return states, notes


@dataclass(frozen=True)
class RunState:
    """One point (or orphan run file): ``index`` (``None`` for an orphan or a folder without
    sweep points), ``run_id``, ``state``, ``source`` (``claim``, ``scheduler``, ``file``,
    ``none``), the point's ``overrides`` and the file's status (``file_status``, if any)."""

    index: int | None
    run_id: str
    state: str
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)
    file_status: str | None = None
    holder: str = ""  # the claim's "<host> <pid> <start>" for a running point


@dataclass
class ExperimentStatus:
    """Where every point of an experiment stands: made from the points, the run files' statuses,
    the claims and the scheduler's word; each point's :class:`RunState` is made only when
    ``states`` (or ``orphans``) is read, ``counts`` needs none of them (100,000 points)."""

    label: str
    runs_dir: Path
    points: list | None                # the sweep points (ManifestRow), None: a folder of files
    files: dict[str, str]              # run id -> its file's status
    running: dict[str, str] = field(default_factory=dict)    # run id -> its claim's holder
    scheduler: dict[str, str] = field(default_factory=dict)  # run id -> the scheduler's state

    def state_of(self, run_id: str) -> str:
        """The state of the run ``run_id`` (the module docstring's rules)."""
        return self._rule(run_id)[0]

    def _rule(self, run_id: str) -> tuple[str, str]:
        """``(state, source)`` of ``run_id``: the first of the module docstring's rules that applies."""
        if run_id in self.running:
            return "running", "claim"
        if run_id in self.scheduler:
            return self.scheduler[run_id], "scheduler"
        if run_id in self.files:
            return self.files[run_id], "file"
        return "pending", "none"

    def _state(self, index, run_id, overrides) -> RunState:
        state, source = self._rule(run_id)
        return RunState(index, run_id, state, source, overrides, self.files.get(run_id),
                        self.running.get(run_id, ""))

    @functools.cached_property
    def states(self) -> list[RunState]:
        """One :class:`RunState` per point, in order (per run file for a folder of files)."""
        if self.points is None:
            return [self._state(None, rid, {}) for rid in self.files]
        return [self._state(p.index, p.run_id, dict(p.overrides)) for p in self.points]

    @functools.cached_property
    def orphans(self) -> list[RunState]:
        """The run files that are no point of the experiment."""
        if self.points is None:
            return []
        known = {p.run_id for p in self.points}
        return [self._state(None, rid, {}) for rid in self.files if rid not in known]

    def _ids(self) -> Iterable[str]:
        return self.files if self.points is None else (p.run_id for p in self.points)

    def counts(self) -> dict[str, int]:
        """``{state: number of points}`` in :data:`STATUS_ORDER` (states with 0 points left out),
        then any scheduler states; orphans are not counted."""
        if self.running or self.scheduler:
            c = collections.Counter(map(self.state_of, self._ids()))
        else:  # the common case, at C speed: the file's status, else pending
            c = collections.Counter(map(self.files.get, self._ids(), itertools.repeat("pending")))
        ordered = {k: c[k] for k in STATUS_ORDER if c.get(k)}
        ordered.update({k: v for k, v in sorted(c.items()) if k not in ordered})
        return ordered

    @property
    def total(self) -> int:
        return len(self.files) if self.points is None else len(self.points)

    @property
    def done(self) -> bool:
        """Every point completed."""
        return all(self.state_of(rid) == "completed" for rid in self._ids())


def experiment_status(source: ExperimentSource, *,
                      scheduler: Mapping[str, str] | None = None) -> ExperimentStatus:
    """The state of every point of ``source`` (see the module docstring).

    ``scheduler``: optional ``{run_id: state}`` from a cluster scheduler (only live work:
    ``queued``, ``running`` ...); it overrides what the files say for those runs.
    """
    files = statuses(source.runs_dir, reader=file_reader())
    return ExperimentStatus(source.label, source.runs_dir, source.points, files,
                            claimed_runs(source.runs_dir), dict(scheduler or {}))


def failure_messages(status: ExperimentStatus, states: list[RunState] | None = None) -> dict[str, str]:
    """``{run_id: message}`` from the run files of ``states`` (default: every point that has a
    file and is not completed); one attribute read per file."""
    from ..store.runfile import read_run_attrs  # noqa: PLC0415

    chosen = states if states is not None else [s for s in status.states
                                                if s.file_status not in (None, "completed")]
    out = {}
    for s in chosen:
        if s.file_status is None:
            continue
        path = status.runs_dir / f"{s.run_id}.h5"
        try:
            out[s.run_id] = str(read_run_attrs(path).get("message", "") or "")
        except RunFileError as err:
            out[s.run_id] = err.reason
    return out
