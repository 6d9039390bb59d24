"""The contract of a dynamics (``dynamics.kind``) and what it returns.

A dynamics moves a batch of parameter points ``theta0 (B, P)`` under a :class:`~lcnrun.core.problem.Problem`
and returns one :class:`Trajectory` per member, stored at the times the ``record`` section asks for.
A new dynamics is one file that

1. declares its spec keys as ``Options`` (a frozen, keyword-only dataclass that inherits
   :class:`StoppingOptions`, so every dynamics has the same stopping and divergence rules);
2. implements ``run(problem, theta0, record) -> list[Trajectory]``;

plus one line in ``DYNAMICS`` (``lcnrun/core/dynamics/__init__.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..options import option
from ..problem import Problem
from ..recording import RecordOptions

COMPLETED, DIVERGED, FAILED, STOPPED = "completed", "diverged", "failed", "stopped"


@dataclass(frozen=True, kw_only=True)
class StoppingOptions:
    """Stopping rules shared by every dynamics."""

    loss_below: float | None = option(None, kind="float", check="nonnegative", nullable=True,
                                      doc="stop (completed) once the loss is at most this")
    grad_norm_below: float | None = option(None, kind="float", check="nonnegative", nullable=True,
                                           doc="stop (completed) once |grad L| is at most this")
    divergence_factor: float = option(1.0e8, kind="float", check="positive",
                                      doc="diverged once loss > divergence_factor * max(L(0), 1) "
                                          "or the loss is not finite")


@dataclass
class Trajectory:
    """One member's stored trajectory.

    ``t (T,)``, ``theta (T, P)``, ``loss (T,)``, ``grad_norm (T,)``; ``status`` is one of
    ``completed | diverged | failed | stopped`` and ``message`` says why a run ended early.
    ``series`` holds per-dynamics series ``(T, ...)`` (e.g. ``rank_D``), ``attrs`` scalars
    (``stop_reason``, ``n_steps``, ``nfev`` ...).
    """

    t: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    status: str = COMPLETED
    message: str = ""
    series: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """A scalar function of the state that *happens* when it falls to zero or below.

    ``fun(y, loss) -> float`` with ``y`` the state of one member (``(P,)`` for parameter dynamics)
    and ``loss`` its training loss. Flows locate the crossing with ``solve_ivp`` (direction -1, on
    accepted steps), descents test it at every step. A ``terminal`` event ends the member's run with
    ``status`` and the message ``"<message> at t = ..."``; a non-terminal one only records the first
    time it happened (0 if it already holds at t = 0, NaN if never). Examples: ``loss - eps``
    (first time the loss reached eps), ``sigma_k(D)/sigma_1(D) - rtol`` (the rank condition of the
    output-metric flow).
    """

    name: str
    fun: Callable[[np.ndarray, float], float]
    terminal: bool = False
    status: str = FAILED
    message: str = ""


def divergence_threshold(options: StoppingOptions, loss0: np.ndarray) -> np.ndarray:
    return options.divergence_factor * np.maximum(loss0, 1.0)


def stop_reason(options: StoppingOptions, loss: float, grad_norm: float) -> str | None:
    """Which stopping rule (if any) a state satisfies."""
    if options.loss_below is not None and loss <= options.loss_below:
        return "loss_below"
    if options.grad_norm_below is not None and grad_norm <= options.grad_norm_below:
        return "grad_norm_below"
    return None


class Dynamics:
    """Base class of every dynamics."""

    name = ""
    Options: type = StoppingOptions

    def __init__(self, options):
        self.options = options

    @classmethod
    def check_options(cls, options) -> None:
        """Raise OptionError for inconsistent keys."""

    def run(self, problem: Problem, theta0: np.ndarray, record: RecordOptions) -> list[Trajectory]:
        raise NotImplementedError
