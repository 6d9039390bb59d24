"""Diagnostics (every member of ``DIAGNOSTICS``) against independent values, and the papers' claims
reproduced on small architectures with real gradient flows.

- contract: every diagnostic on every architecture returns plain scalars (``applicable`` among them)
  and numeric arrays; LCN-only / 1-D-only diagnostics say why they do not apply;
- ``function_space_metric``: ``K`` against ``J J^T`` of a finite-difference Jacobian; the velocity
  of a stored gradient flow (central differences of ``v(t)`` in the test) against ``-K (v - u)``
  (``function_space`` data: ``grad_v l = v - u`` in closed form);
- ``metric_consistency`` (2507.06367): the (3, 3) stride-one counterexample rebuilt by hand (closed
  form rescaling) and found by the diagnostic, the fiber search as a positive control, ``< 1e-10``
  in the theorem's cases (1-D strides > 1, D = 2), and what we found beyond the theorem's wording
  (layer swaps of equal shapes, non-generic points);
- ``polynomial_structure`` (2108.01538): the known (2, 2) minima (loss 0.5 and 0.375, repeated
  filters, a double root -- at 0 or infinity for u = (1, 0, 1)), filling (3, 3) / (3, 2) reach
  zero, the filling table, root counts with a root at infinity;
- ``parametrization_rank``: ``rank = k_1 + k_2 - 1 - deg gcd(W_1, W_2)``; the DLN formula;
- ``critical_points`` (2601.08547): the Hessian against central differences of the gradient and a
  Taylor slope, ``theta = 0`` a saddle (closed-form spectrum) for depth 2 and degenerate for depth
  3, strict minima (modulo the rescaling symmetry) at realizable targets, trajectory length;
- ``data_condition``: a rank-deficient patch Gram matrix is flagged; the Gram matrix against
  patches cut out by hand.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import polynomial as P

from lcnrun.core.data import EndToEndTarget, FunctionSpaceData, GaussianData, GaussianTarget, build_dataset
from lcnrun.core.diagnostics import DIAGNOSTICS, DiagnosticResult
from lcnrun.core.diagnostics.critical_points import critical_point_at, hessian
from lcnrun.core.diagnostics.metric_consistency import (ROOT_EXCHANGE, classify_point, fiber_search, metric,
                                                        metric_consistency_at, rescale_to_invariants)
from lcnrun.core.diagnostics.polynomial_structure import PolynomialStructure, filling
from lcnrun.core.dynamics import GradientFlow, Trajectory
from lcnrun.core.losses import LOSSES, Square
from lcnrun.core.models import LCN, Dense
from lcnrun.core.options import Section
from lcnrun.core.problem import Problem
from lcnrun.core.recording import RecordOptions
from lcnrun.core import polynomials as poly


# -- helpers ---------------------------------------------------------------------------------------
def lcn(filters, strides=None):
    return LCN(LCN.Options(filters=tuple(filters), strides=None if strides is None else tuple(strides)))


def dense(widths):
    return Dense(Dense.Options(widths=tuple(widths)))


def function_space_problem(model, u) -> Problem:
    """Loss exactly ``1/2 |v - u|^2`` (``function_space`` data)."""
    data = FunctionSpaceData.build(FunctionSpaceData.Options(
        target=Section("end_to_end", EndToEndTarget.Options(value=np.asarray(u).tolist()))), model)
    return Problem(model, Square(), data)


def flow(problem, theta0, t_max, *, points=100, spacing="log", **stop) -> Trajectory:
    dyn = GradientFlow(GradientFlow.Options(t_max=t_max, **stop))
    return dyn.run(problem, np.atleast_2d(theta0), RecordOptions(points=points, spacing=spacing))[0]


def point(problem, theta) -> Trajectory:
    """A one-point trajectory at ``theta``."""
    loss, grad = problem.value_and_grad(np.atleast_2d(theta))
    return Trajectory(t=np.zeros(1), theta=np.atleast_2d(theta), loss=loss,
                      grad_norm=np.linalg.norm(grad, axis=1))


def fd_jacobian(model, theta, h=1e-6):
    """Central differences of ``v(theta)``: ``(E, P)``."""
    P_ = model.n_params
    plus = model.end_to_end(theta[None] + h * np.eye(P_)).reshape(P_, -1)
    minus = model.end_to_end(theta[None] - h * np.eye(P_)).reshape(P_, -1)
    return ((plus - minus) / (2 * h)).T


def from_roots(roots, scale=1.0):
    return scale * P.polyfromroots(roots).real


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def run_all(problem, trajectory):
    return {name: cls().compute(problem, trajectory) for name, cls in DIAGNOSTICS.items()}


# -- the contract ----------------------------------------------------------------------------------
def test_registry():
    assert set(DIAGNOSTICS) == {"function_space_metric", "metric_consistency", "polynomial_structure",
                                "parametrization_rank", "critical_points", "data_condition"}
    for name, cls in DIAGNOSTICS.items():
        assert cls.name == name
        cls.Options()  # every option has a default


def test_every_diagnostic_returns_plain_results(arch, make_model, make_problem, rng):
    model = make_model(arch)
    problem = make_problem(model)
    traj = flow(problem, 0.5 * rng.standard_normal(model.n_params), 2.0, points=12)
    for name, result in run_all(problem, traj).items():
        assert isinstance(result, DiagnosticResult)
        assert "applicable" in result.scalars, name
        for key, value in result.scalars.items():
            assert isinstance(value, (bool, int, float, str, np.bool_, np.integer, np.floating)), (name, key)
            assert "." not in key and "/" not in key
        for key, value in result.arrays.items():
            assert np.asarray(value).dtype.kind in "biufc", (name, key)
        lcn_only = DIAGNOSTICS[name].models == ("lcn",)
        one_d_only = name == "polynomial_structure"
        expected = not ((lcn_only and model.name != "lcn") or (one_d_only and getattr(model, "ndim", 1) != 1))
        assert result.scalars["applicable"] is expected, name
        if not expected:
            assert result.scalars["reason"]


# -- function-space metric -------------------------------------------------------------------------
@pytest.mark.parametrize("model", [lcn((3, 2), (2, 1)), lcn(((2, 2), (2, 1)), ((1, 1), (1, 1))),
                                   dense((3, 4, 2))], ids=["lcn-1d", "lcn-2d", "dense"])
def test_metric_and_velocity_of_a_stored_gradient_flow(model, rng):
    u = rng.standard_normal(model.end_to_end_shape)
    problem = function_space_problem(model, u)
    n, t_max = 401, 0.5
    traj = flow(problem, 0.6 * rng.standard_normal(model.n_params), t_max, points=n, spacing="linear")
    result = DIAGNOSTICS["function_space_metric"](
        DIAGNOSTICS["function_space_metric"].Options(max_points=5)).compute(problem, traj)
    # K at the stored times against J J^T of a finite-difference Jacobian
    for i, t in zip(np.flatnonzero(np.isin(traj.t, result.arrays["metric_t"])), result.arrays["metric_t"]):
        J = fd_jacobian(model, traj.theta[i])
        k = list(result.arrays["metric_t"]).index(t)
        assert rel(result.arrays["metric"][k], J @ J.T) < 1e-8
    # dv/dt by central differences of the stored v(t) (uniform grid) against -K (v - u)
    V = model.end_to_end(traj.theta).reshape(n, -1)
    h = traj.t[1] - traj.t[0]
    dv = (V[2:] - V[:-2]) / (2 * h)
    want = np.stack([-(lambda J: J @ J.T)(fd_jacobian(model, th)) @ (v - u.ravel())
                     for th, v in zip(traj.theta[1:-1:40], V[1:-1:40])])
    assert rel(result.arrays["velocity"][1:-1:40], want) < 1e-8
    assert rel(dv[::40], want) < 1e-4  # O(h^2), h = 1.25e-3
    assert result.scalars["velocity_rel_error_chain"] < 1e-12
    assert result.scalars["velocity_rel_error_fd"] < 1e-4


# -- metric consistency (2507.06367) ---------------------------------------------------------------
def brief_counterexample():
    """(3, 3), stride 1, layer roots {.5, -1.2 | 2, .3}, second layer scaled (delta != 0)."""
    model = lcn((3, 3))
    theta = np.concatenate([from_roots([0.5, -1.2]), from_roots([2.0, 0.3], 1.3)])
    return model, theta


def test_stride_one_counterexample_by_hand():
    model, theta = brief_counterexample()
    n1, n2 = model.layer_norms_sq(theta[None])[0]
    delta = n1 - n2
    a, b = from_roots([0.5, 2.0]), from_roots([-1.2, 0.3], 1.3)  # same v: a * b = w1 * w2
    na, nb = a @ a, b @ b
    c2 = (delta + np.sqrt(delta ** 2 + 4 * na * nb)) / (2 * na)  # c^2 na - nb / c^2 = delta
    other = np.concatenate([np.sqrt(c2) * a, b / np.sqrt(c2)])
    assert rel(model.end_to_end(other[None]), model.end_to_end(theta[None])) < 1e-15
    assert model.invariants(other[None])["invariants"][0, 0] == pytest.approx(delta, abs=1e-14)
    diff = rel(metric(model, other), metric(model, theta))
    assert diff > 1e-3

    result = metric_consistency_at(model, theta)
    s = result.scalars
    assert s["theorem_applies"] is False and s["theorem_case"] == "D=1, stride 1"
    assert s["max_rel_diff"] > 1e-3 and s["max_rel_diff_exchange"] > 1e-3
    # the 6 = C(4, 2) ways to deal 4 real roots: theta, the layer swap and 4 root exchanges
    assert (s["n_root_exchanges"], s["n_layer_permutations"]) == (4, 1)
    assert s["max_v_residual"] < 1e-14 and s["max_delta_residual"] < 1e-14
    pts = result.arrays["points"]
    hit = [i for i, p in enumerate(pts) if min(np.max(np.abs(p - other)), np.max(np.abs(p + other))) < 1e-10]
    assert len(hit) == 1
    assert result.arrays["rel_diff"][hit[0]] == pytest.approx(diff, rel=1e-10)
    assert result.arrays["kind"][hit[0]] == ROOT_EXCHANGE


def test_fiber_search_finds_the_root_exchanges():
    """Positive control: the root-agnostic search finds other factorizations where they exist."""
    model, theta = brief_counterexample()
    found = fiber_search(model, theta, restarts=16, seed=0)
    kinds = [classify_point(model, p, theta) for p in found]
    assert ROOT_EXCHANGE in kinds
    assert max(rel(metric(model, p), metric(model, theta)) for p in found) > 1e-3


@pytest.mark.parametrize("filters, strides", [
    ((2, 2), (2, 2)), ((3, 3), (2, 1)), ((4, 3, 2), (2, 2, 1)), ((2, 3, 2), (3, 2, 1)),
    (((3, 3), (2, 2)), ((1, 1), (1, 1))), (((3, 2), (2, 3)), ((2, 1), (1, 3))),
    (((2, 2), (2, 2)), ((2, 2), (1, 1))),
])
def test_metric_is_a_function_of_v_and_delta_in_the_theorems_cases(filters, strides):
    model = lcn(filters, strides)
    theta = np.random.default_rng(7).standard_normal(model.n_params)
    s = metric_consistency_at(model, theta).scalars
    assert s["theorem_applies"] is True
    assert s["max_rel_diff"] < 1e-10
    assert s["n_root_exchanges"] == 0 and s["n_layer_permutations"] == 0
    assert s["n_sign_flips"] >= 1  # the search converged on this architecture (found -theta-like points)
    assert s["max_v_residual"] < 1e-12 and s["max_delta_residual"] < 1e-12


def test_equal_shapes_layer_swap_changes_K_unless_balanced(rng):
    """Beyond the theorem's wording: two layers of equal shape and spacing can be swapped (any D);
    ``K' - K = (c^-2 - 1) T_1 T_1^T + (c^2 - 1) T_2 T_2^T`` vanishes only for ``delta = 0``."""
    model = lcn(((2, 2), (2, 2)))
    theta = rng.standard_normal(model.n_params)
    w1, w2 = theta[:4], theta[4:]
    c = np.linalg.norm(w1) / np.linalg.norm(w2)
    swapped = np.concatenate([c * w2, w1 / c])
    assert rel(model.end_to_end(swapped[None]), model.end_to_end(theta[None])) < 1e-15
    diff = rel(metric(model, swapped), metric(model, theta))
    assert diff > 1e-3
    result = metric_consistency_at(model, theta)
    assert result.scalars["n_layer_permutations"] == 1 and result.scalars["n_root_exchanges"] == 0
    assert result.scalars["max_rel_diff_permutation"] == pytest.approx(diff, rel=1e-8)
    balanced = np.concatenate([w1 / np.sqrt(c), w2 * np.sqrt(c)])  # |w1| = |w2|, same v
    b1, b2 = balanced[:4], balanced[4:]
    assert rel(metric(model, np.concatenate([b2, b1])), metric(model, balanced)) < 1e-14


