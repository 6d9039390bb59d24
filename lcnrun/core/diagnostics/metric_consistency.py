"""Metric consistency (Achour, Kohn, Rauhut, arXiv 2507.06367): is ``K = J J^T`` determined by the
end-to-end filter ``v`` and the invariants ``delta``?

The claim. Gradient flow keeps ``delta_l = |w_l|^2 - |w_{l+1}|^2`` fixed, so the parameter flow is a
Riemannian gradient flow on function space ``dv/dt = -K(v, delta) grad l(v)`` as soon as ``K(theta)``
is a function of ``(v(theta), delta(theta))``. The paper proves a statement of this kind for
D-dimensional filters with ``D >= 2`` and for ``D = 1`` when all strides are ``> 1``; for ``D = 1``
with stride 1 it fails because roots can be exchanged between layers: e.g. filters (3, 3) with layer
roots ``{.5, -1.2 | 2, .3}`` and ``{.5, 2 | -1.2, .3}`` (rescaled to the same ``delta``) have the same
``(v, delta)`` but different ``K``. Only ``s_1 .. s_{L-1}`` enter ``v`` and ``K`` (not ``s_L``).

What this diagnostic constructs, at one stored point ``theta`` (option ``at``):

1. **Root re-distribution** (``D = 1``; origin 0). The roots of ``v`` (the hyperroots of all layers,
   as binary-form roots, so roots at infinity are kept) are dealt to the layers in every way that
   keeps each layer a real filter of its size in its own variable ``z^{S_{l-1}}``
   (:func:`lcnrun.core.polynomials.root_redistributions`); each layer is rebuilt from its roots, the
   common scale fitted so that the product is ``v``, and the layer scales ``c_l`` (``prod c_l``
   fixed) solved so that ``delta`` is matched exactly (:func:`rescale_to_invariants`).
2. **Axis-factor re-distribution** (``D >= 2``, only if every layer is a separable, rank-one tensor
   ``w_l = w_l^(1) (x) ... (x) w_l^(D)``; origin 1): step 1 on every axis separately. Separable
   filters are a measure-zero set on which factorization is not unique.
3. **Numerical fiber search** (any ``D``; origin 2): ``restarts`` Levenberg-Marquardt solves of
   ``v(theta') = v, delta(theta') = delta`` from random points (layer norms matched), accepted at
   relative residual ``<= fiber_tol``. It knows nothing about roots, so it probes the whole finite
   level set ``{theta' : v(theta') = v, delta(theta') = delta}``; in D = 1, stride 1 it finds the
   root exchanges of step 1 (a positive control of its power).

Every point found is classified (``kind``): 0 **sign flip** of ``theta`` (``w_i -> -w_i, w_j -> -w_j``;
``K`` is exactly invariant), 1 **layer permutation** (the layer filters of ``theta`` permuted among
layers of the same shape and the same spacing ``S_{l-1}``, rescaled), 2 **root exchange** (any other
factorization of ``v``). Generic filters with ``D >= 2`` are irreducible polynomials and
factorization in ``R[x_1..x_D]`` is unique up to scalars (fixed by ``v`` and ``delta``), so kind 2
cannot occur; with all 1-D strides ``> 1`` the spacings differ and the hyperroot structure rigid, so
kinds 1 and 2 cannot occur (generically). Kind 1 occurs (any ``D``) for two layers of equal shape and
equal spacing: there ``K' - K = (c^-2 - 1) T_i T_i^T + (c^2 - 1) T_j T_j^T`` with
``c^2 = |w_i|^2 / |w_j|^2``, zero only for ``delta_ij = 0``; the two sheets meet only where
``w_i ~ w_j`` (codimension ``|k| - 1 >= 3`` in D = 2), which a trajectory generically never reaches,
so the metric is still a function of ``v`` along the sheet of the initialization -- in D = 1, stride 1
the sheets meet where two layers share a real root, a hypersurface that trajectories cross.

Reported: ``|K(theta') - K(theta)|_F / |K(theta)|_F`` per point and its maximum overall and per kind,
with the residuals ``|v' - v| / |v|`` and ``|delta' - delta| / mean |w_l|^2`` certifying that the
points lie on the same level set. A maximum over an empty set of points is ``nan``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from .. import polynomials as poly
from ..options import OptionError, option
from .base import Diagnostic, DiagnosticResult, trajectory_thetas

ORIGIN_ROOTS, ORIGIN_AXIS_FACTORS, ORIGIN_SEARCH = 0, 1, 2


def metric(model, theta: np.ndarray) -> np.ndarray:
    """``K = J J^T`` at one point ``theta (P,)``: ``(E, E)`` (end-to-end map flattened in C order)."""
    J = model.jacobian(np.asarray(theta, dtype=float)[None])[0]
    return J @ J.T


def theorem_case(model) -> tuple[bool, str]:
    """Whether the theorem of 2507.06367 covers the architecture, and which case it is."""
    if model.n_layers == 1:
        return True, "L=1"
    if model.ndim >= 2:
        return True, "D>=2"
    inner = [s[0] for s in model.strides[:-1]]
    if all(s > 1 for s in inner):
        return True, "D=1, strides>1"
    return False, "D=1, stride 1"


def canonical_signs(model, theta: np.ndarray) -> np.ndarray:
    """A representative of the sign-flip orbit of ``theta (P,)`` (flips leave ``v``, ``delta`` and
    ``K`` unchanged): layers ``1..L-1`` turned so that ``<w_l, r_l> >= 0`` for a fixed generic
    ``r_l``, the product of the flips put on the last layer."""
    layers = [w[0].ravel().copy() for w in model.split(np.asarray(theta, dtype=float)[None])]
    total = 1.0
    for w in layers[:-1]:
        s = 1.0 if w @ np.cos(1.0 + 2.3 * np.arange(w.size)) >= 0 else -1.0
        w *= s
        total *= s
    layers[-1] *= total
    return np.concatenate(layers)


def rescale_to_invariants(layers: list[np.ndarray], product_scale: float,
                          delta: np.ndarray) -> list[np.ndarray]:
    """Scales ``c_l`` with ``prod c_l = product_scale`` making ``|c_l w_l|^2 - |c_{l+1} w_{l+1}|^2 = delta_l``.

    With ``x_l = c_l^2 |w_l|^2`` the invariants say ``x_l = x_L + D_l``, ``D_l = sum_{m >= l} delta_m``,
    and the product condition ``prod_l (x_L + D_l) = product_scale^2 prod_l |w_l|^2`` has exactly one
    root ``x_L > max(0, -min D_l)`` (the left side increases from 0 to infinity). Solved by Brent's
    method in ``log(x_L - lower bound)``, then polished by Newton steps. The sign of
    ``product_scale`` goes to the first layer.
    """
    L = len(layers)
    if L == 1:
        return [product_scale * layers[0]]
    n = np.array([float(np.sum(w * w)) for w in layers])
    D = np.concatenate([np.cumsum(np.asarray(delta, dtype=float)[::-1])[::-1], [0.0]])
    lo = max(0.0, float(np.max(-D)))
    target = 2 * np.log(abs(product_scale)) + np.sum(np.log(n))
    unit = max(float(np.mean(n)), float(np.max(np.abs(D))), 1e-300)

    def f_of_s(s):
        with np.errstate(divide="ignore"):
            return float(np.sum(np.log(s + D)) - target)

    def f_of_u(u):
        return f_of_s(lo + unit * np.exp(u))

    a, b = -50.0, 50.0
    while f_of_u(a) > 0:
        a -= 50.0
    while f_of_u(b) < 0:
        b += 50.0
    from scipy.optimize import brentq  # noqa: PLC0415  (scipy on use: spec validation imports this module)

    s = lo + unit * np.exp(brentq(f_of_u, a, b, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))
    for _ in range(3):  # Newton on f(s) = sum log(s + D_l) - target
        step = f_of_s(s) / float(np.sum(1.0 / (s + D)))
        if not np.isfinite(step) or s - step <= lo:
            break
        s -= step
    x = s + D
    c = np.sqrt(x / n)
    c[0] *= np.sign(product_scale)
    return [cl * w for cl, w in zip(c, layers)]


def _assemble(model, unit_layers: list[np.ndarray], v: np.ndarray, delta: np.ndarray):
    """Fit the common scale to ``v`` and the layer scales to ``delta``; ``None`` if ``v`` is missed."""
    theta_u = model.join([w.reshape((1,) + shape) for w, shape in zip(unit_layers, model.param_shapes)])
    vu = model.end_to_end(theta_u)[0].ravel()
    denom = float(vu @ vu)
    if denom == 0:
        return None
    C = float(vu @ v) / denom
    if C == 0 or np.linalg.norm(C * vu - v) > 1e-6 * np.linalg.norm(v):
        return None
    layers = rescale_to_invariants([w.reshape(s) for w, s in zip(unit_layers, model.param_shapes)],
                                   C, delta)
    return model.join([w[None] for w in layers])[0]


def _axis_roots_redistributions(filters_1d: list[np.ndarray], spacings: list[int], tol: float,
                                max_count: int):
    """Unit-norm 1-D filters of every valid root re-distribution among layers (original included)."""
    roots = [poly.form_roots(w) for w in filters_1d]
    pool, assignments, truncated = poly.root_redistributions(roots, spacings, tol=tol,
                                                             max_count=max_count)
    out = []
    for asg in assignments:
        layers = []
        for l, idx in enumerate(asg):
            if len(idx) == 0:
                layers.append(np.ones(1))
                continue
            w, residual = poly.layer_from_hyperroots(pool[idx], spacings[l])
            if residual > 1e-6:
                break
            layers.append(w)
        else:
            out.append(layers)
    return out, truncated


def _separable_factors(w: np.ndarray, tol: float = 1e-10):
    """``w = lambda * f_1 (x) ... (x) f_D`` with unit ``f_a`` if ``w`` is (numerically) rank one."""
    factors = []
    for a in range(w.ndim):
        M = np.moveaxis(w, a, 0).reshape(w.shape[a], -1)
        U, s, _ = np.linalg.svd(M, full_matrices=False)
        if s[0] == 0 or (len(s) > 1 and s[1] > tol * s[0]):
            return None
        factors.append(U[:, 0])
    outer = factors[0]
    for f in factors[1:]:
        outer = np.multiply.outer(outer, f)
    lam = float(np.sum(outer * w))
    if np.linalg.norm(lam * outer - w) > 1e-8 * np.linalg.norm(w):
        return None
    return lam, factors


def constructed_points(model, theta: np.ndarray, *, tol: float = 1e-6, max_count: int = 64):
    """Same-``(v, delta)`` points from root / axis-factor re-distribution: ``(points, origins, truncated)``."""
    theta = np.asarray(theta, dtype=float)
    v = model.end_to_end(theta[None])[0].ravel()
    delta = model.invariants(theta[None])["invariants"][0]
    layers = [w[0] for w in model.split(theta[None])]
    points, origins, truncated = [], [], False
    if model.ndim == 1:
        spacings = [S[0] for S in model.cumulative_strides[:-1]]
        options, truncated = _axis_roots_redistributions(layers, spacings, tol, max_count)
        for unit_layers in options:
            p = _assemble(model, unit_layers, v, delta)
            if p is not None:
                points.append(p)
                origins.append(ORIGIN_ROOTS)
        return points, origins, truncated
    factored = [_separable_factors(w) for w in layers]
    if any(f is None for f in factored):
        return points, origins, truncated
    per_axis = []
    for a in range(model.ndim):
        spacings = [S[a] for S in model.cumulative_strides[:-1]]
        opts, tr = _axis_roots_redistributions([f[1][a] for f in factored], spacings, tol, max_count)
        truncated |= tr
        per_axis.append(opts)
    for count, combo in enumerate(product(*per_axis)):
        if count >= max_count:
            truncated = True
            break
        unit_layers = []
        for l in range(model.n_layers):
            t = combo[0][l]
            for a in range(1, model.ndim):
                t = np.multiply.outer(t, combo[a][l])
            unit_layers.append(t / np.linalg.norm(t))
        p = _assemble(model, unit_layers, v, delta)
        if p is not None:
            points.append(p)
            origins.append(ORIGIN_AXIS_FACTORS)
    return points, origins, truncated


def fiber_search(model, theta: np.ndarray, *, restarts: int = 16, seed: int = 0,
                 tol: float = 1e-10) -> list[np.ndarray]:
    """Solutions of ``v(theta') = v(theta)``, ``delta(theta') = delta(theta)`` from random starts.

    Residual ``F = ((v' - v) / |v|, (delta' - delta) / m)`` with ``m = mean_l |w_l|^2``, Jacobian
    ``(J / |v|, d delta / d theta / m)`` (``d delta_l = 2 <w_l, dw_l> - 2 <w_{l+1}, dw_{l+1}>``);
    Levenberg-Marquardt (trust-region reflective if there are fewer equations than unknowns) to
    ``xtol = ftol = gtol = 1e-15``; a start draws each layer as a Gaussian direction of the same norm
    as in ``theta``. Accepted if ``|F| <= tol``.
    """
    theta = np.asarray(theta, dtype=float)
    v = model.end_to_end(theta[None])[0].ravel()
    delta = model.invariants(theta[None])["invariants"][0]
    norms = np.sqrt(model.layer_norms_sq(theta[None])[0])
    sv, sd = float(np.linalg.norm(v)), float(np.mean(norms ** 2))
    if sv == 0 or sd == 0:
        return []
    L, P, off = model.n_layers, model.n_params, model.offsets

    def F(x):
        e = model.end_to_end(x[None])[0].ravel()
        d = model.invariants(x[None])["invariants"][0]
        return np.concatenate([(e - v) / sv, (d - delta) / sd])

    def JF(x):
        Jv = model.jacobian(x[None])[0] / sv
        Jd = np.zeros((L - 1, P))
        for l in range(L - 1):
            Jd[l, off[l]: off[l + 1]] = 2 * x[off[l]: off[l + 1]]
            Jd[l, off[l + 1]: off[l + 2]] = -2 * x[off[l + 1]: off[l + 2]]
        return np.vstack([Jv, Jd / sd])

    method = "lm" if model.end_to_end_size + L - 1 >= P else "trf"
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(restarts):
        x0 = rng.standard_normal(P)
        for l in range(L):
            seg = x0[off[l]: off[l + 1]]
            seg *= norms[l] / max(np.linalg.norm(seg), 1e-300)
        try:
            from scipy.optimize import least_squares  # noqa: PLC0415  (on use, as brentq)

            sol = least_squares(F, x0, jac=JF, method=method, xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                max_nfev=200 * P)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.all(np.isfinite(sol.x)) and np.linalg.norm(F(sol.x)) <= tol:
            found.append(sol.x)
    return found


SIGN_FLIP, LAYER_PERMUTATION, ROOT_EXCHANGE = 0, 1, 2


def classify_point(model, p: np.ndarray, theta: np.ndarray, tol: float = 1e-8) -> int:
    """Kind of a same-``(v, delta)`` point ``p`` relative to ``theta`` (see module doc): a layer
    permutation if every layer of ``p`` is parallel (``|cos| >= 1 - tol``) to a distinct layer of
    ``theta`` of the same shape and spacing, a sign flip if that permutation is the identity."""
    a = [w[0].ravel() for w in model.split(p[None])]
    b = [w[0].ravel() for w in model.split(theta[None])]
    L = model.n_layers
    key = [(model.param_shapes[l], model.cumulative_strides[l]) for l in range(L)]

    def parallel(x, y):
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        return nx > 0 and ny > 0 and abs(x @ y) >= (1 - tol) * nx * ny

    def match(l, used, perm):
        if l == L:
            return perm
        for j in range(L):
            if j not in used and key[j] == key[l] and parallel(a[l], b[j]):
                found = match(l + 1, used | {j}, perm + [j])
                if found is not None:
                    return found
        return None

    perm = match(0, frozenset(), [])
    if perm is None:
        return ROOT_EXCHANGE
    return SIGN_FLIP if perm == list(range(L)) else LAYER_PERMUTATION


def metric_consistency_at(model, theta: np.ndarray, *, restarts: int = 16, seed: int = 0,
                          root_tol: float = 1e-6, max_alternatives: int = 64,
                          fiber_tol: float = 1e-10) -> DiagnosticResult:
    """The diagnostic at one parameter point ``theta (P,)`` of an LCN (see module doc)."""
    theta = np.asarray(theta, dtype=float)
    applies, case = theorem_case(model)
    v = model.end_to_end(theta[None])[0].ravel()
    delta = model.invariants(theta[None])["invariants"][0]
    K = metric(model, theta)
    nK = float(np.linalg.norm(K))
    if nK == 0 or not np.all(np.isfinite(K)):
        res = DiagnosticResult.not_applicable("K = J J^T vanishes at this point (two or more zero "
                                              "layers): no metric to compare")
        res.scalars.update(theorem_applies=applies, theorem_case=case)
        return res
    constructed, origins, truncated = constructed_points(model, theta, tol=root_tol,
                                                         max_count=max_alternatives)
    searched = fiber_search(model, theta, restarts=restarts, seed=seed, tol=fiber_tol)
    candidates = list(zip(constructed, origins)) + [(p, ORIGIN_SEARCH) for p in searched]
    # distinct points up to sign flips; theta's own sign flips are kept once (as kind 0)
    scale = float(np.max(np.abs(theta)))
    points, origin, keys = [], [], [canonical_signs(model, theta)]
    for p, o in candidates:
        if np.max(np.abs(p - theta)) <= 1e-6 * scale:
            continue
        c = canonical_signs(model, p)
        dup = [np.max(np.abs(c - k)) <= 1e-6 * scale for k in keys]
        if any(dup[1:]) or (dup[0] and any(np.max(np.abs(canonical_signs(model, q) - keys[0]))
                                            <= 1e-6 * scale for q in points)):
            continue
        points.append(p)
        origin.append(o)
        if not dup[0]:
            keys.append(c)
    n = len(points)
    rel, v_res, d_res = np.empty(n), np.empty(n), np.empty(n)
    kind = np.empty(n, dtype=np.int64)
    scale_d = float(np.mean(model.layer_norms_sq(theta[None])[0]))
    for i, p in enumerate(points):
        rel[i] = np.linalg.norm(metric(model, p) - K) / nK
        v_res[i] = np.linalg.norm(model.end_to_end(p[None])[0].ravel() - v) / np.linalg.norm(v)
        d_res[i] = (np.max(np.abs(model.invariants(p[None])["invariants"][0] - delta)) / scale_d
                    if len(delta) else 0.0)
        kind[i] = classify_point(model, p, theta)

    def largest(mask):
        return float(np.max(rel[mask])) if mask.any() else float("nan")

    arrays = {
        "metric": K,
        "points": np.asarray(points).reshape(n, model.n_params),
        "origin": np.asarray(origin, dtype=np.int64),
        "kind": kind,
        "rel_diff": rel,
        "v_residual": v_res,
        "delta_residual": d_res,
    }
    scalars = {
        "theorem_applies": applies,
        "theorem_case": case,
        "max_rel_diff": largest(np.ones(n, dtype=bool)),
        "max_rel_diff_exchange": largest(kind == ROOT_EXCHANGE),
        "max_rel_diff_permutation": largest(kind == LAYER_PERMUTATION),
        "max_rel_diff_sign_flip": largest(kind == SIGN_FLIP),
        "n_points": n,
        "n_root_exchanges": int(np.sum(kind == ROOT_EXCHANGE)),
        "n_layer_permutations": int(np.sum(kind == LAYER_PERMUTATION)),
        "n_sign_flips": int(np.sum(kind == SIGN_FLIP)),
        "n_constructed": int(sum(o != ORIGIN_SEARCH for o in origin)),
        "n_searched": int(sum(o == ORIGIN_SEARCH for o in origin)),
        "max_v_residual": float(np.max(v_res)) if n else float("nan"),
        "max_delta_residual": float(np.max(d_res)) if n else float("nan"),
        "truncated": bool(truncated),
    }
    if model.ndim >= 2:
        scalars["separable"] = all(_separable_factors(w[0]) is not None
                                   for w in model.split(theta[None]))
    warnings = []
    exchange = scalars["max_rel_diff_exchange"]
    if applies and np.isfinite(exchange) and exchange > 1e-8:
        warnings.append(f"K differs by {exchange:.3g} (relative) at a root exchange with the same "
                        f"(v, delta) although the architecture is in the case '{case}' of the "
                        "theorem: the point is non-generic (separable filters, or layer polynomials "
                        "with hyperroot structure)")
    return DiagnosticResult(arrays=arrays, scalars=scalars, warnings=warnings)


class MetricConsistency(Diagnostic):
    """``|K(theta') - K(theta)|_F / |K(theta)|_F`` over points ``theta'`` with the same ``(v, delta)``.

    Arrays: ``metric (E, E)``; ``points (n, P)`` the other points found; ``origin (n,)`` 0 root
    re-distribution, 1 axis-factor re-distribution (separable D >= 2), 2 numerical fiber search;
    ``kind (n,)`` 0 sign flip, 1 layer permutation, 2 root exchange; ``rel_diff (n,)``;
    ``v_residual (n,)``, ``delta_residual (n,)``.
    Scalars: ``theorem_applies``, ``theorem_case``, ``max_rel_diff`` (all points) and
    ``max_rel_diff_exchange`` / ``_permutation`` / ``_sign_flip`` (nan if none), ``n_points``,
    ``n_root_exchanges``, ``n_layer_permutations``, ``n_sign_flips``, ``n_constructed``,
    ``n_searched``, ``max_v_residual``, ``max_delta_residual``, ``truncated``, ``at``; ``separable``
    for D >= 2. A warning if the theorem's case has a root exchange with a different ``K``.
    """

    name = "metric_consistency"
    models = ("lcn",)

    @dataclass(frozen=True)
    class Options:
        at: str = option("initial", kind="str", choices=("initial", "final"),
                         doc="which stored point: the initialization or the end of the run")
        restarts: int = option(16, kind="int", check="nonnegative",
                               doc="random starts of the numerical fiber search")
        seed: int = option(0, kind="int", check="nonnegative", doc="seed of the fiber search's starts")
        root_tol: float = option(1.0e-6, kind="float", check="positive",
                                 doc="chordal distance under which two roots are the same")
        max_alternatives: int = option(64, kind="int", check="at_least_one",
                                       doc="cap on the root re-distributions tried")
        fiber_tol: float = option(1.0e-10, kind="float", check="positive",
                                  doc="relative residual accepting a fiber-search solution")

    @classmethod
    def check_options(cls, options):
        if options.at not in ("initial", "final"):
            raise OptionError("at", "must be 'initial' or 'final'")

    def evaluate(self, problem, trajectory):
        o = self.options
        thetas = trajectory_thetas(problem, trajectory)
        theta = thetas[0] if o.at == "initial" else thetas[-1]
        result = metric_consistency_at(problem.model, theta, restarts=o.restarts, seed=o.seed,
                                       root_tol=o.root_tol, max_alternatives=o.max_alternatives,
                                       fiber_tol=o.fiber_tol)
        result.scalars["at"] = o.at
        return result
