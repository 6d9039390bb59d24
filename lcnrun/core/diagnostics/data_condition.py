"""The data condition of the convergence theorem (Diederen, Rauhut, Terstiege, arXiv 2601.08547):
the patch Gram matrix has full rank.

For an LCN the outputs are ``f(x_n) = P_n v`` with ``P_n`` the matrix of the input's patches of the
end-to-end size (at stride ``S_L``), and the patch Gram matrix is ``G = (1/N) sum_n P_n^T P_n``
(``E x E``); it is the Hessian of the square loss in ``v``, so full rank makes ``l`` strictly convex
in ``v``. For a DLN the analogue is the input covariance ``Sigma_xx = (1/N) sum_n x_n x_n^T``
(``d_0 x d_0``). Numerical rank: eigenvalues above ``rtol * lambda_max``.

It only reads the data (``needs_trajectory = False``): :func:`check_data_condition` can run when a run
starts, and a violation is returned as a warning text for the run's record.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from .base import Diagnostic, DiagnosticResult


def patch_gram(problem) -> np.ndarray:
    """``G`` (LCN, ``E x E``) or ``Sigma_xx`` (DLN, ``d_0 x d_0``) of the problem's data."""
    model = problem.model
    if problem.quadratic is not None:
        return np.asarray(problem.quadratic.gram, dtype=float)
    features = problem.features if problem.features is not None else model.features(
        problem.dataset.inputs)
    return model.data_gram(features)


def check_data_condition(problem, rtol: float = 1e-10) -> DiagnosticResult:
    """Rank and spectrum of the patch Gram matrix; a warning if it is rank-deficient."""
    G = patch_gram(problem)
    lam = np.linalg.eigvalsh(0.5 * (G + G.T))
    top = float(lam[-1]) if lam.size else 0.0
    rank = int(np.sum(lam > rtol * top)) if top > 0 else 0
    n = G.shape[0]
    what = problem.model.gram_name
    scalars = {
        "gram_rank": rank,
        "gram_size": n,
        "full_rank": rank == n,
        "gram_min_eig": float(lam[0]),
        "gram_max_eig": top,
        "gram_cond": top / float(lam[0]) if lam[0] > 0 else float("inf"),
        "rtol": rtol,
    }
    warnings = []
    if rank < n:
        warnings.append(
            f"data condition violated: the {what} ({n} x {n}, from {problem.n_samples} samples) has "
            f"rank {rank} < {n} (smallest eigenvalue {lam[0]:.3g}, rtol {rtol:g}); the convergence "
            "theorem of Diederen, Rauhut, Terstiege (arXiv 2601.08547) assumes full rank, and the "
            "loss is not strictly convex in the end-to-end map")
    return DiagnosticResult(arrays={"gram_eigenvalues": lam}, scalars=scalars, warnings=warnings)


class DataCondition(Diagnostic):
    """Full rank of the patch Gram matrix (see module doc).

    Arrays: ``gram_eigenvalues (n,)`` ascending. Scalars: ``gram_rank``, ``gram_size``,
    ``full_rank``, ``gram_min_eig``, ``gram_max_eig``, ``gram_cond``, ``rtol``.
    """

    name = "data_condition"
    needs_trajectory = False

    @dataclass(frozen=True)
    class Options:
        rtol: float = option(1.0e-10, kind="float", check="positive",
                             doc="eigenvalues above rtol * lambda_max count for the rank")

    def evaluate(self, problem, trajectory=None):
        return check_data_condition(problem, self.options.rtol)
