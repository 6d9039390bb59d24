"""Helpers shared by the flow figures (``output-metric-rate``, ``balancing``, ``balanced-learning``,
``fast-slow``): rebuilding a run's problem from its resolved spec, labels, line fits."""
from __future__ import annotations

import json

import numpy as np

from ..core.models import MODELS
from ..runner import build_problem


def rebuild(run_spec):
    """``(model, problem)`` of a resolved run spec (the problem includes the spec's weight decay)."""
    problem = build_problem(run_spec)
    return problem.model, problem


def _plain(x):
    return [_plain(a) for a in x] if isinstance(x, (list, tuple)) else x


def compact(v) -> str:
    return json.dumps(_plain(v), separators=(",", ":"))


def arch_label(run_spec) -> str:
    """``dense [6,8,3]`` or ``lcn filters [3,3] strides [1,1]``: the model's
    :meth:`~lcnrun.core.models.Model.label`."""
    return MODELS[run_spec.model.kind](run_spec.model.options).label()


def slope(t, y) -> float:
    """Least-squares slope of ``y`` against ``t`` (NaN with fewer than 2 points)."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    if t.size < 2:
        return float("nan")
    return float(np.polyfit(t, y, 1)[0])


def fro(a, axes) -> np.ndarray:
    """Frobenius norms over ``axes``."""
    a = np.asarray(a, dtype=float)
    return np.sqrt(np.sum(a * a, axis=axes))


def colors(plt, n: int) -> list:
    """``n`` distinct colours (tab10, then tab20), never grey: grey is kept for comparison runs."""
    base = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
    extra = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 and i not in (15,)]
    cyc = base + extra
    return [cyc[i % len(cyc)] for i in range(n)]


def fmt_max(values) -> str:
    v = [x for x in values if np.isfinite(x)]
    return f"{max(v):.2e}" if v else "nan"