def test_non_generic_points_break_the_theorems_wording():
    """Stride 2 with ``W_1 = z^2 - 1/4`` (itself a polynomial in ``z^2``) and separable 2-D filters
    admit root exchanges with the same ``(v, delta)`` and a different ``K``."""
    model = lcn((3, 2), (2, 1))
    theta = np.concatenate([from_roots([0.5, -0.5]), from_roots([2.0], 0.7)])
    result = metric_consistency_at(model, theta)
    assert result.scalars["theorem_applies"] is True
    assert result.scalars["n_root_exchanges"] == 1 and result.scalars["max_rel_diff_exchange"] > 1e-3
    assert result.warnings
    model2 = lcn(((2, 2), (2, 2)))
    theta2 = np.concatenate([np.outer([-0.5, 1], [-2.0, 1]).ravel(), np.outer([1.3, 1], [-0.7, 1]).ravel()])
    result2 = metric_consistency_at(model2, theta2)
    assert result2.scalars["separable"] is True
    assert result2.scalars["n_root_exchanges"] >= 1 and result2.scalars["max_rel_diff_exchange"] > 1e-3


def test_rescale_to_invariants(rng):
    a, b = rng.standard_normal(3), rng.standard_normal(4)
    delta, C = np.array([0.37]), -1.7
    na, nb = a @ a, b @ b
    c2 = (delta[0] + np.sqrt(delta[0] ** 2 + 4 * C ** 2 * na * nb)) / (2 * na)  # c^2 na - C^2 nb / c^2
    x, y = rescale_to_invariants([a, b], C, delta)
    assert x @ x - y @ y == pytest.approx(delta[0], abs=1e-14)
    assert np.allclose(x, -np.sqrt(c2) * a, rtol=1e-13) and np.allclose(x[0] * y[0], C * a[0] * b[0], rtol=1e-13)
    layers = [rng.standard_normal(k) for k in (2, 3, 4, 2)]
    delta = rng.standard_normal(3)
    out = rescale_to_invariants(layers, 0.8, delta)
    n = [w @ w for w in out]
    assert np.allclose(np.diff(n) * -1, delta, atol=1e-13)
    ratios = [o[0] / w[0] for o, w in zip(out, layers)]
    assert np.prod(ratios) == pytest.approx(0.8, rel=1e-13)


