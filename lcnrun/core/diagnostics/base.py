"""The contract of a diagnostic (``diagnostics: [name, ...]`` in a spec).

A diagnostic reads a finished trajectory (and the problem it came from) and returns named results:
arrays (stored as datasets under ``diagnostics/<name>/`` in the run file; a ``/`` in a key nests)
and scalars (stored as attributes there, and shown as columns ``<name>.<key>`` by ``lcnrun summary``).
A new diagnostic is one file with a subclass of :class:`Diagnostic` plus one line in ``DIAGNOSTICS``.

A subclass

1. sets ``name`` and, if it only makes sense for some model families, ``models`` (e.g. ``("lcn",)``);
   for any other model :meth:`Diagnostic.compute` returns :meth:`DiagnosticResult.not_applicable`
   without calling the subclass;
2. may declare tunable tolerances as ``Options`` (a frozen dataclass of
   :func:`~lcnrun.core.options.option` fields, all with defaults, so ``DIAGNOSTICS[name]()`` works);
3. implements ``evaluate(problem, trajectory) -> DiagnosticResult``. Every result has the scalar
   ``applicable`` (``True`` unless the diagnostic cannot say anything about this run, then with a
   ``reason``), so summary columns line up across runs.

``needs_trajectory = False`` marks a diagnostic that only reads the problem (it can run before the
dynamics, ``trajectory=None``), e.g. the data condition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dynamics.base import Trajectory
from ..problem import Problem


@dataclass
class DiagnosticResult:
    """``arrays``: name -> ndarray; ``scalars``: name -> float/int/bool/str; ``warnings``: texts."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def not_applicable(cls, reason: str) -> "DiagnosticResult":
        return cls(scalars={"applicable": False, "reason": reason})


class Diagnostic:
    name = ""
    #: which model families it applies to (``None``: all)
    models: tuple[str, ...] | None = None
    #: False if it only needs the problem (may run before the dynamics)
    needs_trajectory: bool = True

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def check_options(cls, options: Any) -> None:
        """Raise :class:`~lcnrun.core.options.OptionError` for inconsistent keys."""

    def applies_to(self, model) -> bool:
        return self.models is None or model.name in self.models

    def compute(self, problem: Problem, trajectory: Trajectory | None) -> DiagnosticResult:
        if not self.applies_to(problem.model):
            return DiagnosticResult.not_applicable(
                f"{self.name} is defined for {', '.join(self.models or ())} models, "
                f"not {problem.model.name}")
        if self.needs_trajectory and (trajectory is None or len(trajectory.t) == 0):
            return DiagnosticResult.not_applicable("no stored trajectory point")
        result = self.evaluate(problem, trajectory)
        result.scalars.setdefault("applicable", True)
        result.scalars.setdefault("reason", "")
        return result

    def evaluate(self, problem: Problem, trajectory: Trajectory | None) -> DiagnosticResult:
        raise NotImplementedError


def trajectory_thetas(problem: Problem, trajectory: Trajectory) -> np.ndarray:
    """The stored parameters ``(T, P)`` of a trajectory (float)."""
    return np.asarray(trajectory.theta, dtype=float).reshape(len(trajectory.t), problem.model.n_params)


def subsample_indices(T: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` indices of ``0..T-1``, evenly spread, first and last included."""
    if T <= max_points:
        return np.arange(T)
    return np.unique(np.rint(np.linspace(0, T - 1, max_points)).astype(int))
