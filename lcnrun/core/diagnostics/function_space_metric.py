"""The function-space metric ``K = J J^T`` (``J = dv/dtheta``, ``E x P``) along a trajectory, and the
check that the end-to-end map moves as ``dv/dt = -K grad_v l(v)`` (SPEC section 1).

Three velocities at every stored time ``t_i``:

- ``-K g`` with ``g = grad_v l(v)`` (from the problem's loss in function space) and ``K`` from the
  model's Jacobian: the Riemannian gradient-flow velocity;
- the chain rule ``J dtheta/dt`` with ``dtheta/dt = -grad L(theta)`` from the problem's gradient (a
  different code path: the pull-back ``J^T g`` of the model), equal to ``-K g`` for gradient flow
  up to rounding;
- finite differences of the *stored* ``v(t_i)`` in ``t`` (``numpy.gradient``, second order on the
  non-uniform grid, one-sided second order at the ends): independent of both, accurate to
  ``O(h^2)`` in the spacing of the stored times. For gradient descent the stored points follow the
  flow only up to ``O(lr)``, so this error measures the discretisation, not a defect.

Errors are stored per time as ``|a - (-K g)|`` next to the speed ``|K g|``; the scalars divide the
largest error by the largest speed ``max_t |K g(t)|`` (a per-time ratio would be dominated by the
converged tail, where ``|K g|`` is tiny and a log-spaced grid cannot resolve the decay). ``K`` itself and its eigenvalues are stored at up to ``max_points``
times (``store_metric``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from .base import Diagnostic, DiagnosticResult, subsample_indices, trajectory_thetas


def metric_velocity(problem, thetas: np.ndarray, chunk: int = 16):
    """``(g, K g, J (-grad L))``, each ``(T, E)``, at the points ``thetas (T, P)``: ``g = grad_v l``,
    ``K g = J (J^T g)`` with the model's Jacobian, and the chain-rule velocity with the problem's
    gradient. Jacobians are formed ``chunk`` times at a time (memory ``chunk * E * P``)."""
    model = problem.model
    T = len(thetas)
    E = model.end_to_end_size
    g, Kg, chain = np.empty((T, E)), np.empty((T, E)), np.empty((T, E))
    for lo in range(0, T, chunk):
        th = thetas[lo: lo + chunk]
        J = model.jacobian(th)
        _, G = problem.end_to_end_loss_and_gradient(model.end_to_end(th))
        gg = G.reshape(len(th), -1)
        _, grad = problem.value_and_grad(th)
        g[lo: lo + chunk] = gg
        Kg[lo: lo + chunk] = np.einsum("tep,tp->te", J, np.einsum("tep,te->tp", J, gg))
        chain[lo: lo + chunk] = -np.einsum("tep,tp->te", J, grad)
    return g, Kg, chain


def _relative_to_top_speed(errors: np.ndarray, speed: np.ndarray) -> float:
    top = float(np.max(speed)) if speed.size else 0.0
    if not np.any(np.isfinite(errors)):
        return float("nan")
    return float(np.nanmax(errors)) / top if top > 0 else float("nan")


class FunctionSpaceMetric(Diagnostic):
    """``K = J J^T`` at recorded times and the velocity check ``dv/dt = -K grad_v l``.

    Arrays: ``t (T,)``; ``velocity (T, E)`` ``= -K g``; ``speed (T,)`` ``= |K g|``;
    ``velocity_error_chain (T,)``, ``velocity_error_fd (T,)`` (norms of the differences);
    ``metric_t (T',)``, ``metric (T', E, E)``, ``metric_eigenvalues (T', E)`` (ascending) at up to
    ``max_points`` times.
    Scalars: ``velocity_rel_error_chain`` (``max_t`` error / ``max_t`` speed), ``velocity_rel_error_fd``
    (the same over the interior times; ``nan`` with fewer than 3 stored times),
    ``metric_min_eig`` / ``metric_max_eig`` (final time), ``n_times``.
    """

    name = "function_space_metric"

    @dataclass(frozen=True)
    class Options:
        max_points: int = option(50, kind="int", check="at_least_two",
                                 doc="K is stored at at most this many times")
        store_metric: bool = option(True, kind="bool", doc="store K itself (E x E per time)")

    def evaluate(self, problem, trajectory):
        o = self.options
        thetas = trajectory_thetas(problem, trajectory)
        t = np.asarray(trajectory.t, dtype=float)
        T = len(t)
        _, Kg, chain = metric_velocity(problem, thetas)
        speed = np.linalg.norm(Kg, axis=1)
        err_chain = np.linalg.norm(chain + Kg, axis=1)
        V = problem.model.end_to_end(thetas).reshape(T, -1)
        if T >= 3 and np.all(np.diff(t) > 0):
            err_fd = np.linalg.norm(np.gradient(V, t, axis=0, edge_order=2) + Kg, axis=1)
            interior = err_fd[1:-1]
        else:
            err_fd = interior = np.full(T, np.nan)
        idx = subsample_indices(T, o.max_points)
        J = problem.model.jacobian(thetas[idx])
        K = np.einsum("tep,tfp->tef", J, J)
        eig = np.linalg.eigvalsh(K)
        arrays = {"t": t, "velocity": -Kg, "speed": speed, "velocity_error_chain": err_chain,
                  "velocity_error_fd": err_fd, "metric_t": t[idx], "metric_eigenvalues": eig}
        if o.store_metric:
            arrays["metric"] = K
        scalars = {
            "velocity_rel_error_chain": _relative_to_top_speed(err_chain, speed),
            "velocity_rel_error_fd": _relative_to_top_speed(interior, speed),
            "metric_min_eig": float(eig[-1, 0]),
            "metric_max_eig": float(eig[-1, -1]),
            "n_times": T,
        }
        return DiagnosticResult(arrays=arrays, scalars=scalars)
