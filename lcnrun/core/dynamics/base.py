"""The contract of a dynamics (``dynamics.kind``) and what it returns.

A dynamics moves a batch of parameter points ``theta0 (B, P)`` under a :class:`~lcnrun.core.problem.Problem`
and returns one :class:`Trajectory` per member, stored at the times the ``record`` section asks for.
A new dynamics is one file that

1. declares its spec keys as ``Options`` (a frozen, keyword-only dataclass that inherits
   :class:`StoppingOptions`, so every dynamics has the same stopping and divergence rules; flows
   inherit ``gradient_flow.FlowOptions``, descents ``gradient_descent.DescentOptions``);
2. implements ``run(problem, theta0, record) -> list[Trajectory]``, usually by composing a shared
   loop with a transform of the Euclidean gradient (``theta (P,), grad (P,) -> direction (P,)``):
   ``gradient_flow.flow_trajectory`` / ``integrate_states`` for flows (any state, e.g. the
   end-to-end matrix), ``gradient_descent.descend`` for descents; :class:`Event` adds located
   events (a rank condition, a loss level) to either;
3. declares ``models`` (the model kinds it is defined for) and ``keeps_end_to_end`` if it moves
   along a fiber, and overrides ``check_model`` for finer conditions;

4. if it has a loop of its own (not one of the shared ones, which do this already): applies the
   stopping rules through :class:`~.stopping.StopRules`, calls
   :func:`lcnrun.core.control.poll` ``(state)`` between two steps with a function returning its
   resumable state, and continues members from :func:`lcnrun.core.control.start_states` (so
   that a stopped run resumes from its checkpoint);

plus one line in ``DYNAMICS`` (``lcnrun/core/dynamics/__init__.py``). Per-dynamics series go to
``Trajectory.series`` (each ``(T, ...)``, aligned with ``t``), scalars to ``Trajectory.attrs``;
each module's docstring lists its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import control
from ..options import OptionError, option
from ..problem import Problem
from ..recording import RecordOptions

COMPLETED, DIVERGED, FAILED, STOPPED = "completed", "diverged", "failed", "stopped"


@dataclass(frozen=True, kw_only=True)
class StoppingOptions:
    """Stopping rules shared by every dynamics (applied by :class:`~.stopping.StopRules`)."""

    loss_below: float | None = option(None, kind="float", check="nonnegative", nullable=True,
                                      doc="stop (completed) once the loss is at most this")
    grad_norm_below: float | None = option(None, kind="float", check="nonnegative", nullable=True,
                                           doc="stop (completed) once |grad L| is at most this")
    divergence_factor: float = option(1.0e8, kind="float", check="at_least_one",
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


class Dynamics:
    """Base class of every dynamics."""

    name = ""
    Options: type = StoppingOptions
    #: model families (``model.kind``) it is defined for; ``None``: all
    models: tuple[str, ...] | None = None
    #: True if it moves along a fiber of the end-to-end map, so that the loss ``L`` stays constant
    #: (up to the integration error) instead of decreasing (balancing flows)
    keeps_end_to_end: bool = False

    def __init__(self, options):
        self.options = options

    @classmethod
    def check_options(cls, options) -> None:
        """Raise OptionError for inconsistent keys."""

    @classmethod
    def check_model(cls, model) -> None:
        """Raise ``OptionError("kind", ...)`` if this dynamics is not defined for ``model`` (the spec
        layer may call it to validate a spec; ``run`` calls it too)."""
        if cls.models is not None and model.name not in cls.models:
            raise OptionError("kind", f"{cls.name} is defined for model kind "
                                      f"{' or '.join(cls.models)}, not {model.name}")

    def run(self, problem: Problem, theta0: np.ndarray, record: RecordOptions) -> list[Trajectory]:
        raise NotImplementedError

    #: True if :meth:`run_members` computes the members together, each member's numbers bitwise
    #: those of its run alone, on a problem with a compiled form (``problem.compiled``: the square
    #: loss): then a sweep may group points into one ensemble
    batches_members: bool = False
    #: option names that may differ between the members of one ensemble
    ensemble_options: tuple[str, ...] = ()

    @classmethod
    def can_batch(cls, options) -> bool:
        """Whether a run with these options can be a member of a batched ensemble."""
        return cls.batches_members

    @classmethod
    def run_members(cls, problem, theta0: np.ndarray, records: list, options: list) -> list[Trajectory]:
        """An ensemble: member ``b`` from ``theta0[b]`` with its own ``records[b]`` and ``options[b]``
        on ``problem.member(b)``. Here: each member alone; dynamics that batch override it."""
        out = []
        for b, (r, o) in enumerate(zip(records, options)):
            with control.members([b]):  # its polls and start state are member b's
                out.append(cls(o).run(problem.member(b), theta0[b: b + 1], r)[0])
        return out
