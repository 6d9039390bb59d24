"""Dynamics. ``DYNAMICS`` is the only place a spec's ``dynamics.kind`` becomes a class."""
from .base import COMPLETED, DIVERGED, FAILED, STOPPED, Dynamics, StoppingOptions, Trajectory
from .gradient_descent import GradientDescent
from .gradient_flow import GradientFlow

DYNAMICS: dict[str, type[Dynamics]] = {
    "gradient_descent": GradientDescent,
    "gradient_flow": GradientFlow,
}

__all__ = ["DYNAMICS", "Dynamics", "StoppingOptions", "Trajectory", "GradientDescent", "GradientFlow",
           "COMPLETED", "DIVERGED", "FAILED", "STOPPED"]