# -- known minima and polynomial structure (2108.01538) ----------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_2_2_minimum_for_u_101_is_half_with_a_double_root_at_0_or_infinity(seed):
    model = lcn((2, 2))
    problem = function_space_problem(model, [1.0, 0.0, 1.0])
    traj = flow(problem, 0.5 * np.random.default_rng(seed).standard_normal(4), 200.0)
    assert traj.loss[-1] == pytest.approx(0.5, abs=1e-6)
    res = run_all(problem, traj)
    ps, cp, pr = res["polynomial_structure"].scalars, res["critical_points"].scalars, res["parametrization_rank"].scalars
    assert ps["repeated_filters"] and ps["max_abs_cos"] > 1 - 1e-6  # w1 parallel to w2
    h = poly.form_roots(model.end_to_end(traj.theta[-1:])[0])
    assert poly.chordal_distance(h[0], h[1]) < 1e-6  # a double root ...
    at_zero_or_inf = [min(abs(p[0]), abs(p[1])) < 1e-6 for p in h]  # ... at 0 or at infinity
    assert all(at_zero_or_inf)
    assert ps["distance_to_discriminant"] < 1e-6 and ps["filling"] is False
    assert cp["classification"] == "strict_minimum" and cp["critical_type"] == "rank_deficient"
    assert pr["rank"] == 2 and pr["deficiency"] == 1 and pr["layers_share_root"]


