"""Polynomial structure of a 1-D LCN (Kohn, Merkh, Montufar, Trager, arXiv 2108.01538; strides:
Kohn, Montufar, Shahverdi, Trager, arXiv 2304.05752).

The end-to-end filter is the polynomial ``v(z) = W_1(z) W_2(z^{S_1}) ... W_L(z^{S_{L-1}})``. Roots are
those of binary forms (:mod:`lcnrun.core.polynomials`): formal degree ``k - 1``, roots at infinity
kept, distances chordal on the Riemann sphere (diameter 1).

Filling. With ``dim M = 1 + sum_l (k_l - 1)`` (the dimension of the function space for any strides,
2304.05752) and the ambient size ``k = 1 + sum_l (k_l - 1) S_{l-1}``:

- if some layer with ``k_l > 1`` follows a stride product ``S_{l-1} > 1``, then ``dim M < k``: the
  function space is a lower-dimensional ("thin") subset, never filling;
- otherwise every non-trivial layer acts at spacing 1 and the stride-one theorem of 2108.01538
  applies: filling (``M = R^k``) iff at most one filter size ``k_l`` is even (a real polynomial of
  even degree splits into real factors of any even degrees; an odd-degree factor needs a real root,
  and a real polynomial may have none, or only one).

Boundary. For a stride-one, non-filling architecture the function space is full-dimensional and its
Euclidean boundary lies in the set of filters with a real root of multiplicity ``>= 2``; the Euclidean
distance from ``v`` to that set (the *real discriminant*, computed exactly by
:func:`lcnrun.core.polynomials.distance_to_real_discriminant`) is therefore a lower bound for the
distance to the boundary, and it is zero on the boundary.

Repeated filters (2108.01538 predicts optimized filters repeat across layers). For every pair of
layers: ``|cos(w_i, w_j)|`` when ``k_i = k_j`` (``nan`` otherwise), and, always, two scale-free
common-root measures of the upsampled layer polynomials ``u_l(z) = W_l(z^{S_{l-1}})``: the smallest
chordal distance between their roots (the hyperroots) and the normalized resultant
``|Res(u_i, u_j)| / (|u_i|^{n_j} |u_j|^{n_i})`` in ``[0, 1]``. Both vanish iff the two layers share a
root; pairwise coprime ``u_l`` imply that ``dmu`` has full rank (see ``parametrization_rank``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import polynomials as poly
from ..options import option
from .base import Diagnostic, DiagnosticResult, subsample_indices, trajectory_thetas

ONE_D_ONLY = ("polynomial roots are computed for 1-D LCNs only (a filter with D >= 2 axes is a "
              "multivariate polynomial without a finite set of roots)")


def layer_filters(model, theta: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
    """The 1-D layer filters ``w_l`` of ``theta (P,)`` and their spacings ``S_{l-1}``."""
    layers = [w[0] for w in model.split(np.asarray(theta, dtype=float)[None])]
    return layers, [S[0] for S in model.cumulative_strides[:-1]]


def filling(model) -> tuple[bool, int, int, str]:
    """``(filling, dim M, ambient size k, reason)`` of a 1-D LCN architecture (see module doc)."""
    k = [f[0] for f in model.filters]
    S = [s[0] for s in model.cumulative_strides[:-1]]
    dim = 1 + sum(kk - 1 for kk in k)
    ambient = model.end_to_end_size
    if dim < ambient:
        return False, dim, ambient, (f"thin: dim M = sum k_l - (L-1) = {dim} < {ambient} = size of v "
                                     "(a layer of size > 1 acts after a stride > 1)")
    even = [l + 1 for l, kk in enumerate(k) if kk > 1 and kk % 2 == 0 and S[l] == 1]
    if len(even) <= 1:
        return True, dim, ambient, "stride one (effectively) and at most one even filter size"
    return False, dim, ambient, (f"stride one (effectively) with {len(even)} even filter sizes "
                                 f"(layers {even}): filters with too few real roots are missing")


def pairwise_structure(model, theta: np.ndarray) -> dict[str, np.ndarray]:
    """``(L, L)`` matrices ``cos_similarity`` (``|cos|``, equal sizes only), ``min_root_distance``
    (chordal, hyperroots) and ``normalized_resultant`` of the upsampled layer polynomials; the
    diagonal is ``nan``."""
    layers, spacings = layer_filters(model, theta)
    L = len(layers)
    cos = np.full((L, L), np.nan)
    dist = np.full((L, L), np.nan)
    res = np.full((L, L), np.nan)
    hyper = [poly.upsample_roots(poly.form_roots(w), S) for w, S in zip(layers, spacings)]
    ups = [poly.upsample(w, S) for w, S in zip(layers, spacings)]
    for i in range(L):
        for j in range(i + 1, L):
            if len(layers[i]) == len(layers[j]):
                ni, nj = np.linalg.norm(layers[i]), np.linalg.norm(layers[j])
                if ni > 0 and nj > 0:
                    cos[i, j] = cos[j, i] = abs(layers[i] @ layers[j]) / (ni * nj)
            dist[i, j] = dist[j, i] = poly.min_chordal_distance(hyper[i], hyper[j])
            res[i, j] = res[j, i] = poly.normalized_resultant(ups[i], ups[j])
    return {"cos_similarity": cos, "min_root_distance": dist, "normalized_resultant": res}


def _nanmin(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmin(a)) if np.any(np.isfinite(a)) else float("nan")


def _nanmax(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmax(a)) if np.any(np.isfinite(a)) else float("nan")


def end_to_end_roots(v: np.ndarray, real_tol: float, inf_tol: float) -> dict:
    """Roots of ``v`` and their counts: ``roots (n, 2)`` homogeneous, ``n_real``, ``n_infinity``,
    ``min_real_gap`` (smallest chordal distance between two real roots; ``nan`` if fewer than two)."""
    h = poly.form_roots(v)
    real = poly.is_real_root(h, real_tol)
    hr = h[real]
    gap = float("nan")
    if len(hr) >= 2:
        d = poly.pairwise_chordal(hr, hr)
        gap = float(np.min(d[np.triu_indices(len(hr), 1)]))
    return {"roots": h, "n_real": int(real.sum()),
            "n_infinity": int(np.sum(poly.distance_to_infinity(h) <= inf_tol)), "min_real_gap": gap}


class PolynomialStructure(Diagnostic):
    """Roots, real-root counts, filling, distance to the real discriminant, repeated filters.

    Evaluated at the final point (option ``at``); series along the trajectory if ``series``.
    Arrays: ``roots/end_to_end (k-1,)`` complex affine roots of ``v`` (``inf`` at infinity);
    ``roots/layer_<l> (k_l - 1,)`` roots of ``W_l`` in its own variable ``y = z^{S_{l-1}}``;
    ``n_real_roots_layers (L,)`` (in ``y``); ``cos_similarity``, ``min_root_distance``,
    ``normalized_resultant`` ``(L, L)``; series ``t (T',)``, ``n_real_roots_series (T',)``,
    ``distance_to_discriminant_series (T',)``.
    Scalars: ``degree_end_to_end``, ``n_real_roots_end_to_end``, ``n_roots_at_infinity_end_to_end``,
    ``min_real_root_gap``, ``filling``, ``filling_reason``, ``function_space_dim``, ``ambient_dim``,
    ``distance_to_discriminant``, ``relative_distance_to_discriminant`` (over ``|v|``),
    ``min_common_root_distance``, ``min_normalized_resultant``, ``max_abs_cos``,
    ``repeated_filters`` (some equal-size pair with ``|cos| >= 1 - repeat_tol``), ``real_tol``,
    ``inf_tol``, ``at``. ``applicable = False`` for D >= 2.
    """

    name = "polynomial_structure"
    models = ("lcn",)

    @dataclass(frozen=True)
    class Options:
        at: str = option("final", kind="str", choices=("initial", "final"),
                         doc="which stored point the roots are reported for")
        real_tol: float = option(1.0e-6, kind="float", check="positive",
                                 doc="a root is real if its chordal distance to its conjugate is at most this")
        inf_tol: float = option(1.0e-8, kind="float", check="positive",
                                doc="a root is at infinity if its chordal distance to infinity is at most this")
        repeat_tol: float = option(1.0e-6, kind="float", check="positive",
                                   doc="filters are repeated if |cos| >= 1 - repeat_tol")
        series: bool = option(True, kind="bool", doc="also record real-root counts and the "
                                                     "discriminant distance along the trajectory")
        max_points: int = option(200, kind="int", check="at_least_two",
                                 doc="at most this many trajectory points in the series")

    def evaluate(self, problem, trajectory):
        model, o = problem.model, self.options
        if model.ndim != 1:
            return DiagnosticResult.not_applicable(ONE_D_ONLY)
        thetas = trajectory_thetas(problem, trajectory)
        theta = thetas[-1] if o.at == "final" else thetas[0]
        return self.at_point(model, theta, thetas=thetas if o.series else None,
                             times=np.asarray(trajectory.t, dtype=float))

    def at_point(self, model, theta, *, thetas=None, times=None) -> DiagnosticResult:
        o = self.options
        layers, spacings = layer_filters(model, theta)
        v = model.end_to_end(np.asarray(theta, dtype=float)[None])[0]
        e2e = end_to_end_roots(v, o.real_tol, o.inf_tol)
        arrays = {"roots/end_to_end": poly.to_affine(e2e["roots"])}
        n_real_layers = []
        for l, w in enumerate(layers):
            h = poly.form_roots(w)
            arrays[f"roots/layer_{l}"] = poly.to_affine(h)
            n_real_layers.append(int(poly.is_real_root(h, o.real_tol).sum()))
        arrays["n_real_roots_layers"] = np.asarray(n_real_layers, dtype=np.int64)
        pair = pairwise_structure(model, theta)
        arrays.update(pair)
        fill, dim, ambient, why = filling(model)
        V = None
        if thetas is not None:
            idx = subsample_indices(len(thetas), o.max_points)
            V = model.end_to_end(thetas[idx])
        # the point's and the series' distances in one vectorised call (row 0: the point)
        dists, _ = poly.distances_to_real_discriminant(v[None] if V is None else np.vstack([v[None], V]))
        dist = float(dists[0])
        nv = float(np.linalg.norm(v))
        max_cos = _nanmax(pair["cos_similarity"])
        scalars = {
            "degree_end_to_end": len(v) - 1,
            "n_real_roots_end_to_end": e2e["n_real"],
            "n_roots_at_infinity_end_to_end": e2e["n_infinity"],
            "min_real_root_gap": e2e["min_real_gap"],
            "filling": fill,
            "filling_reason": why,
            "function_space_dim": dim,
            "ambient_dim": ambient,
            "distance_to_discriminant": dist,
            "relative_distance_to_discriminant": dist / nv if nv > 0 else float("nan"),
            "min_common_root_distance": _nanmin(pair["min_root_distance"]),
            "min_normalized_resultant": _nanmin(pair["normalized_resultant"]),
            "max_abs_cos": max_cos,
            "repeated_filters": bool(np.isfinite(max_cos) and max_cos >= 1 - o.repeat_tol),
            "real_tol": o.real_tol,
            "inf_tol": o.inf_tol,
            "at": o.at,
        }
        if V is not None:
            arrays["t"] = np.asarray(times, dtype=float)[idx]
            # the roots of all stored filters at once (the same as end_to_end_roots row by row)
            arrays["n_real_roots_series"] = np.sum(poly.is_real_root(poly.forms_roots(V), o.real_tol),
                                                   axis=1).astype(np.int64)
            arrays["distance_to_discriminant_series"] = dists[1:]
        return DiagnosticResult(arrays=arrays, scalars=scalars)
