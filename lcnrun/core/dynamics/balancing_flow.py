"""Balancing flows on a fiber of the end-to-end map, as printed by Lindsey & Menon (arXiv 2511.01137):
``balancing_flow`` with ``variant: kirwan_ness | l2``.

They move the parameters along ``{theta : e(theta) = e(theta0)}`` (the end-to-end map stays fixed)
and drive ``R(theta) = |W|_2^2 = sum_p |W_p|_F^2`` down to its minimum there. The training loss is
constant along them; ``loss``/``grad_norm`` of the trajectory are still ``L`` and ``|grad_theta L|``.

DLN (``W_p`` of shape ``(d_p, d_{p-1})``, ``p = 1..N``, ``X = W_N ... W_1``), with the paper's
``G_p = W_p W_p^T - W_{p+1}^T W_{p+1}`` (our balancedness ``Phi_p``, ``p = 1..N-1``), ``G_0 = G_N = 0``:

- ``kirwan_ness`` (the squared-moment-map flow, the gradient flow of ``1/2 |G|^2 = 1/2 sum_p |G_p|_F^2``):
  ``dW_p/dt = 2 (W_p G_{p-1} - G_p W_p)``. ``G`` is the moment map of the action
  ``W_p -> A_p W_p A_{p-1}^{-1}`` of ``prod GL(d_p)`` on the hidden layers; the velocity is that
  action's infinitesimal generator with ``xi_p = -2 G_p``, so ``dX/dt`` telescopes to 0 (the paper: it
  converges globally). Derived here: ``dR/dt = -4 sum_p |G_p|_F^2``.
- ``l2`` (the L2 balancing flow): ``d theta/dt = -1/2 Pi_{ker J} grad |W|_2^2 = -Pi_{ker J} theta``, the
  gradient of ``1/2 R`` for the metric the fiber inherits from the Euclidean one (projection on the
  tangent space ``ker J``, ``J = dX/dtheta``, from the SVD of ``J``; singular values at most
  ``rank_rtol * sigma_max(J)`` count as zero). The paper's Theorem 1.2: ``G(t) = G(0) e^{-2t}``.

Both end at balanced points, where ``R = N sum_i sigma_i(X)^{2/N}``; by the paper's Theorem 1.1 (``X`` of
full rank) the minimizers of ``|W|_2`` on the fiber are exactly its balanced points.

Until this version the variants were ``moment_map`` (``-(Phi_p W_p - W_p Phi_{p-1})``, half the
Kirwan-Ness speed) and ``l2_regularizer`` (``-2 Pi theta``, twice the L2 speed, ``G ~ e^{-4t}``); the
new names make the old specs fail validation instead of silently changing meaning (docs/changelog.md).

LCN (filters ``w_l``, ``l = 1..L``, ``n_l = |w_l|^2``): the fiber of ``v`` contains the orbit of the
rescaling group ``{(c_1 w_1, ..., c_L w_L) : prod c_l = 1}`` (at a generic point the fiber's tangent
space ``ker J`` is the orbit's, of dimension ``L - 1``); both flows run on that orbit. Its Lie
algebra acts by ``dw_l = xi_l w_l`` with ``sum_l xi_l = 0`` (so ``v`` is kept exactly), the moment map
is ``delta_l = n_l - n_{l+1}`` (``l = 1..L-1``), ``delta_0 = delta_L = 0``:

- ``kirwan_ness``: ``dw_l/dt = 2 (delta_{l-1} - delta_l) w_l``, the gradient flow of
  ``1/2 sum_l delta_l^2`` (the DLN formula with ``1 x 1`` blocks);
- ``l2``: ``dw_l/dt = -(1 - H/n_l) w_l`` with ``H = L / sum_m (1/n_m)`` (harmonic mean of the ``n_l``):
  the orthogonal projection of ``-theta = -1/2 grad R`` on the orbit's tangent space
  ``{(xi_l w_l) : sum xi_l = 0}`` (minimise ``sum_l (1 + xi_l)^2 n_l``, Lagrange multiplier).

Both keep ``v`` and ``prod_l n_l`` exactly, decrease ``R`` (derived here: ``dR/dt = -4 sum_l delta_l^2``,
resp. ``dn_l/dt = -2 (n_l - H)`` and ``dR/dt = -2 (sum_l n_l - L H) <= 0``, arithmetic >= harmonic
mean), and drive every ``n_l`` to the geometric mean, where ``R = L (prod_l |w_l|)^{2/L}``, the minimum
on the orbit (the fiber may hold other orbits, e.g. with roots moved between filters).

Keys: ``t_max, method, rtol, atol`` (as ``gradient_flow``), ``variant`` (``kirwan_ness``),
``rank_rtol`` (1e-10, DLN ``l2`` only), and the stopping rules (on ``L``, ``|grad L|``).

Series (each ``(T, ...)``): ``end_to_end_drift`` ``|e(t) - e(0)|_F``; ``phi_norms`` ``(T, N-1)``
``|G_p|_F`` (LCN: ``|delta_l|``); ``sum_sq_norms`` ``R(theta(t))``;
``sum_sq_norms_min`` the predicted minimum from the state at ``t`` (DLN ``N sum sigma_i(X(t))^{2/N}``,
LCN ``L (prod n_l(t))^{1/L}``; constant up to the integration error); DLN ``l2`` also
``rank_J``. Attributes: ``variant``, ``group`` (``GL`` or ``rescaling``), ``sum_sq_norms_min`` (the
prediction at ``t = 0``), ``end_to_end_drift_max``, ``rank_rtol``, and those of ``gradient_flow``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from .base import Dynamics
from .gradient_flow import FlowOptions, _Cached, integrate_states

VARIANTS = ("kirwan_ness", "l2")


# -- DLN ----------------------------------------------------------------------------------------
def dln_balancedness(layers: list[np.ndarray]) -> list[np.ndarray]:
    """``Phi_p = W_p W_p^T - W_{p+1}^T W_{p+1}``, ``p = 1..N-1``, for single-member layers ``(d_p, d_{p-1})``."""
    return [layers[p] @ layers[p].T - layers[p + 1].T @ layers[p + 1] for p in range(len(layers) - 1)]


def dln_kirwan_ness_velocity(layers: list[np.ndarray]) -> list[np.ndarray]:
    """``dW_p/dt = 2 (W_p G_{p-1} - G_p W_p)`` with ``G_0 = G_N = 0``: minus the gradient of ``1/2 |G|^2``."""
    G = dln_balancedness(layers)
    out = []
    for p, W in enumerate(layers):
        v = np.zeros_like(W)
        if p < len(layers) - 1:
            v -= G[p] @ W
        if p > 0:
            v += W @ G[p - 1]
        out.append(2.0 * v)
    return out


def row_space_basis(jacobian: np.ndarray, rank_rtol: float) -> np.ndarray:
    """Orthonormal rows ``(r, P)`` spanning the row space of ``J (E, P)`` (``(ker J)^perp``), ``r = rank J``
    counting singular values above ``rank_rtol * sigma_max(J)``."""
    _, s, vt = np.linalg.svd(jacobian, full_matrices=False)
    r = int(np.sum(s > rank_rtol * s[0])) if s.size and s[0] > 0 else 0
    return vt[:r]


def project_on_fiber_tangent(jacobian: np.ndarray, g: np.ndarray, rank_rtol: float) -> np.ndarray:
    """``Pi_{ker J} g = g - V_r V_r^T g`` for ``J (E, P)``, ``g (P,)``."""
    vr = row_space_basis(jacobian, rank_rtol)
    return g - vr.T @ (vr @ g)


def dln_min_sum_sq_norms(X: np.ndarray, depth: int) -> float:
    """``N sum_i sigma_i(X)^{2/N}``: the minimum of ``sum_p |W_p|_F^2`` over factorizations of ``X``."""
    return float(depth * np.sum(np.linalg.svd(X, compute_uv=False) ** (2.0 / depth)))


# -- LCN ----------------------------------------------------------------------------------------
def rescaling_kirwan_ness_rates(norms_sq: np.ndarray) -> np.ndarray:
    """``xi_l = 2 (delta_{l-1} - delta_l)`` with ``delta_l = n_l - n_{l+1}``, ``delta_0 = delta_L = 0``."""
    delta = np.concatenate([[0.0], norms_sq[:-1] - norms_sq[1:], [0.0]])
    return 2.0 * (delta[:-1] - delta[1:])


def rescaling_l2_rates(norms_sq: np.ndarray) -> np.ndarray:
    """``xi_l = -(1 - H/n_l)``, ``H`` the harmonic mean of the ``n_l`` (0 where some ``n_l = 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        H = len(norms_sq) / np.sum(1.0 / norms_sq)
        xi = -(1.0 - H / norms_sq)
    return np.where(norms_sq > 0, xi, 0.0)


def lcn_min_sum_sq_norms(norms_sq: np.ndarray) -> float:
    """``L (prod_l n_l)^{1/L}``: the minimum of ``sum_l |w_l|^2`` on the rescaling orbit."""
    L = len(norms_sq)
    return float(L * np.prod(norms_sq) ** (1.0 / L))


class BalancingFlow(Dynamics):
    name = "balancing_flow"
    models = ("dense", "lcn")
    keeps_end_to_end = True

    @dataclass(frozen=True, kw_only=True)
    class Options(FlowOptions):
        """A flow on the fiber of the end-to-end map driving ``sum |W_p|^2`` to its minimum."""

        variant: str = option("kirwan_ness", kind="str", choices=VARIANTS,
                              doc="kirwan_ness: gradient flow of 1/2 |G|^2 (was moment_map, at half "
                                  "speed); l2: -1/2 grad |W|^2 projected on the fiber, G(t) = G(0) e^(-2t) "
                                  "(was l2_regularizer, at twice the speed)")
        rank_rtol: float = option(1.0e-10, kind="float", check="positive",
                                  doc="DLN l2: singular values of J at most "
                                      "rank_rtol * sigma_max(J) count as zero")

    def velocity_field(self, model):
        """``theta (P,) -> d theta/dt (P,)`` of the chosen variant on this model."""
        variant, rtol = self.options.variant, self.options.rank_rtol
        if model.symmetry_group == "GL":
            if variant == "kirwan_ness":
                return lambda th: model.join([v[None] for v in dln_kirwan_ness_velocity(
                    [W[0] for W in model.split(th[None])])])[0]
            return lambda th: project_on_fiber_tangent(model.jacobian(th[None])[0], -th, rtol)
        if model.symmetry_group == "rescaling":
            rates = rescaling_kirwan_ness_rates if variant == "kirwan_ness" else rescaling_l2_rates
            sizes = np.asarray(model.layer_sizes)
            return lambda th: np.repeat(rates(model.layer_norms_sq(th[None])[0]), sizes) * th
        raise ValueError(f"balancing_flow is defined for the GL and rescaling groups, not {model.name!r}'s "
                         f"{model.symmetry_group!r}")

    def run(self, problem, theta0, record):
        model = problem.model
        self.check_model(model)
        field = self.velocity_field(model)
        out = []
        for th in np.asarray(theta0, dtype=float):
            f = _Cached(problem)

            def measure(y, f=f):
                loss, g = f(y)
                return loss, float(np.linalg.norm(g))

            res = integrate_states(field, measure, th, self.options, record, store_last=True)
            traj = res.trajectory()
            self._record(model, traj)
            out.append(traj)
        return out

    def _record(self, model, traj) -> None:
        th = traj.theta
        e = model.end_to_end(th)
        T = len(traj.t)
        n2 = model.layer_norms_sq(th)
        traj.series["end_to_end_drift"] = np.sqrt(np.sum((e - e[:1]).reshape(T, -1) ** 2, axis=1))
        traj.series["sum_sq_norms"] = n2.sum(axis=1)
        if model.symmetry_group == "GL":
            layers = model.split(th)
            phi = [np.sqrt(np.sum(P ** 2, axis=(1, 2))) for P in
                   (layers[p] @ np.swapaxes(layers[p], 1, 2) - np.swapaxes(layers[p + 1], 1, 2) @ layers[p + 1]
                    for p in range(model.n_layers - 1))]
            traj.series["phi_norms"] = np.stack(phi, axis=1) if phi else np.zeros((T, 0))
            traj.series["sum_sq_norms_min"] = np.array([dln_min_sum_sq_norms(X, model.n_layers) for X in e])
            group = "GL"
            if self.options.variant == "l2":
                J = model.jacobian(th)
                traj.series["rank_J"] = np.array(
                    [len(row_space_basis(Jt, self.options.rank_rtol)) for Jt in J], dtype=np.int64)
        else:
            traj.series["phi_norms"] = np.abs(n2[:, :-1] - n2[:, 1:])
            traj.series["sum_sq_norms_min"] = np.array([lcn_min_sum_sq_norms(n) for n in n2])
            group = "rescaling"
        traj.attrs.update(variant=self.options.variant, group=group, rank_rtol=self.options.rank_rtol,
                          sum_sq_norms_min=float(traj.series["sum_sq_norms_min"][0]),
                          end_to_end_drift_max=float(traj.series["end_to_end_drift"].max()))