def test_2_2_minimum_for_u_1_half_1_is_three_eighths():
    model = lcn((2, 2))
    u = np.array([1.0, 0.5, 1.0])
    problem = function_space_problem(model, u)
    v_star = 0.5 * np.array([1.0, 2.0, 1.0])  # 0.5 (1 + z)^2: a double root at -1
    assert 0.5 * np.sum((v_star - u) ** 2) == 0.375
    # the minimum is degenerate: along the double-root curve c (z - r)^2 the excess loss is quartic
    # in r + 1, so the flow converges only algebraically (slow in v, fast in the loss)
    def excess(r):
        e = np.array([r * r, -2 * r, 1.0])
        return 0.5 * np.sum(((e @ u) / (e @ e) * e - u) ** 2) - 0.375
    assert excess(-1.01) / excess(-1.02) == pytest.approx(1 / 16, rel=0.05)
    traj = flow(problem, 0.5 * np.random.default_rng(0).standard_normal(4), 3000.0)
    assert traj.loss[-1] == pytest.approx(0.375, abs=1e-6)
    assert rel(model.end_to_end(traj.theta[-1:])[0], v_star) < 0.05
    ps = PolynomialStructure().compute(problem, traj).scalars
    assert ps["max_abs_cos"] > 1 - 1e-6 and ps["relative_distance_to_discriminant"] < 1e-4


