"""Critical points at the end of a run (Diederen, Rauhut, Terstiege, arXiv 2601.08547: gradient
flow of an LCN converges to a critical point; Kohn et al. 2108.01538 for their structure).

Hessian in parameter space, ``H = J^T H_l J + B(g)`` with ``H_l`` the Hessian of the loss in the
end-to-end map and ``B(g) = d/dtheta (J(theta)^T g)`` at fixed ``g = grad_v l(v)``. ``H_l`` is the Gram
matrix of the square loss (exact) or central differences of ``grad_v l`` (other losses). ``B(g)`` is
computed column by column as ``(J(theta + h e_j)^T g - J(theta)^T g) / h``: ``mu`` is multilinear
in the layers, so ``J^T g`` is *affine* along every coordinate axis and this difference is exact for
any ``h`` (``h = max(1, |theta|_inf)``). As a check, ``H`` is compared with central differences of
the analytic gradient (exact for the square loss: along a coordinate axis ``grad L`` is a quadratic
polynomial), reported as ``hessian_fd_rel_diff``.

Symmetries. ``L`` is invariant under rescaling ``w_l -> c_l w_l``, ``prod c_l = 1`` (LCN) and under
``W_{l+1} -> W_{l+1} A^{-1}``, ``W_l -> A W_l`` (DLN), so at a critical point the tangent space ``T``
of the orbit lies in the kernel of ``H``: a critical point of a network of depth ``>= 2`` is never a
strict minimum in the naive sense. The classification is therefore made modulo ``T``:

- ``saddle``: ``H`` has an eigenvalue ``< -tol`` (a strict saddle: a descent direction of 2nd order);
- ``strict_minimum``: ``H`` restricted to the orthogonal complement of ``T`` is positive definite
  (``> tol``): a strict local minimum up to the symmetry (the orbit is a Morse-Bott critical manifold);
- ``degenerate``: neither (positive semi-definite with flat directions beyond the symmetry; deciding
  needs higher order -- e.g. ``theta = 0`` for depth ``>= 3``);
- ``not_critical``: ``|grad L| > grad_tol``.

``tol = eig_rtol * max |lambda(H)|``. In function space: ``function_space_grad_norm = |grad_v l(v)|``;
``critical_type`` is ``function_space_critical`` (``grad_v l = 0``: for a convex loss a global
minimum of ``l``), ``pure`` (``grad_v l != 0`` but ``dmu`` has full rank: ``v`` is a critical point of
``l`` on the smooth function space), ``rank_deficient`` (``dmu`` drops rank: ``v`` on the singular
locus / boundary, e.g. repeated filters) or ``not_critical``. For 1-D LCNs also the distance of ``v``
to the real discriminant (a lower bound of the distance to the boundary of the function space).

Trajectory (the convergence theorem says it has finite length and stays bounded): polygonal arc
length ``sum |theta(t_{i+1}) - theta(t_i)|`` over the stored points (a lower bound of the true length),
``integral |grad L(theta(t))| dt`` by the trapezoidal rule (equal to the length for gradient flow),
``max_t |theta(t)|``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import polynomials as poly
from ..options import option
from .base import Diagnostic, DiagnosticResult, trajectory_thetas
from .parametrization_rank import expected_rank, jacobian_singular_values, numerical_rank


def loss_hessian_in_end_to_end(problem, e: np.ndarray) -> np.ndarray:
    """``H_l`` ``(E, E)`` at ``e (1, *e_shape)``: the square loss's Gram (exact), else central
    differences of ``grad_e l`` with step ``1e-5 max(1, |e|_inf)``."""
    shape = e.shape[1:]
    E = int(np.prod(shape))
    basis = np.eye(E).reshape((E,) + shape)
    if problem.quadratic is not None:
        return problem.quadratic.apply_gram(basis).reshape(E, E)
    h = 1e-5 * max(1.0, float(np.max(np.abs(e))))
    _, gp = problem.end_to_end_loss_and_gradient(e + h * basis)
    _, gm = problem.end_to_end_loss_and_gradient(e - h * basis)
    H = (gp - gm).reshape(E, E) / (2 * h)
    return 0.5 * (H + H.T)


def hessian(problem, theta: np.ndarray) -> np.ndarray:
    """Analytic Hessian ``(P, P)`` of ``L`` at ``theta (P,)`` (see module doc)."""
    model = problem.model
    theta = np.asarray(theta, dtype=float)
    P = model.n_params
    e, pullback = model.end_to_end_with_pullback(theta[None])
    _, g = problem.end_to_end_loss_and_gradient(e)
    J = model.jacobian(theta[None])[0]
    H = J.T @ loss_hessian_in_end_to_end(problem, e) @ J
    h = max(1.0, float(np.max(np.abs(theta))))
    shifted = theta[None] + h * np.eye(P)
    B = (model.end_to_end_vjp(shifted, np.broadcast_to(g, (P,) + g.shape[1:]).copy()) - pullback(g)) / h
    H = H + B
    return 0.5 * (H + H.T)


def hessian_finite_differences(problem, theta: np.ndarray, h: float | None = None) -> np.ndarray:
    """Central differences of the analytic gradient, column ``j``: ``(grad L(theta + h e_j) -
    grad L(theta - h e_j)) / 2h``; exact for the square loss (default ``h = 0.1 max(1, |theta|_inf)``,
    ``1e-4 max(1, |theta|_inf)`` for other losses)."""
    theta = np.asarray(theta, dtype=float)
    P = len(theta)
    if h is None:
        h = (0.1 if problem.quadratic is not None else 1e-4) * max(1.0, float(np.max(np.abs(theta))))
    _, gp = problem.value_and_grad(theta[None] + h * np.eye(P))
    _, gm = problem.value_and_grad(theta[None] - h * np.eye(P))
    H = (gp - gm) / (2 * h)
    return 0.5 * (H + H.T)


def symmetry_tangent(model, theta: np.ndarray) -> np.ndarray:
    """Columns spanning the tangent space of the symmetry orbit at ``theta``: ``(P, m)``
    (:meth:`~lcnrun.core.models.Model.symmetry_tangent`).

    LCN: ``(0, .., w_l, -w_{l+1}, .., 0)`` for ``l = 1..L-1``. DLN: ``dW_l = A W_l``,
    ``dW_{l+1} = -W_{l+1} A`` for ``A = E_ab`` (every hidden layer).
    """
    return model.symmetry_tangent(theta)


def normal_space_basis(T: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, int]:
    """Orthonormal basis ``(P, P - m)`` of the orthogonal complement of ``span T``, and ``m``."""
    P = T.shape[0]
    if T.shape[1] == 0:
        return np.eye(P), 0
    U, s, _ = np.linalg.svd(T, full_matrices=True)
    m = int(np.sum(s > rtol * s[0])) if s.size and s[0] > 0 else 0
    return U[:, m:], m


def classify(eigs: np.ndarray, normal_eigs: np.ndarray, grad_norm: float, grad_tol: float,
             tol: float) -> str:
    if grad_norm > grad_tol:
        return "not_critical"
    if eigs.size and eigs.min() < -tol:
        return "saddle"
    if normal_eigs.size == 0 or normal_eigs.min() > tol:
        return "strict_minimum"
    return "degenerate"


def critical_point_at(problem, theta: np.ndarray, *, grad_tol: float = 1e-6, eig_rtol: float = 1e-8,
                      rank_rtol: float = 1e-8, method: str = "analytic") -> DiagnosticResult:
    """Gradient, Hessian spectrum and classification at ``theta (P,)`` (see module doc)."""
    model = problem.model
    theta = np.asarray(theta, dtype=float)
    loss, grad = problem.value_and_grad(theta[None])
    gnorm = float(np.linalg.norm(grad))
    H_an = hessian(problem, theta)
    H_fd = hessian_finite_differences(problem, theta)
    H = H_an if method == "analytic" else H_fd
    eigs = np.linalg.eigvalsh(H)
    Q, sym_dim = normal_space_basis(symmetry_tangent(model, theta))
    normal_eigs = np.linalg.eigvalsh(Q.T @ H @ Q) if Q.shape[1] else np.zeros(0)
    scale = float(np.max(np.abs(eigs))) if eigs.size else 0.0
    tol = eig_rtol * scale
    e = model.end_to_end(theta[None])
    _, ge = problem.end_to_end_loss_and_gradient(e)
    fs_gnorm = float(np.linalg.norm(ge))
    rank = numerical_rank(jacobian_singular_values(model, theta[None])[0], rank_rtol)
    full = rank == expected_rank(model)
    cls = classify(eigs, normal_eigs, gnorm, grad_tol, tol)
    if gnorm > grad_tol:
        ctype = "not_critical"
    elif fs_gnorm <= grad_tol:
        ctype = "function_space_critical"
    else:
        ctype = "pure" if full else "rank_deficient"
    denom = max(float(np.max(np.abs(H_an))), np.finfo(float).tiny)
    scalars = {
        "classification": cls,
        "critical_type": ctype,
        "loss": float(loss[0]),
        "grad_norm": gnorm,
        "function_space_grad_norm": fs_gnorm,
        "hessian_min_eig": float(eigs.min()) if eigs.size else float("nan"),
        "hessian_max_eig": float(eigs.max()) if eigs.size else float("nan"),
        "hessian_n_negative": int(np.sum(eigs < -tol)),
        "hessian_n_zero": int(np.sum(np.abs(eigs) <= tol)),
        "hessian_n_positive": int(np.sum(eigs > tol)),
        "normal_min_eig": float(normal_eigs.min()) if normal_eigs.size else float("nan"),
        "symmetry_dim": sym_dim,
        "rank": rank,
        "rank_full": full,
        "eig_tol": tol,
        "grad_tol": grad_tol,
        "hessian_method": method,
        "hessian_fd_rel_diff": float(np.max(np.abs(H_an - H_fd)) / denom),
    }
    if model.polynomial_spacings() is not None:
        d, _ = poly.distance_to_real_discriminant(e[0])
        scalars["distance_to_discriminant"] = d
        nv = float(np.linalg.norm(e))
        scalars["relative_distance_to_discriminant"] = d / nv if nv > 0 else float("nan")
    arrays = {"gradient": grad[0], "hessian": H, "hessian_eigenvalues": eigs,
              "normal_hessian_eigenvalues": normal_eigs}
    return DiagnosticResult(arrays=arrays, scalars=scalars)


def trajectory_geometry(t: np.ndarray, thetas: np.ndarray, grad_norm: np.ndarray) -> dict:
    """Arc length (polygonal and ``int |grad L| dt``) and parameter norms of a stored trajectory."""
    steps = np.linalg.norm(np.diff(thetas, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    norms = np.linalg.norm(thetas, axis=1)
    g = np.asarray(grad_norm, dtype=float)
    integral = float(np.sum(0.5 * (g[1:] + g[:-1]) * np.diff(t))) if len(t) > 1 else 0.0
    return {"arc_length": arc, "param_norm": norms, "trajectory_length": float(arc[-1]),
            "trajectory_length_grad_integral": integral, "max_param_norm": float(norms.max()),
            "initial_param_norm": float(norms[0]), "final_param_norm": float(norms[-1])}


class CriticalPoints(Diagnostic):
    """Classification of the end point and the geometry of the path to it.

    Arrays: ``gradient (P,)``, ``hessian (P, P)``, ``hessian_eigenvalues (P,)``,
    ``normal_hessian_eigenvalues (P - symmetry_dim,)``, ``arc_length (T,)`` (cumulative, polygonal),
    ``param_norm (T,)``.
    Scalars: ``classification`` (strict_minimum / saddle / degenerate / not_critical),
    ``critical_type`` (function_space_critical / pure / rank_deficient / not_critical), ``loss``,
    ``grad_norm``, ``function_space_grad_norm``, ``hessian_min_eig``, ``hessian_max_eig``,
    ``hessian_n_negative`` / ``_n_zero`` / ``_n_positive``, ``normal_min_eig``, ``symmetry_dim``,
    ``rank``, ``rank_full``, ``eig_tol``, ``grad_tol``, ``hessian_method``, ``hessian_fd_rel_diff``,
    ``trajectory_length``, ``trajectory_length_grad_integral``, ``max_param_norm``,
    ``initial_param_norm``, ``final_param_norm``; 1-D LCN: ``distance_to_discriminant``,
    ``relative_distance_to_discriminant``.
    """

    name = "critical_points"

    @dataclass(frozen=True)
    class Options:
        grad_tol: float = option(1.0e-6, kind="float", check="positive",
                                 doc="the end point is critical if |grad L| <= grad_tol")
        eig_rtol: float = option(1.0e-8, kind="float", check="positive",
                                 doc="eigenvalues within eig_rtol * max |eig| of zero count as zero")
        rank_rtol: float = option(1.0e-8, kind="float", check="positive",
                                  doc="relative singular value threshold of rank dmu")
        hessian: str = option("analytic", kind="str", choices=("analytic", "finite_difference"),
                              doc="Hessian used for the spectrum (the other one is the check)")

    def evaluate(self, problem, trajectory):
        o = self.options
        thetas = trajectory_thetas(problem, trajectory)
        result = critical_point_at(problem, thetas[-1], grad_tol=o.grad_tol, eig_rtol=o.eig_rtol,
                                   rank_rtol=o.rank_rtol, method=o.hessian)
        geo = trajectory_geometry(np.asarray(trajectory.t, dtype=float), thetas,
                                  np.asarray(trajectory.grad_norm, dtype=float))
        result.arrays["arc_length"] = geo.pop("arc_length")
        result.arrays["param_norm"] = geo.pop("param_norm")
        result.scalars.update(geo)
        return result
