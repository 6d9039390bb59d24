"""Rank of the parametrization ``mu: theta -> v`` (the end-to-end map), ``rank dmu = rank J``.

Numerical rank: the number of singular values of ``J`` (``E x P``) above ``rtol * sigma_max``; the
tolerance and the singular values are stored so that a reader can judge the gap.

Expected (maximal) rank:

- LCN (any D, any strides): ``sum_l |k_l| - (L-1)`` (``|k_l|`` the number of filter entries), capped by
  ``E``. Generic fibers of ``mu`` are the rescaling orbits ``w_l -> c_l w_l``, ``prod c_l = 1``
  (dimension ``L - 1``): if the upsampled layer polynomials ``u_l`` are pairwise coprime, then in
  ``sum_l du_l prod_{m != l} u_m = 0`` each ``u_l`` divides ``du_l`` (unique factorization), so
  ``du_l = c_l u_l`` with ``sum c_l = 0``. The rank drops when layers share a root (1-D, stride 1:
  ``rank = sum k_l - (L-1) - deg gcd`` for two layers), so for 1-D LCNs the smallest chordal distance
  between the roots of two layers is reported alongside.
- DLN with widths ``d_0..d_L``: ``r (d_0 + d_L - r)`` with ``r = min_l d_l``, the dimension of the
  manifold of ``d_L x d_0`` matrices of rank ``r`` (the image of ``mu`` near a point where every
  partial product has full rank).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import polynomials as poly
from ..options import option
from .base import Diagnostic, DiagnosticResult, subsample_indices, trajectory_thetas


def expected_rank(model) -> int:
    """The generic (maximal) rank of ``dmu`` (see module doc): the model's ``expected_rank``."""
    return model.expected_rank()


def numerical_rank(singular_values: np.ndarray, rtol: float) -> int:
    """``#{sigma_i > rtol * sigma_max}`` (0 if all vanish)."""
    s = np.asarray(singular_values)
    if s.size == 0 or s[0] == 0:
        return 0
    return int(np.sum(s > rtol * s[0]))


def jacobian_singular_values(model, thetas: np.ndarray) -> np.ndarray:
    """Singular values (descending) of ``J`` at each of ``thetas (T, P)``: ``(T, min(E, P))``."""
    return np.linalg.svd(model.jacobian(np.asarray(thetas, dtype=float)), compute_uv=False)


def min_common_root_distance(model, theta: np.ndarray) -> float:
    """Smallest chordal distance between roots (hyperroots) of two different layers of a 1-D LCN
    (``nan`` for one layer): zero iff two upsampled layer polynomials share a root."""
    layers = [w[0] for w in model.split(np.asarray(theta, dtype=float)[None])]
    spacings = model.polynomial_spacings()
    hyper = [poly.upsample_roots(poly.form_roots(w), S) for w, S in zip(layers, spacings)]
    best = float("nan")
    for i in range(len(hyper)):
        for j in range(i + 1, len(hyper)):
            d = poly.min_chordal_distance(hyper[i], hyper[j])
            if np.isfinite(d) and not d >= best:
                best = d
    return best


class ParametrizationRank(Diagnostic):
    """``rank dmu`` along the trajectory (subsampled) and at its end, against the expected rank.

    Arrays: ``t (T',)``, ``rank (T',)``, ``singular_values (T', min(E, P))``.
    Scalars (at the final point): ``rank``, ``expected_rank``, ``full`` (``rank == expected_rank``),
    ``deficiency`` (``expected - rank``), ``min_rank`` (along the trajectory), ``rtol``,
    ``sigma_max``, ``sigma_last_kept`` (the smallest singular value counted), ``sigma_first_dropped``
    (the largest one not counted, ``nan`` if none); for 1-D LCNs ``min_common_root_distance`` and
    ``layers_share_root`` (that distance ``<= root_tol``).
    """

    name = "parametrization_rank"

    @dataclass(frozen=True)
    class Options:
        rtol: float = option(1.0e-8, kind="float", check="positive",
                             doc="singular values above rtol * sigma_max count")
        root_tol: float = option(1.0e-6, kind="float", check="positive",
                                 doc="chordal distance under which two layers share a root (1-D LCN)")
        max_points: int = option(200, kind="int", check="at_least_two",
                                 doc="at most this many trajectory points are examined")

    def evaluate(self, problem, trajectory):
        model, o = problem.model, self.options
        thetas = trajectory_thetas(problem, trajectory)
        idx = subsample_indices(len(thetas), o.max_points)
        s = jacobian_singular_values(model, thetas[idx])
        ranks = np.array([numerical_rank(row, o.rtol) for row in s], dtype=np.int64)
        final = s[-1]
        r = int(ranks[-1])
        expected = expected_rank(model)
        scalars = {
            "rank": r,
            "expected_rank": expected,
            "full": r == expected,
            "deficiency": expected - r,
            "min_rank": int(ranks.min()),
            "rtol": o.rtol,
            "sigma_max": float(final[0]) if final.size else 0.0,
            "sigma_last_kept": float(final[r - 1]) if r > 0 else float("nan"),
            "sigma_first_dropped": float(final[r]) if r < final.size else float("nan"),
        }
        if model.polynomial_spacings() is not None:
            d = min_common_root_distance(model, thetas[-1])
            scalars["min_common_root_distance"] = d
            scalars["layers_share_root"] = bool(np.isfinite(d) and d <= o.root_tol)
        arrays = {"t": np.asarray(trajectory.t, dtype=float)[idx], "rank": ranks,
                  "singular_values": s}
        return DiagnosticResult(arrays=arrays, scalars=scalars)
