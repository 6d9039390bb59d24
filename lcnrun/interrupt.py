"""A process's stop requests (SIGTERM: a time limit, a preemption, ``kill``) and the test-only
barriers that pause a process at a named phase.

**Stop requests.** :func:`install` makes SIGTERM *record* a request (:func:`stop_requested`) for
the rest of the process's life: a signal that arrives at start-up, while a claim is taken, while a
run is set up or while a file is written is never lost. Inside :func:`stoppable` (a run's
computation) a request raises :class:`StopRequested` at once, and entering :func:`stoppable`
after a request raises it too, so a run that had not begun its computation ends ``stopped``
before computing anything. Outside it only the flag is set: what is being written is finished
whole. The callbacks given to :func:`install` run on every request (a sweep worker uses one to
stop waiting for another process's claim).

**Barriers** (tests only). ``LCNRUN_TEST_BARRIER="phase[@N]=PATH[;...]"`` makes every process
that reaches :func:`barrier` ``(phase)`` for the ``N``-th time (default the first) create
``PATH.reached.<pid>`` and wait until ``PATH`` exists or this process is asked to stop (then,
inside :func:`stoppable`, the request raises there). A test waits for the ``.reached`` files,
sends its signal (or kills), and knows exactly where each process was: no sleeps, no step counts
calibrated to a machine's speed. Each process pauses at most once per phase. Phases: ``claimed`` (a worker holds the claims of its
task, nothing computed), ``computing`` (inside the dynamics, between two steps),
``writing`` (a run file's temporary is written, not yet renamed onto its final name),
``started`` (a sweep worker or ``lcnrun run`` has installed its SIGTERM handling).
Without the variable a barrier is a dictionary look-up.

This module imports nothing of lcnrun: every layer above the core may use it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BARRIER_VARIABLE = "LCNRUN_TEST_BARRIER"
PHASES = ("started", "claimed", "computing", "writing")

_requested: str | None = None  # why this process was asked to stop (None: not asked)
_stoppable_depth = 0  # > 0 inside a run's computation: a request raises StopRequested there
_deferring = 0  # > 0 inside deferred(): a request raises only at the next check()
_callbacks: list[Callable[[], None]] = []
_arrivals: dict[str, int] = {}  # times this process reached each named barrier phase


class StopRequested(Exception):
    """Raised inside a run's computation when the process is asked to stop (SIGTERM)."""


def stop_requested() -> str | None:
    """The reason this process was asked to stop (``"received SIGTERM"``), or None."""
    return _requested


def request_stop(reason: str = "received SIGTERM") -> None:
    """Record a stop request (what the SIGTERM handler does); raises :class:`StopRequested` inside
    :func:`stoppable`. The callbacks run first (each may raise to abandon what it guards)."""
    global _requested
    if _requested is None:
        _requested = reason
    for callback in list(_callbacks):
        callback()
    if _stoppable_depth > 0 and _deferring == 0:
        raise StopRequested(_requested)


def _on_sigterm(signum, frame) -> None:
    request_stop("received SIGTERM")


def install(*callbacks: Callable[[], None]) -> bool:
    """Handle SIGTERM as a stop request from now on (main thread only; False elsewhere, where
    signals cannot be handled). ``callbacks`` run on every request."""
    _callbacks.extend(callbacks)
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


@contextlib.contextmanager
def handling(*callbacks: Callable[[], None]) -> Iterator[None]:
    """:func:`install` for the duration of a block (a CLI verb): a command run in-process (a
    test's CliRunner, a notebook) leaves the process's SIGTERM handling, callbacks and stop flag
    as it found them. In a process that exits after the command this is :func:`install`."""
    global _requested
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    requested, n_callbacks = _requested, len(_callbacks)
    install(*callbacks)
    try:
        yield
    finally:
        del _callbacks[n_callbacks:]
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
            if previous is not _on_sigterm:
                _requested = requested


def installed() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """A run's computation: a stop request (earlier, or while inside) raises
    :class:`StopRequested`. Installs the SIGTERM handler for its duration if none is installed
    (a library caller in the main thread), restoring the previous one after."""
    global _stoppable_depth
    previous = None
    if not installed() and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _stoppable_depth += 1
    try:
        if _requested is not None:
            raise StopRequested(_requested)
        yield
    finally:
        _stoppable_depth -= 1
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside a loop that calls :func:`check` between its steps and saves its state there (a
    checkpoint): a request only records, and raises at the next :func:`check`, so that the loop
    is stopped at a step boundary, never in the middle of a step."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def check() -> None:
    """Raise :class:`StopRequested` if a stop was requested (a poll for code that runs where the
    signal handler cannot raise, e.g. between calls of a compiled kernel)."""
    if _requested is not None and _stoppable_depth > 0:
        raise StopRequested(_requested)


def barrier(phase: str) -> None:
    """Pause here if ``LCNRUN_TEST_BARRIER`` names ``phase`` (see the module docstring)."""
    spec = os.environ.get(BARRIER_VARIABLE)
    if not spec:
        return
    found = _barrier_of(spec, phase)
    if found is None:
        return
    nth, path = found
    _arrivals[phase] = _arrivals.get(phase, 0) + 1
    if _arrivals[phase] != nth:
        return
    reached = path.with_name(f"{path.name}.reached.{os.getpid()}")
    reached.write_text(f"{os.getpid()}\n")
    while not path.exists() and _requested is None:
        time.sleep(0.005)
    check()


def _barrier_of(spec: str, phase: str) -> tuple[int, Path] | None:
    """``(N, PATH)`` of ``phase`` in a barrier specification, or None."""
    for item in spec.split(";"):
        name, _, path = item.partition("=")
        name, _, nth = name.strip().partition("@")
        if name == phase and path.strip():
            return (int(nth) if nth.strip().isdigit() else 1), Path(path.strip())
    return None
