"""Between two steps of a run: the hook through which the run's caller may stop it.

Every dynamics loop calls :func:`poll` at its safe points (between two descent steps, between two
calls of a compiled kernel, after an accepted integrator step). By default that costs one
context-variable look-up. A caller that wants control (the runner: stop requests, test barriers)
installs a function with :func:`polling` for the duration of a computation; the function may
raise (e.g. ``StopRequested``) to end the computation there; the loops let the exception pass.
The core knows nothing of signals or files: what a poll does is the caller's.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

_poller: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "lcnrun_core_poller", default=None)


def poll() -> None:
    """Give the caller control (see the module docstring); a no-op unless :func:`polling` is on."""
    fn = _poller.get()
    if fn is not None:
        fn()


@contextlib.contextmanager
def polling(fn: Callable[[], None]) -> Iterator[None]:
    """Call ``fn`` at every :func:`poll` inside the block."""
    token = _poller.set(fn)
    try:
        yield
    finally:
        _poller.reset(token)