@pytest.mark.parametrize("filters, u", [((3, 3), [1.0, -0.3, 0.2, 0.5, 1.0]), ((3, 2), [1.0, 0.3, -0.2, 0.7])])
def test_filling_architectures_reach_zero(filters, u):
    """The global minimum 0 is reached; a run that stops above it ends at a spurious strict local
    minimum (modulo rescaling) where two layers share a root -- we found such runs for (3, 2)."""
    model = lcn(filters)
    problem = function_space_problem(model, u)
    assert filling(model)[0]
    losses = []
    for seed in range(4):
        traj = flow(problem, 0.5 * np.random.default_rng(seed).standard_normal(model.n_params), 300.0,
                    points=30, grad_norm_below=1e-11)
        losses.append(traj.loss[-1])
        if traj.loss[-1] > 1e-8:
            cp = DIAGNOSTICS["critical_points"]().compute(problem, traj).scalars
            pr = DIAGNOSTICS["parametrization_rank"]().compute(problem, traj).scalars
            assert cp["classification"] == "strict_minimum" and cp["critical_type"] == "rank_deficient"
            assert pr["layers_share_root"]
    assert min(losses) < 1e-12


@pytest.mark.parametrize("filters, strides, expected", [
    ((3, 3), None, True), ((3, 2), None, True), ((2, 2), None, False), ((2, 3, 2), None, False),
    ((4,), None, True), ((5, 3, 3), None, True), ((3, 3), (2, 1), False), ((3, 1), (2, 1), True),
    ((2, 1, 2), (1, 3, 1), False),
])
def test_filling_table(filters, strides, expected):
    fill, dim, ambient, _ = filling(lcn(filters, strides))
    assert fill is expected
    assert dim == 1 + sum(k - 1 for k in filters)


def test_root_counts_with_a_root_at_infinity():
    model = lcn((3, 3))
    w1 = from_roots([1.0, -2.0])
    w2 = np.array([2.0, 1.0, 0.0])  # roots -2 and infinity
    theta = np.concatenate([w1, w2])
    problem = function_space_problem(model, np.ones(5))
    result = PolynomialStructure().compute(problem, point(problem, theta))
    s, a = result.scalars, result.arrays
    assert s["degree_end_to_end"] == 4 and len(a["roots/end_to_end"]) == 4
    assert s["n_real_roots_end_to_end"] == 4 and s["n_roots_at_infinity_end_to_end"] == 1
    assert np.isinf(a["roots/layer_1"]).sum() == 1
    assert s["min_real_root_gap"] < 1e-7  # the double root -2
    assert s["distance_to_discriminant"] < 1e-12
    assert s["min_common_root_distance"] < 1e-12 and s["min_normalized_resultant"] < 1e-12
    complex_pair = np.concatenate([w1, from_roots([1 + 1j, 1 - 1j])])
    s2 = PolynomialStructure().compute(problem, point(problem, complex_pair)).scalars
    assert s2["n_real_roots_end_to_end"] == 2 and s2["n_roots_at_infinity_end_to_end"] == 0
    assert np.array_equal(PolynomialStructure().compute(problem, point(problem, complex_pair))
                          .arrays["n_real_roots_layers"], [2, 0])


