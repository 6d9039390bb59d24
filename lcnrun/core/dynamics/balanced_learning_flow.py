"""Balanced learning flow of a DLN on its end-to-end matrix (``balanced_learning_flow``):

    dX/dt = -sum_{j=1}^N (X X^T)^{(N-j)/N} grad l(X) (X^T X)^{(j-1)/N}

(Arora, Cohen & Hazan 2018), with ``N`` the depth, ``l(X)`` the loss as a function of the end-to-end
matrix (``Problem.end_to_end_loss_and_gradient``) and ``A^0 = I`` (also on the kernel). From a
balanced start (``Phi_p = 0``) with hidden widths ``d_p >= min(d_0, d_N)`` it is exactly what
parameter gradient flow does to ``X``: ``dX/dt = -J J^T grad l`` and, when balanced,
``W_{>p} W_{>p}^T = (X X^T)^{(N-p)/N}``, ``W_{<p}^T W_{<p} = (X^T X)^{(p-1)/N}``.

Computed in the SVD ``X = U diag(s) V^T`` (full ``U``, ``V``): with ``lam = s^2`` padded by zeros to
``d_N`` and ``mu = s^2`` padded to ``d_0``, ``K_ab = sum_j lam_a^{(N-j)/N} mu_b^{(j-1)/N}`` and
``dX/dt = -U (K o (U^T grad l V)) V^T``. The Euclidean parameter gradient norm at any balanced
factorization is frame-free: ``|grad_theta L|^2 = <grad l, J J^T grad l> = sum_ab K_ab (U^T grad l V)_ab^2``;
that is the trajectory's ``grad_norm`` (and what ``grad_norm_below`` tests).

The state is ``X``; the trajectory's ``theta`` is a balanced factorization of ``X(t)`` with frames
fixed at ``t = 0`` (polar construction, smooth wherever ``X`` has full rank). For ``d_0 <= d_N``:
``P = (X^T X)^{1/(2N)}``, ``Q`` the polar factor of ``X`` (``X = Q (X^T X)^{1/2}``, ``Q^T Q = I``),

    W_1 = Z_1 P,   W_p = Z_p P Z_{p-1}^T (1 < p < N),   W_N = Q P Z_{N-1}^T,

with fixed isometries ``Z_p (d_p, d_0)``: the polar factors of ``A_p(0) P(0)^{-p}``, ``A_p = W_p ... W_1``
of the initial parameters; for a balanced full-rank start they are ``A_p(0) P(0)^{-p}`` itself and
``theta(0) = theta0``. (``Z_p^T Z_p = I`` makes it balanced: ``W_p W_p^T = Z_p P^2 Z_p^T = W_{p+1}^T W_{p+1}``,
and ``prod = Q P^N = X``.) For ``d_N < d_0`` the same construction is applied to ``X^T``.

With weight decay (``regularization: {l2: lambda}``, ``L_lambda = L + lambda sum_p |W_p|^2``) the
flow is that of ``L_lambda`` on the balanced manifold (which gradient flow of ``L_lambda`` keeps, its
``Phi_p`` decaying as ``exp(-4 lambda t)``): ``-J (2 lambda theta) = -2 lambda N X`` (``J theta = N X``) is
added to ``dX/dt``; ``loss`` is ``L + lambda N sum_i sigma_i(X)^{2/N}`` and
``|grad_theta L_lambda|^2 = <grad l, J J^T grad l> + 4 lambda N <X, grad l> + 4 lambda^2 N sum_i sigma_i^{2/N}``.

The initial ``X(0) = X(theta0)`` comes from the spec's init, which should be balanced (``init: balanced``);
if ``sqrt(sum_p |Phi_p|^2) > 1e-8 (1 + sum_p |W_p|^2)`` the run still follows the balanced learning
flow from ``X(theta0)`` (no longer what gradient flow from ``theta0`` does) and says so in
``attrs['warning']``.

Keys: ``t_max, method, rtol, atol`` and the stopping rules (as ``gradient_flow``). Series:
``end_to_end_integrated`` ``(T, d_N, d_0)``, the integrated ``X(t)`` itself. Attributes:
``warning`` (empty if the start is balanced), ``initial_balancedness``, ``theta_factorization``
(the construction above, in words), and those of ``gradient_flow``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import OptionError
from .base import Dynamics
from .gradient_flow import FlowOptions, integrate_states

BALANCED_RTOL = 1.0e-8


def balanced_velocity(X: np.ndarray, grad: np.ndarray, depth: int) -> tuple[np.ndarray, float]:
    """``(dX/dt, |grad_theta L|^2)`` of the balanced learning flow at ``X (d_N, d_0)`` with ``grad l(X)``."""
    U, s, Vt = np.linalg.svd(X)
    lam = np.zeros(X.shape[0])
    mu = np.zeros(X.shape[1])
    lam[: s.size] = s * s
    mu[: s.size] = s * s
    N = depth
    K = sum(lam[:, None] ** ((N - j) / N) * mu[None, :] ** ((j - 1) / N) for j in range(1, N + 1))
    G = U.T @ grad @ Vt.T
    KG = K * G
    return -(U @ KG @ Vt), float(np.sum(KG * G))


def _psd_power(C: np.ndarray, a: float, rtol: float = 1e-13) -> np.ndarray:
    """``C^a`` of a symmetric PSD matrix; eigenvalues at most ``rtol * max`` count as 0 (``a < 0``: pseudo)."""
    w, V = np.linalg.eigh(C)
    w = np.clip(w, 0.0, None)
    keep = w > rtol * max(w.max(initial=0.0), np.finfo(float).tiny)
    p = np.zeros_like(w)
    p[keep] = w[keep] ** a
    return (V * p) @ V.T


def _polar(A: np.ndarray) -> np.ndarray:
    """The isometric polar factor ``U V^T`` of ``A (m, n)``, ``m >= n`` (``A = (U V^T)(A^T A)^{1/2}``)."""
    U, _, Vt = np.linalg.svd(A, full_matrices=False)
    return U @ Vt


class BalancedFactorization:
    """``X -> [W_1, ..., W_N]``: the balanced factorization with frames fixed by ``layers0`` (module doc)."""

    def __init__(self, layers0: list[np.ndarray]):
        self.depth = N = len(layers0)
        X0 = layers0[0]
        for W in layers0[1:]:
            X0 = W @ X0
        self.transpose = X0.shape[0] < X0.shape[1]
        layers = [W.T for W in reversed(layers0)] if self.transpose else list(layers0)
        X0 = X0.T if self.transpose else X0
        C0 = X0.T @ X0
        self.frames = []
        A = np.eye(X0.shape[1])
        for p in range(1, N):
            A = layers[p - 1] @ A
            self.frames.append(_polar(A @ _psd_power(C0, -p / (2.0 * N))))

    def __call__(self, X: np.ndarray) -> list[np.ndarray]:
        N = self.depth
        if N == 1:
            return [X.copy()]
        Xt = X.T if self.transpose else X
        P = _psd_power(Xt.T @ Xt, 1.0 / (2.0 * N))
        Z = self.frames
        layers = [Z[0] @ P] + [Z[p] @ P @ Z[p - 1].T for p in range(1, N - 1)] + [_polar(Xt) @ P @ Z[-1].T]
        return [W.T for W in reversed(layers)] if self.transpose else layers


class BalancedLearningFlow(Dynamics):
    name = "balanced_learning_flow"

    @dataclass(frozen=True, kw_only=True)
    class Options(FlowOptions):
        """``dX/dt = -sum_j (X X^T)^{(N-j)/N} grad l(X) (X^T X)^{(j-1)/N}`` over ``[0, t_max]``."""

    models = ("dense",)

    @classmethod
    def check_model(cls, model) -> None:
        """DLNs only, with hidden widths ``d_p >= min(d_0, d_N)`` (Arora et al.'s setting, in which the
        fixed-frame factorization of ``X`` exists)."""
        super().check_model(model)
        w = model.widths
        if any(d < min(w[0], w[-1]) for d in w[1:-1]):
            raise OptionError("kind", f"balanced_learning_flow needs hidden widths >= min(d_0, d_N) = "
                                      f"{min(w[0], w[-1])}, but the widths are {list(w)}")

    def run(self, problem, theta0, record):
        self.check_model(problem.model)
        return [self._run_one(problem, np.asarray(th, dtype=float), record) for th in theta0]

    def _run_one(self, problem, theta0, record):
        model = problem.model
        shape = model.end_to_end_shape
        N = model.n_layers
        cache = {"key": None}
        l2 = float(getattr(problem, "l2", 0.0))  # weight decay (core.regularization): see the module doc

        def evaluate(y):
            key = y.tobytes()
            if key != cache["key"]:
                X = y.reshape(shape)
                with np.errstate(all="ignore"):
                    loss, g = problem.end_to_end_loss_and_gradient(X[None])
                    vel, gn2 = balanced_velocity(X, g[0], N)
                    loss = float(loss[0])
                    if l2:
                        R = N * float(np.sum(np.linalg.svd(X, compute_uv=False) ** (2.0 / N)))
                        vel = vel - 2.0 * l2 * N * X
                        gn2 += 4.0 * l2 * N * float(np.sum(X * g[0])) + 4.0 * l2 ** 2 * R
                        loss += l2 * R
                cache.update(key=key, value=(loss, float(np.sqrt(max(gn2, 0.0))), vel.ravel()))
            return cache["value"]

        layers0 = [W[0] for W in model.split(theta0[None])]
        balancedness = float(model.invariants(theta0[None])["balancedness"][0])
        scale = float(np.sum(theta0 ** 2))
        warning = ""
        if balancedness > BALANCED_RTOL * (1.0 + scale):
            warning = (f"the initial parameters are not balanced (sqrt(sum |Phi_p|^2) = {balancedness:.3g}): "
                       f"the balanced learning flow starts from X(theta0) and theta(0) is a balanced "
                       f"factorization of it, not theta0")
        X0 = model.end_to_end(theta0[None])[0]
        res = integrate_states(lambda y: evaluate(y)[2], lambda y: evaluate(y)[:2], X0.ravel(),
                               self.options, record, store_last=True)
        X = res.states.reshape((-1,) + shape)
        factor = BalancedFactorization(layers0)
        theta = model.join([np.stack(Ws) for Ws in zip(*(factor(Xt) for Xt in X))])
        traj = res.trajectory(theta)
        traj.series["end_to_end_integrated"] = X
        traj.attrs.update(
            warning=warning, initial_balancedness=balancedness,
            theta_factorization="balanced, frames fixed at t = 0: W_1 = Z_1 P, W_p = Z_p P Z_{p-1}^T, "
                                "W_N = Q P Z_{N-1}^T, P = (X^T X)^{1/2N}, Q = polar factor of X "
                                "(of X^T if d_N < d_0)")
        return traj
