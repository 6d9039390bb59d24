"""Output-metric descent ``theta <- theta - lr D^+ grad_x C`` (``output_metric_descent``), on the time
axis ``t = step * lr`` like ``gradient_descent``.

The step direction is the transform of :mod:`.output_metric` applied to the Euclidean gradient:
``(D^T D)^+ grad_theta L``. Keys: ``lr, steps`` (as ``gradient_descent``), ``variant``, ``rank_rtol``,
``eps`` and the stopping rules. Series and attributes are those of ``output_metric_flow`` (see
:mod:`.output_metric_flow`) plus ``step``, with these differences: ``loss_predicted`` is the flow's
law ``C(0) exp(-2t/N)`` at ``t = step * lr`` (descent follows it to first order in ``lr``: per step
the residual contracts by ``1 - lr/N`` plus ``O(lr^2)``), and ``rank_condition_failed_at`` /
``t_eps_measured`` are the first step times at which the rank had fallen / ``L <= eps`` (every step
is checked, not only the stored ones). With ``variant: overparametrized`` a step is never taken from
a point with ``rank D < QN``: the run ends there as ``failed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Dynamics
from .gradient_descent import DescentOptions, descend
from .output_metric import OutputMetric, OutputMetricOptions, OutputMetricRun


class OutputMetricDescent(Dynamics):
    name = "output_metric_descent"

    @dataclass(frozen=True, kw_only=True)
    class Options(OutputMetricOptions, DescentOptions):
        """``theta <- theta - lr D^+ grad_x C``, ``steps`` times."""

    def run(self, problem, theta0, record):
        metric = OutputMetric(problem.model, problem.dataset.inputs, self.options.rank_rtol)
        out = []
        for th in np.asarray(theta0, dtype=float):
            run = OutputMetricRun(metric, problem, self.options, th)
            traj = descend(problem, th[None], record, self.options, transform=metric,
                           events=run.events)[0]
            run.finish(traj, traj.attrs)
            out.append(traj)
        return out