# -- rank of the parametrization ---------------------------------------------------------------------
@pytest.mark.parametrize("w1, w2, gcd_degree", [
    (from_roots([0.5, -1.0]), from_roots([2.0, 3.0]), 0),
    (from_roots([0.5, -1.0]), from_roots([0.5, 3.0]), 1),
    (from_roots([0.5, -1.0]), from_roots([0.5, -1.0], -2.0), 2),
    (np.array([1.0, 2.0, 0.0]), np.array([3.0, -1.0, 0.0]), 1),  # a common root at infinity
])
def test_rank_drops_by_the_degree_of_the_gcd(w1, w2, gcd_degree):
    model = lcn((3, 3))
    problem = function_space_problem(model, np.ones(5))
    s = DIAGNOSTICS["parametrization_rank"]().compute(problem, point(problem, np.concatenate([w1, w2]))).scalars
    assert s["expected_rank"] == 5
    assert s["rank"] == 3 + 3 - 1 - gcd_degree
    assert s["full"] is (gcd_degree == 0) and s["layers_share_root"] is (gcd_degree > 0)


def test_generic_rank_is_the_expected_rank(arch, make_model, rng):
    model = make_model(arch)
    problem = function_space_problem(model, np.ones(model.end_to_end_shape))
    s = DIAGNOSTICS["parametrization_rank"]().compute(problem, point(problem, rng.standard_normal(model.n_params))).scalars
    if model.name == "dense":
        r = min(model.widths)
        assert s["expected_rank"] == r * (model.widths[0] + model.widths[-1] - r)
    assert s["rank"] == s["expected_rank"] and s["full"]


# -- critical points ---------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["square", "log_cosh"])
def test_hessian_against_finite_differences_of_the_gradient(arch, make_model, make_problem, loss, rng,
                                                            taylor_slope):
    model = make_model(arch)
    problem = make_problem(model, loss)
    theta = 0.7 * rng.standard_normal(model.n_params)
    H = hessian(problem, theta)
    h = 0.3 if loss == "square" else 1e-5  # exact for the square loss (quadratic along an axis)
    Pn = model.n_params
    _, gp = problem.value_and_grad(theta[None] + h * np.eye(Pn))
    _, gm = problem.value_and_grad(theta[None] - h * np.eye(Pn))
    H_fd = (gp - gm) / (2 * h)
    assert np.max(np.abs(H - H_fd)) <= (1e-10 if loss == "square" else 1e-6) * np.max(np.abs(H))
    if model.n_layers == 1 and loss == "square":
        return  # the gradient is affine: central differences above are already exact
    r = rng.standard_normal(Pn)
    slope, _, _ = taylor_slope(lambda x: float(problem.value_and_grad(x[None])[1][0] @ r), theta, H @ r, rng)
    assert 1.95 < slope < 2.05


def test_zero_is_a_saddle_for_depth_two():
    model = lcn((3, 3))
    u = np.array([1.0, -0.3, 0.2, 0.5, 1.0])
    problem = function_space_problem(model, u)
    result = critical_point_at(problem, np.zeros(6))
    # H = [[0, B], [B^T, 0]] with B_ij = d^2 <g, w1 * w2> / dw1_i dw2_j = g_{i+j}, g = -u: spectrum +-sigma(B)
    B = np.array([[-u[i + j] for j in range(3)] for i in range(3)])
    sigma = np.linalg.svd(B, compute_uv=False)
    assert np.allclose(np.sort(result.arrays["hessian_eigenvalues"]), np.sort(np.concatenate([sigma, -sigma])),
                       atol=1e-14)
    s = result.scalars
    assert s["grad_norm"] == 0 and s["classification"] == "saddle" and s["hessian_n_negative"] == 3


