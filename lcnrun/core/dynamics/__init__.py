"""Dynamics. ``DYNAMICS`` is the only place a spec's ``dynamics.kind`` becomes a class."""
from .balanced_learning_flow import BalancedLearningFlow
from .balancing_flow import BalancingFlow
from .base import COMPLETED, DIVERGED, FAILED, STOPPED, Dynamics, Event, StoppingOptions, Trajectory
from .gradient_descent import DescentOptions, GradientDescent
from .gradient_flow import FlowOptions, GradientFlow
from .output_metric_descent import OutputMetricDescent
from .output_metric_flow import OutputMetricFlow

DYNAMICS: dict[str, type[Dynamics]] = {
    "gradient_descent": GradientDescent,
    "gradient_flow": GradientFlow,
    "output_metric_flow": OutputMetricFlow,
    "output_metric_descent": OutputMetricDescent,
    "balancing_flow": BalancingFlow,
    "balanced_learning_flow": BalancedLearningFlow,
}

__all__ = ["DYNAMICS", "Dynamics", "StoppingOptions", "Trajectory", "GradientDescent", "GradientFlow",
           "FlowOptions", "DescentOptions", "Event", "OutputMetricFlow", "OutputMetricDescent",
           "BalancingFlow", "BalancedLearningFlow", "COMPLETED", "DIVERGED", "FAILED", "STOPPED"]
