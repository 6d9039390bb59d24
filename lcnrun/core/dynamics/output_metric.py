"""The output metric (Chen, arXiv 2311.15487; Chen & Munoz Ewald, arXiv 2408.01517) as a transform of
the Euclidean gradient, shared by ``output_metric_flow`` and ``output_metric_descent``.

Notation (``N`` samples, ``Q`` outputs per sample, ``P`` parameters, ``E`` entries of the end-to-end
map ``e``): the outputs of all samples ``x in R^{QN}`` are linear in ``e``, ``x = F e`` (``F`` of
shape ``(QN, E)``: the patch matrix of an LCN, ``I kron x_in`` for a DLN); ``J = de/dtheta`` is
``(E, P)`` and ``D = dx/dtheta = F J`` is ``(QN, P)``. The cost is
``C = (1/2N) |x - y|^2`` (the square loss ``L``), ``grad_x C = (x - y)/N``.

The output-metric velocity is ``d theta/dt = -D^+ grad_x C``. Because ``D^+ = (D^T D)^+ D^T`` and
``D^T grad_x C = grad_theta L``, it is the Euclidean gradient transformed by the pseudo-inverse of
the pulled-back output metric ``D^T D``::

    d theta/dt = -(D^T D)^+ grad_theta L.

- over-parametrized (``rank D = QN <= P``): this is ``-D^T (D D^T)^{-1} grad_x C``, so
  ``dx/dt = -grad_x C = -(x - y)/N``, ``C(t) = C(0) exp(-2t/N)`` exactly, and ``C`` reaches ``eps``
  at the a-priori time ``T(eps) = (N/2) ln(C(0)/eps)``;
- under-parametrized / rank-deficient: the pseudo-inverse, ``dx/dt = -Pi_{range D} (x - y)/N``.

For another loss the same formula is the output-metric gradient flow of that loss
(``-D^+ grad_x L``); the exponential law then does not follow and is not recorded.

Computation (never forms ``D``): a factor ``M (r, E)``, ``r = min(QN, E)``, with ``M^T M = F^T F``
is computed once from the inputs by :meth:`~lcnrun.core.models.Model.output_factor` (the ``R`` of a
QR of ``F``, accumulated over chunks of samples; for a DLN ``M = I_{d_L} kron R_x`` with
``x_in = Q_x R_x``). Then ``F = U M`` with ``U`` orthonormal
columns, so ``D = U (M J)``: ``D`` and ``A = M J (r, P)`` have the same non-zero singular values and
``D^T D = A^T A``. Per evaluation: ``J``, ``A = M J``, the SVD ``A = U_A diag(s) V^T``;
``rank D = #{i : s_i > rank_rtol * s_1}`` (the stated tolerance, relative to the largest singular
value) and ``(D^T D)^+ g = V_k diag(s_k^-2) V_k^T g`` over those ``k`` singular values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from .base import COMPLETED, FAILED, Event

VARIANTS = ("auto", "overparametrized", "underparametrized")


class OutputMetric:
    """The transform ``g -> (D^T D)^+ g`` at ``theta (P,)``, with the rank tolerance ``rank_rtol``.

    ``__call__(theta, grad)`` is the transform; :meth:`singular_values` gives the singular values
    of ``D`` (``min(QN, P)`` of them, zero-padded); :meth:`rank_margin` is the continuous function
    ``s_k / s_1 - rank_rtol`` that is positive iff ``rank D >= k``. The SVD of the last ``theta`` is
    memoised (a flow evaluates the transform and its events at the same state).
    """

    def __init__(self, model, inputs: np.ndarray, rank_rtol: float):
        self.model = model
        self.factor = model.output_factor(inputs)
        x = np.asarray(inputs)
        self.n_samples = int(x.shape[0])
        self.n_outputs = self.n_samples * int(np.prod(model.output_shape(x.shape[1:])))
        self.n_params = model.n_params
        self.rank_rtol = float(rank_rtol)
        self._key = None
        self._svd = None

    def svd(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(s, Vt)`` of ``A = M J(theta)``: ``s`` descending (``min(r, P)``), ``Vt`` its right vectors."""
        theta = np.ascontiguousarray(theta, dtype=float)
        key = theta.tobytes()
        if key != self._key:
            A = self.factor @ self.model.jacobian(theta[None])[0]
            _, s, vt = np.linalg.svd(A, full_matrices=False)
            self._key, self._svd = key, (s, vt)
        return self._svd

    def rank_of(self, s: np.ndarray) -> int:
        return int(np.sum(s > self.rank_rtol * s[0])) if s.size and s[0] > 0 else 0

    def rank(self, theta: np.ndarray) -> int:
        return self.rank_of(self.svd(theta)[0])

    def singular_values(self, theta: np.ndarray) -> np.ndarray:
        """The ``min(QN, P)`` singular values of ``D``, descending (zeros beyond ``rank A``)."""
        s = self.svd(theta)[0]
        out = np.zeros(min(self.n_outputs, self.n_params))
        out[: s.size] = s[: out.size]
        return out

    def rank_margin(self, theta: np.ndarray, k: int) -> float:
        """``s_k / s_1 - rank_rtol`` (``s_k = 0`` beyond the computed ones): ``> 0`` iff ``rank D >= k``."""
        s = self.svd(theta)[0]
        if not s.size or not s[0] > 0:
            return -self.rank_rtol
        sk = s[k - 1] if k <= s.size else 0.0
        return float(sk / s[0] - self.rank_rtol)

    def __call__(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        s, vt = self.svd(theta)
        k = self.rank_of(s)
        vk = vt[:k]
        return vk.T @ ((vk @ grad) / s[:k] ** 2)


@dataclass(frozen=True, kw_only=True)
class OutputMetricOptions:
    """Keys shared by the output-metric flow and descent (a mixin of their ``Options``)."""

    variant: str = option("auto", kind="str", choices=VARIANTS,
                          doc="overparametrized: -D^T (D D^T)^-1 grad_x C, fails if rank D < QN; "
                              "underparametrized: -D^+ grad_x C; auto: picks by rank D at t = 0")
    rank_rtol: float = option(1.0e-10, kind="float", check="positive",
                              doc="singular values of D at most rank_rtol * sigma_max(D) count as zero")
    eps: float = option(1.0e-6, kind="float", check="positive",
                        doc="loss level of the a-priori stopping time T(eps) = (N/2) ln(C(0)/eps)")


class OutputMetricRun:
    """Set-up and bookkeeping of one member's output-metric run (shared by flow and descent).

    At ``t = 0``: ``r0 = rank D(theta0)``; the regime (``variant_used``) is ``overparametrized`` iff
    ``r0 = QN`` (which needs ``QN <= P``), else ``underparametrized``; ``auto`` takes the regime,
    the other variants are taken as asked. Events: ``rank_condition_failed_at``, the first time
    ``rank D`` fell below ``r0`` (``= QN`` in the over-parametrized regime; with variant
    ``overparametrized`` this ends the run as ``failed``, and so does ``r0 < QN`` at ``t = 0``);
    ``t_eps_measured``, the first time ``L <= eps``.
    """

    def __init__(self, metric: OutputMetric, problem, options, theta0: np.ndarray):
        self.metric = metric
        self.options = options
        self.exact_law = bool(problem.loss.quadratic) and getattr(problem, "l2", 0.0) == 0.0
        QN, P = metric.n_outputs, metric.n_params
        self.r0 = r0 = metric.rank(theta0)
        over = QN <= P and r0 == QN
        self.variant_used = options.variant if options.variant != "auto" else \
            ("overparametrized" if over else "underparametrized")
        strict = options.variant == "overparametrized"
        events = []
        if strict and not over:
            why = (f"P = {P} parameters < QN = {QN} outputs" if QN > P
                   else f"rank D = {r0} < QN = {QN} (rank_rtol {options.rank_rtol:g})")
            events.append(Event("rank_condition_failed_at", lambda y, loss: -1.0, terminal=True,
                                status=FAILED,
                                message=f"rank condition of the over-parametrized flow fails: {why}"))
        elif r0 >= 1:
            events.append(Event(
                "rank_condition_failed_at", lambda y, loss: metric.rank_margin(y, r0),
                terminal=strict, status=FAILED,
                message=f"rank condition failed: rank D fell below {r0} "
                        f"(QN = {QN}, rank_rtol {options.rank_rtol:g})"))
        events.append(Event("t_eps_measured", lambda y, loss: loss - options.eps))
        self.events = events

    def finish(self, traj, first_times: dict) -> None:
        """Add the series and attributes (module docstrings of the dynamics list them)."""
        m, opts = self.metric, self.options
        N = m.n_samples
        sv = np.array([m.singular_values(th) for th in traj.theta]).reshape(len(traj.t), -1)
        ranks = np.array([m.rank(th) for th in traj.theta], dtype=np.int64)
        traj.series["rank_D"] = ranks
        traj.series["sigma_max_D"] = sv[:, 0] if sv.shape[1] else np.zeros(len(traj.t))
        traj.series["sigma_min_D"] = sv[:, -1] if sv.shape[1] else np.zeros(len(traj.t))
        traj.series["sigma_min_nonzero_D"] = np.array(
            [sv[i, r - 1] if r else 0.0 for i, r in enumerate(ranks)])
        failed_at = first_times.get("rank_condition_failed_at", float("nan"))
        loss0 = float(traj.loss[0])
        traj.attrs.update(
            variant=opts.variant, variant_used=self.variant_used, rank_rtol=opts.rank_rtol,
            n_samples=N, n_outputs=m.n_outputs, n_params=m.n_params,
            rank_D_initial=self.r0, rank_D_min=int(ranks.min()), rank_D_max=int(ranks.max()),
            rank_condition_failed_at=float(failed_at), eps=opts.eps,
            t_eps_measured=float(first_times.get("t_eps_measured", float("nan"))))
        if self.exact_law:
            traj.series["loss_predicted"] = loss0 * np.exp(-2.0 * traj.t / N)
            traj.attrs["T_eps_predicted"] = (float(0.5 * N * np.log(loss0 / opts.eps))
                                             if loss0 > opts.eps else 0.0)
        else:
            traj.attrs["T_eps_predicted"] = float("nan")
        if np.isfinite(failed_at) and traj.status != FAILED:
            note = (f"rank D fell below its initial value {self.r0} at t = {failed_at:.6g}; "
                    f"continued with the pseudo-inverse")
            traj.message = f"{traj.message}; {note}" if traj.message else note
        if traj.status != COMPLETED and not np.isfinite(failed_at) and len(traj.t) > 1:
            # the integrator gave up (or the run diverged): say what D looked like where it stopped
            s_last = sv[-1]
            ratio = s_last[ranks[-1] - 1] / s_last[0] if ranks[-1] and s_last[0] > 0 else 0.0
            traj.message += (f"; at t = {traj.t[-1]:.6g}: rank D = {ranks[-1]}, "
                             f"sigma_min_nonzero(D)/sigma_max(D) = {ratio:.3g}, sigma_min(D) = "
                             f"{s_last[-1]:.3g} (a velocity ~ 1/sigma blows up where D loses rank)")