def test_zero_is_degenerate_for_depth_three():
    model = lcn((2, 2, 2))
    problem = function_space_problem(model, np.ones(4))
    result = critical_point_at(problem, np.zeros(6))
    assert np.all(result.arrays["hessian"] == 0)
    assert result.scalars["classification"] == "degenerate"


def test_strict_minima_at_realizable_targets():
    model = lcn((3, 3))
    theta = np.concatenate([from_roots([0.5, -1.2]), from_roots([1 + 1j, 1 - 1j], 0.8)])
    problem = function_space_problem(model, model.end_to_end(theta[None])[0])
    s = critical_point_at(problem, theta).scalars
    assert s["loss"] < 1e-30 and s["classification"] == "strict_minimum"
    assert s["critical_type"] == "function_space_critical" and s["symmetry_dim"] == 1
    assert s["normal_min_eig"] > 1e-3 and s["hessian_fd_rel_diff"] < 1e-12
    dln = dense((2, 2, 2))
    W1, W2 = np.array([[1.0, 0.3], [-0.2, 0.8]]), np.array([[0.5, -1.0], [0.7, 0.4]])
    theta = dln.join([W1[None], W2[None]])[0]
    problem = function_space_problem(dln, W2 @ W1)
    s = critical_point_at(problem, theta).scalars
    assert s["classification"] == "strict_minimum" and s["symmetry_dim"] == 4


def test_trajectory_length(rng):
    model = lcn((3, 2))
    problem = function_space_problem(model, [1.0, 0.3, -0.2, 0.7])
    traj = flow(problem, 0.5 * rng.standard_normal(5), 5.0, points=2001, spacing="linear")
    s = DIAGNOSTICS["critical_points"]().compute(problem, traj).scalars
    # polygonal length <= true length = int |grad L| dt, and close on a fine grid
    assert s["trajectory_length"] <= s["trajectory_length_grad_integral"] * (1 + 1e-6)
    assert s["trajectory_length"] == pytest.approx(s["trajectory_length_grad_integral"], rel=1e-5)
    assert s["max_param_norm"] == pytest.approx(np.max(np.linalg.norm(traj.theta, axis=1)))


# -- data condition ----------------------------------------------------------------------------------
def gaussian_problem(model, n_samples, input_size, loss="square", seed=0):
    data = build_dataset(Section("gaussian", GaussianData.Options(
        n_samples=n_samples, input_size=input_size,
        target=Section("gaussian", GaussianTarget.Options()), seed=seed)), model)
    return Problem(model, LOSSES[loss](), data)


@pytest.mark.parametrize("loss", ["square", "log_cosh"])
def test_rank_deficient_patch_gram_is_flagged(loss):
    model = lcn((2, 2))  # E = 3; inputs of size 3 have a single patch each
    problem = gaussian_problem(model, 2, 3, loss)
    result = DIAGNOSTICS["data_condition"]().compute(problem, None)
    assert result.scalars["gram_rank"] == np.linalg.matrix_rank(problem.dataset.inputs) == 2
    assert result.scalars["full_rank"] is False
    assert result.warnings and "data condition violated" in result.warnings[0]


def test_patch_gram_against_patches_cut_by_hand():
    model = lcn((3, 2), (2, 3))  # E = 1 + 2 + 1*2 = 5, end-to-end stride 6
    problem = gaussian_problem(model, 3, 17)
    x = problem.dataset.inputs
    E, S = model.end_to_end_size, model.end_to_end_stride[0]
    patches = np.array([xn[i: i + E] for xn in x for i in range(0, len(xn) - E + 1, S)])
    G = patches.T @ patches / len(x)
    result = DIAGNOSTICS["data_condition"]().compute(problem, None)
    assert np.allclose(result.arrays["gram_eigenvalues"], np.linalg.eigvalsh(G), rtol=1e-12, atol=1e-12)
    assert result.scalars["full_rank"] is True and not result.warnings
    fs = function_space_problem(model, np.ones(E))
    assert np.allclose(DIAGNOSTICS["data_condition"]().compute(fs, None).arrays["gram_eigenvalues"], 1.0)
    dln = gaussian_problem(dense((4, 3)), 3, None)
    assert DIAGNOSTICS["data_condition"]().compute(dln, None).scalars["gram_rank"] == 3
