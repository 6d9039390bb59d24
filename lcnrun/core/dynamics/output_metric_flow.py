"""Output-metric flow ``d theta/dt = -D^+ grad_x C = -(D^T D)^+ grad_theta L`` (``output_metric_flow``).

The formulas, the rank tolerance and how ``D`` is handled are in :mod:`.output_metric`. Keys:
``t_max, method, rtol, atol`` (as ``gradient_flow``), ``variant`` (``auto`` | ``overparametrized`` |
``underparametrized``), ``rank_rtol`` (1e-10), ``eps`` (1e-6), and the stopping rules.

``loss``/``grad_norm`` are ``L = C`` and the Euclidean ``|grad_theta L|``. Series, each ``(T,)``:

- ``rank_D``: rank of ``D`` (singular values above ``rank_rtol * sigma_max``);
- ``sigma_max_D``, ``sigma_min_D``: largest and smallest of the ``min(QN, P)`` singular values
  of ``D`` (``sigma_min_D`` is 0 whenever ``D`` is rank deficient);
- ``sigma_min_nonzero_D``: the smallest singular value counted in the rank (``sigma_{rank D}``);
- ``loss_predicted``: ``C(0) exp(-2t/N)`` (square loss only; exact while ``rank D = QN``).

Attributes: ``variant``, ``variant_used`` (regime picked at t = 0), ``rank_rtol``, ``n_samples``
(``N``), ``n_outputs`` (``QN``), ``n_params`` (``P``), ``rank_D_initial``, ``rank_D_min``,
``rank_D_max`` (over the stored times), ``rank_condition_failed_at`` (first time ``rank D`` fell
below its initial value, located by ``solve_ivp``; NaN if never), ``eps``, ``T_eps_predicted``
(``(N/2) ln(C(0)/eps)``, 0 if ``C(0) <= eps``, NaN for other losses; a valid prediction only while
``rank D = QN``), ``t_eps_measured`` (first time ``L <= eps``, located by ``solve_ivp``; NaN if not
reached), plus those of ``gradient_flow`` (``stop_reason``, ``nfev``, ``njev``, ``nlu``).

Status: with ``variant: overparametrized`` the run is ``failed`` (message says why and when) as soon
as ``rank D < QN``, including at t = 0 and when ``P < QN``; with ``auto``/``underparametrized`` the
run goes on with the pseudo-inverse and the message says when the rank fell. Near a point where
``D`` loses rank the velocity grows like ``1/sigma_min(D)`` and ``solve_ivp`` may give up before the
rank reaches the tolerance: the run is then ``failed``, its last stored point is the last state
the integrator accepted, and the message gives ``rank D`` and ``sigma_min/sigma_max`` there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Dynamics
from .gradient_flow import FlowOptions, flow_trajectory
from .output_metric import OutputMetric, OutputMetricOptions, OutputMetricRun


class OutputMetricFlow(Dynamics):
    name = "output_metric_flow"

    @dataclass(frozen=True, kw_only=True)
    class Options(OutputMetricOptions, FlowOptions):
        """``d theta/dt = -D^+ grad_x C`` over ``[0, t_max]``."""

    def run(self, problem, theta0, record):
        metric = OutputMetric(problem.model, problem.dataset.inputs, self.options.rank_rtol)
        out = []
        for th in np.asarray(theta0, dtype=float):
            run = OutputMetricRun(metric, problem, self.options, th)
            traj, res = flow_trajectory(problem, th, record, self.options, transform=metric,
                                        events=run.events, store_last=True)
            run.finish(traj, res.first_times)
            out.append(traj)
        return out
