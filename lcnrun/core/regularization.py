"""L2-regularized training and the fast-slow (fiber / across-fiber) decomposition of its velocity.

Objective (convention: no factor 1/2 on the penalty)::

    L_lambda(theta) = L(theta) + lambda * R(theta),   R(theta) = sum_p |W_p|_F^2 = |theta|^2,
    grad L_lambda = grad L + 2 lambda theta.

:class:`RegularizedProblem` wraps a :class:`~lcnrun.core.problem.Problem` with the same
``value_and_grad`` interface, so ``gradient_flow`` and ``gradient_descent`` train ``L_lambda``
unchanged; their ``loss``/``grad_norm`` are then those of ``L_lambda`` (:func:`fiber_decomposition`
gives the data loss ``L`` and ``R`` separately).

Under regularized gradient flow the conserved quantities of plain gradient flow decay exactly:
LCN ``delta_ij(t) = delta_ij(0) exp(-4 lambda t)``, DLN ``W_{l+1}^T W_{l+1} - W_l W_l^T`` likewise
(because ``<w_l, grad_{w_l} L>`` is the same for every layer).

Fiber decomposition (Lindsey & Menon, arXiv 2511.01137): the fiber ``{theta : e(theta) = e0}`` has
tangent space ``ker J`` at ``theta`` (``J = de/dtheta``). A velocity ``u`` splits orthogonally into
``u_along = Pi_{ker J} u`` (along the fiber: regularizing, it keeps ``e``) and
``u_across = u - u_along`` (across: learning, it moves ``e``). For ``u = -grad L_lambda``:
``grad L = J^T grad_e l`` lies in ``(ker J)^perp``, so ``u_along = -2 lambda Pi_{ker J} theta`` (``kappa = 2 lambda``
times the L2 balancing flow ``-Pi_{ker J} theta`` of Lindsey & Menon, whose ``E + kappa/2 |W|^2`` is our ``L_lambda``) and ``u_across = -grad L - 2 lambda (I - Pi_{ker J}) theta``.
``ker J`` is computed from the SVD of ``J``, singular values at most ``rank_rtol * sigma_max(J)``
counting as zero.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .options import option


@dataclass(frozen=True)
class RegularizationOptions:
    """The ``regularization:`` section of a spec."""

    l2: float = option(0.0, kind="float", check="nonnegative",
                       doc="lambda in L + lambda * sum_p |W_p|_F^2 (no factor 1/2; 0: none)")


class RegularizedProblem:
    """``L_lambda = L + lambda |theta|^2`` around a problem; all methods take batched ``theta (B, P)``.

    ``model``, ``loss``, ``dataset``, ``n_samples``, ``quadratic``, ``features`` and
    ``end_to_end_loss_and_gradient`` (the data term as a function of ``e``) are the wrapped problem's.
    """

    def __init__(self, problem, l2: float):
        if not l2 >= 0:
            raise ValueError(f"l2 must be non-negative, got {l2}")
        self.problem = problem
        self.l2 = float(l2)
        self.model = problem.model
        self.loss = problem.loss
        self.dataset = problem.dataset
        self.n_samples = problem.n_samples
        self.quadratic = problem.quadratic
        self.features = problem.features

    @staticmethod
    def regularizer(theta: np.ndarray) -> np.ndarray:
        """``R(theta) = sum_p |W_p|_F^2``, shape ``(B,)``."""
        theta = np.asarray(theta, dtype=float)
        return np.einsum("bp,bp->b", theta, theta)

    def end_to_end_loss_and_gradient(self, e):
        return self.problem.end_to_end_loss_and_gradient(e)

    def chain_program(self):
        return self.problem.chain_program()

    def compiled(self, batch: int):
        """The wrapped problem's compiled form with the penalty ``l2 |theta|^2`` added."""
        compiled = self.problem.compiled(batch)
        if compiled is None:
            return None
        program, forms = compiled
        return program, dataclasses.replace(forms, l2=self.l2)

    def member(self, b: int):
        return self

    def value_and_grad_of(self, theta, members):
        return self.value_and_grad(theta)

    def data_value_and_grad(self, theta):
        """``L(theta)`` and ``grad L(theta)`` without the penalty."""
        return self.problem.value_and_grad(theta)

    def value_and_grad(self, theta):
        """``L_lambda(theta)`` ``(B,)`` and ``grad L_lambda(theta)`` ``(B, P)``."""
        theta = np.asarray(theta, dtype=float)
        compiled = self.compiled(theta.shape[0])
        if compiled is not None:
            from .kernels import value_and_grad  # noqa: PLC0415
            return value_and_grad(*compiled, theta)
        val, grad = self.problem.value_and_grad(theta)
        return val + self.l2 * self.regularizer(theta), grad + (2.0 * self.l2) * theta

    def value(self, theta):
        if self.compiled(np.shape(theta)[0]) is not None:
            return self.value_and_grad(theta)[0]
        return self.problem.value(theta) + self.l2 * self.regularizer(theta)

    def direct_value(self, theta):
        """``L_lambda`` with ``L`` from the network run layer by layer (the reference value)."""
        return self.problem.direct_value(theta) + self.l2 * self.regularizer(theta)


def regularize(problem, options: RegularizationOptions | None):
    """The problem to train: ``problem`` itself if there is no penalty, else a :class:`RegularizedProblem`."""
    if options is None or options.l2 == 0:
        return problem
    return RegularizedProblem(problem, options.l2)


def fiber_decomposition(problem, theta: np.ndarray, rank_rtol: float = 1.0e-10) -> dict[str, np.ndarray]:
    """Series along stored states ``theta (T, P)`` of the velocity ``u = -grad L_lambda`` split at the fiber.

    Returns, each ``(T,)``: ``velocity_along_fiber`` ``|Pi_{ker J} u|``, ``velocity_across_fiber``
    ``|u - Pi_{ker J} u|``, ``rank_J``, ``data_loss`` ``L``, ``regularizer`` ``R = sum_p |W_p|_F^2``.
    ``problem`` is a :class:`RegularizedProblem` or a plain problem (``lambda = 0``: the along
    component vanishes up to rounding). The same split holds for gradient descent, whose
    velocity per unit time ``t = step * lr`` is also ``-grad L_lambda``.
    """
    theta = np.asarray(theta, dtype=float)
    model = problem.model
    _, grad = problem.value_and_grad(theta)
    base = problem.problem if isinstance(problem, RegularizedProblem) else problem
    data_loss = base.value_and_grad(theta)[0]
    J = model.jacobian(theta)
    along = np.empty(len(theta))
    across = np.empty(len(theta))
    rank = np.empty(len(theta), dtype=np.int64)
    for i, (Ji, gi) in enumerate(zip(J, grad)):
        _, s, vt = np.linalg.svd(Ji, full_matrices=False)
        r = int(np.sum(s > rank_rtol * s[0])) if s.size and s[0] > 0 else 0
        u = -gi
        u_across = vt[:r].T @ (vt[:r] @ u)
        along[i] = np.linalg.norm(u - u_across)
        across[i] = np.linalg.norm(u_across)
        rank[i] = r
    return {"velocity_along_fiber": along, "velocity_across_fiber": across, "rank_J": rank,
            "data_loss": data_loss, "regularizer": RegularizedProblem.regularizer(theta)}
