"""The contract of a diagnostic (``diagnostics: [name, ...]`` in a spec).

A diagnostic reads a finished trajectory (and the problem it came from) and returns named results:
arrays (stored as datasets under ``diagnostics/<name>/`` in the run file) and scalars (stored as
attributes there, and shown as columns ``<name>.<key>`` by ``lcnrun summary``). A new diagnostic is
one file with a subclass of :class:`Diagnostic` plus one line in ``DIAGNOSTICS``.
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


class Diagnostic:
    name = ""
    #: which model families it applies to (``None``: all)
    models: tuple[str, ...] | None = None

    def compute(self, problem: Problem, trajectory: Trajectory) -> DiagnosticResult:
        raise NotImplementedError
