"""Paper figures. ``FIGURES`` is the only place a figure's name becomes a class."""
from __future__ import annotations

from .base import Claim, Figure, FigureResult, PointRuns

from .balanced_learning import BalancedLearning
from .balancing import Balancing
from .convergence import Convergence
from .fast_slow import FastSlow
from .invariants import Invariants
from .output_metric_rate import OutputMetricRate
from .repeated_filters import RepeatedFilters
from .riemannian_metric import RiemannianMetric
from .saxe_modes import SaxeModes

FIGURES: dict[str, type[Figure]] = {
    "repeated-filters": RepeatedFilters,
    "invariants": Invariants,
    "riemannian-metric": RiemannianMetric,
    "convergence": Convergence,
    "output-metric-rate": OutputMetricRate,
    "balancing": Balancing,
    "balanced-learning": BalancedLearning,
    "fast-slow": FastSlow,
    "saxe-modes": SaxeModes,
}

__all__ = ["FIGURES", "Claim", "Figure", "FigureResult", "PointRuns"]
