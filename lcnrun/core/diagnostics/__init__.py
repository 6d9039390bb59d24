"""Geometric diagnostics. ``DIAGNOSTICS`` is the only place a diagnostic's name becomes a class."""
from .base import Diagnostic, DiagnosticResult
from .critical_points import CriticalPoints
from .data_condition import DataCondition, check_data_condition
from .function_space_metric import FunctionSpaceMetric
from .metric_consistency import MetricConsistency
from .parametrization_rank import ParametrizationRank
from .polynomial_structure import PolynomialStructure

DIAGNOSTICS: dict[str, type[Diagnostic]] = {
    "function_space_metric": FunctionSpaceMetric,
    "metric_consistency": MetricConsistency,
    "polynomial_structure": PolynomialStructure,
    "parametrization_rank": ParametrizationRank,
    "critical_points": CriticalPoints,
    "data_condition": DataCondition,
}

__all__ = ["DIAGNOSTICS", "Diagnostic", "DiagnosticResult", "check_data_condition"]
