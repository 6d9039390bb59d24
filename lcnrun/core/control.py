"""Between two steps of a run: the hook through which the run's caller may stop it, save it, and
start it again where it was.

Every dynamics loop calls :func:`poll` at its safe points (between two descent steps, between two
calls of a compiled kernel, after an accepted integrator step), passing ``state``: a function
(made once per loop) that returns the loop's *resumable state* there, ``{member: dict}``, each
dict holding plain data (numpy arrays, numbers, strings, lists and dicts of them) with at least
``t`` (and ``step`` for a descent). Without a caller that asks, a poll costs one context-variable
look-up and ``state`` is never called.

A caller that wants control (the runner: stop requests, test barriers, checkpoints) installs a
:class:`Poller` with :func:`polling` for the duration of a computation. Its ``__call__(state,
rows)`` may call ``state()`` (e.g. to save it) and may raise (e.g. ``StopRequested``) to end the
computation there; the loops let the exception pass. Its ``start`` maps a member to a state
that member resumes from: a loop asks :func:`start_states` before its first step and continues
each member found there exactly where that state was taken.

Members are numbered by the caller. A dynamics that computes a subset of its members (a group of
one method, one member alone) wraps the call in :func:`members` ``(rows)``: inside, member ``i``
is the caller's ``rows[i]``, for the polls' states and for :func:`start_states` alike.
The core knows nothing of signals or files: what a poll does is the caller's.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

State = Callable[[], dict]


class Poller(Protocol):
    """What :func:`polling` installs: called at every poll, ``start`` read by :func:`start_states`."""

    start: dict

    def __call__(self, state: State | None, rows: tuple[int, ...] | None) -> None: ...


class _Plain:
    """A function as a :class:`Poller` that ignores the states and resumes nothing."""

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn
        self.start: dict = {}

    def __call__(self, state, rows) -> None:
        self.fn()


_poller: contextvars.ContextVar[Poller | None] = contextvars.ContextVar(
    "lcnrun_core_poller", default=None)
_rows: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar(
    "lcnrun_core_rows", default=None)


def poll(state: State | None = None) -> None:
    """Give the caller control (see the module docstring); a no-op unless :func:`polling` is on."""
    fn = _poller.get()
    if fn is not None:
        fn(state, _rows.get())


@contextlib.contextmanager
def polling(fn: Poller | Callable[[], None]) -> Iterator[None]:
    """Call ``fn`` at every :func:`poll` inside the block: a :class:`Poller`, or a function of no
    argument (it then sees no states and resumes nothing)."""
    token = _poller.set(fn if hasattr(fn, "start") else _Plain(fn))
    try:
        yield
    finally:
        _poller.reset(token)


@contextlib.contextmanager
def members(rows: Sequence[int]) -> Iterator[None]:
    """Inside the block, member ``i`` of the polls and of :func:`start_states` is ``rows[i]``
    of the enclosing numbering."""
    outer = _rows.get()
    rows = tuple(int(r) for r in rows)
    token = _rows.set(rows if outer is None else tuple(outer[r] for r in rows))
    try:
        yield
    finally:
        _rows.reset(token)


def caller_member(i: int) -> int:
    """The caller's number of member ``i`` here."""
    rows = _rows.get()
    return i if rows is None else rows[i]


def start_states(n: int) -> list[dict | None]:
    """For members ``0..n-1``: the state each resumes from (``None``: from its start)."""
    fn = _poller.get()
    if fn is None or not fn.start:
        return [None] * n
    return [fn.start.get(caller_member(i)) for i in range(n)]
