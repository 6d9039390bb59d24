"""Balancing flows (``balancing_flow``, variants ``kirwan_ness`` and ``l2``, as printed by Lindsey & Menon,
arXiv 2511.01137) against conservation laws, closed forms, finite differences and independent projections.

- DLN, depth 4, 3 x 3 matrices, started far from balanced on the fiber of a well-conditioned X:
  ``X`` is conserved to 1e-10, ``sum |W_p|^2`` decreases monotonically to ``N sum sigma_i(X)^{2/N}``
  (singular values by numpy from the product of the initial layers) to 1e-8, ``Phi -> 0``;
- the Kirwan-Ness velocity is minus the gradient of ``1/2 sum |G_p|^2`` (central finite differences and
  Taylor slope 2), is tangent to the fiber (``J v = 0``) and decreases ``sum |W_p|^2`` at the rate
  ``4 sum |G_p|^2``; the l2 velocity is the projection of ``-theta = -1/2 grad |W|^2`` on ``ker J``, with
  ``ker J`` from ``scipy.linalg.null_space``;
- Theorem 1.2: along the l2 flow ``G(t) = G(0) e^{-2t}`` (every entry, DLN and LCN);
- Theorem 1.1: minimizing ``sum_k |W_k|_p`` (Schatten, p = 1.5, 2, 3) over the fiber by scipy (over the
  ``GL`` orbit, which is the fiber for invertible layers) ends at a balanced point, at the value
  ``N (sum_i sigma_i(X)^{p/N})^{1/p}`` of the balanced factorization;
- LCN: ``v`` and ``prod |w_l|`` conserved, every ``|w_l|^2`` driven to the geometric mean, the
  minimum ``L (prod |w_l|)^{2/L}``; the l2 velocity is the orthogonal projection of ``-theta`` on
  ``{(xi_l w_l) : sum xi_l = 0}`` (least squares), the Kirwan-Ness velocity minus the gradient of
  ``1/2 sum delta_l^2``;
- an LCN of 1-tap filters and a DLN of 1 x 1 layers are the same network: both implementations give
  the same trajectories.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import null_space

from lcnrun.core.data import Dataset
from lcnrun.core.dynamics import COMPLETED, DYNAMICS
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import LCN, Dense
from lcnrun.core.problem import Problem
from lcnrun.core.recording import RecordOptions

FLOW = DYNAMICS["balancing_flow"]
VARIANTS = ["kirwan_ness", "l2"]


def problem_of(model, input_shape, rng, n=4):
    x = rng.standard_normal((n,) + tuple(input_shape))
    return Problem(model, LOSSES["square"](), Dataset(x, rng.standard_normal((n,) + model.output_shape(input_shape))))


def run(problem, theta0, variant, t_max, points=41):
    opts = FLOW.Options(t_max=t_max, variant=variant, rtol=1e-12, atol=1e-14)
    (traj,) = FLOW(opts).run(problem, theta0, RecordOptions(points=points, spacing="linear"))
    assert traj.status == COMPLETED, traj.message
    return traj


def unbalanced_factorization(rng, singular_values, depth):
    """Layers of a square ``X = U diag(s) V^T`` pushed off balance by random ``G_p`` on the hidden layers."""
    d = len(singular_values)
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    root = np.diag(np.asarray(singular_values) ** (1.0 / depth))
    frames = [V] + [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(depth - 1)] + [U]
    layers = [frames[p + 1] @ root @ frames[p].T for p in range(depth)]
    G = [np.eye(d)] + [np.eye(d) + 0.6 * rng.standard_normal((d, d)) for _ in range(depth - 1)] + [np.eye(d)]
    return [G[p + 1] @ layers[p] @ np.linalg.inv(G[p]) for p in range(depth)]


def product(layers):
    X = layers[0]
    for W in layers[1:]:
        X = W @ X
    return X


@pytest.mark.parametrize("variant", VARIANTS)
def test_dln_flow_conserves_X_and_reaches_the_balanced_minimum(variant):
    rng = np.random.default_rng(7)
    depth = 4
    model = Dense(Dense.Options(widths=(3,) * (depth + 1)))
    layers = unbalanced_factorization(rng, [2.0, 1.5, 1.0], depth)
    theta0 = model.join([W[None] for W in layers])
    X0 = product(layers)
    predicted = depth * np.sum(np.linalg.svd(X0, compute_uv=False) ** (2.0 / depth))
    assert np.sum(theta0 ** 2) - predicted > 1.0  # far from the minimum
    problem = problem_of(model, (3,), rng)
    traj = run(problem, theta0, variant, t_max=30.0)
    X = model.end_to_end(traj.theta)
    np.testing.assert_allclose(X, np.broadcast_to(X0, X.shape), rtol=0, atol=1e-10)
    np.testing.assert_allclose(traj.series["end_to_end_drift"], np.linalg.norm(X - X0, axis=(1, 2)), atol=1e-15)
    R = np.sum(traj.theta ** 2, axis=1)
    np.testing.assert_allclose(traj.series["sum_sq_norms"], R, rtol=1e-14)
    assert np.all(np.diff(R) <= 1e-12 * R[0])
    assert abs(R[-1] - predicted) < 1e-8
    np.testing.assert_allclose(traj.attrs["sum_sq_norms_min"], predicted, rtol=1e-13)
    phi = traj.series["phi_norms"]
    assert phi.shape == (len(traj.t), depth - 1) and phi[0].max() > 1.0 and phi[-1].max() < 1e-6
    np.testing.assert_allclose(traj.loss, traj.loss[0], rtol=1e-10)  # L is constant on a fiber (X kept to 1e-10)


def squared_moment_map(model, theta):
    """``1/2 |G|^2 = 1/2 sum_p |G_p|_F^2`` (DLN, from numpy matrices) or ``1/2 sum_l delta_l^2`` (LCN)."""
    if isinstance(model, Dense):
        W = [w[0] for w in model.split(theta[None])]
        return 0.5 * sum(np.sum((W[p] @ W[p].T - W[p + 1].T @ W[p + 1]) ** 2) for p in range(len(W) - 1))
    n = np.array([np.sum(w ** 2) for w in model.split(theta[None])])
    return 0.5 * np.sum((n[:-1] - n[1:]) ** 2)


MODELS = {
    "dense-2.3.4.2": (lambda: Dense(Dense.Options(widths=(2, 3, 4, 2))), (2,)),
    "lcn-k324-s121": (lambda: LCN(LCN.Options(filters=(3, 2, 4), strides=(1, 2, 1))), (20,)),
    "lcn-2d": (lambda: LCN(LCN.Options(filters=((2, 2), (3, 2)), strides=((1, 2), (1, 1)))), (6, 7)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_kirwan_ness_velocity_is_minus_the_gradient_of_half_the_squared_moment_map(name, rng, taylor_slope):
    make, _ = MODELS[name]
    model = make()
    field = FLOW(FLOW.Options(t_max=1.0, variant="kirwan_ness")).velocity_field(model)
    theta = rng.standard_normal(model.n_params)
    v = field(theta)
    energy = lambda th: squared_moment_map(model, th)  # noqa: E731
    h = 1e-5
    fd = np.array([(energy(theta + h * e) - energy(theta - h * e)) / (2 * h) for e in np.eye(model.n_params)])
    np.testing.assert_allclose(v, -fd, rtol=1e-7, atol=1e-7 * np.abs(fd).max())
    slope, _, _ = taylor_slope(energy, theta, -v, rng)
    assert 1.9 < slope < 2.1
    J = model.jacobian(theta[None])[0]
    assert np.linalg.norm(J @ v) < 1e-12 * np.linalg.norm(J) * np.linalg.norm(v)
    # d/dt sum |W|^2 = -4 sum |G_p|^2 = -8 (1/2 |G|^2)
    np.testing.assert_allclose(2 * theta @ v, -8 * energy(theta), rtol=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_l2_flow_scales_G_by_exp_minus_2t_theorem_1_2(name, rng):
    """Theorem 1.2 of Lindsey & Menon: ``G(t) = G(0) e^{-2t}`` along the L2 balancing flow, entrywise."""
    make, shape = MODELS[name]
    model = make()
    theta0 = rng.standard_normal((1, model.n_params))
    traj = run(problem_of(model, shape, rng), theta0, "l2", t_max=3.0, points=13)

    def G(th):
        if isinstance(model, Dense):
            W = [w[0] for w in model.split(th[None])]
            return np.concatenate([(W[p] @ W[p].T - W[p + 1].T @ W[p + 1]).ravel() for p in range(len(W) - 1)])
        n = np.array([np.sum(w ** 2) for w in model.split(th[None])])
        return n[:-1] - n[1:]

    G0 = G(traj.theta[0])
    for t, th in zip(traj.t, traj.theta):
        np.testing.assert_allclose(G(th), G0 * np.exp(-2 * t), rtol=0, atol=1e-9 * np.abs(G0).max())


def schatten_sum(layers, p):
    """``sum_k |W_k|_p`` (Schatten p-norms, from the singular values)."""
    return sum(np.sum(np.linalg.svd(W, compute_uv=False) ** p) ** (1.0 / p) for W in layers)


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0])
def test_schatten_minimizers_on_the_fiber_are_balanced_theorem_1_1(p):
    """Theorem 1.1 of Lindsey & Menon (X of full rank): the minimizers of ``sum_k |W_k|_p`` on the fiber
    (1 < p < inf; p = 2 is ``|W|_2``) are its balanced points. Minimized here by scipy over
    ``W_k -> A_k W_k A_{k-1}^{-1}`` (``A_0 = A_N = I``, invertible layers: the orbit is the whole fiber)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    depth, d = 3, 2
    layers = unbalanced_factorization(rng, [2.0, 0.5], depth)
    X = product(layers)
    sigma = np.linalg.svd(X, compute_uv=False)
    minimum = depth * np.sum(sigma ** (p / depth)) ** (1.0 / p)

    def moved(a):
        A = [np.eye(d)] + [np.eye(d) + a[i * d * d:(i + 1) * d * d].reshape(d, d) for i in range(depth - 1)] + [np.eye(d)]
        return [A[k + 1] @ layers[k] @ np.linalg.inv(A[k]) for k in range(depth)]

    start = schatten_sum(layers, p)
    assert start > minimum * 1.1  # far from the minimum
    res = minimize(lambda a: schatten_sum(moved(a), p), np.zeros((depth - 1) * d * d), method="BFGS",
                   options={"gtol": 1e-10, "maxiter": 5000})
    best = moved(res.x)
    np.testing.assert_allclose(product(best), X, atol=1e-10)
    assert abs(res.fun / minimum - 1) < 1e-8
    G = [best[k] @ best[k].T - best[k + 1].T @ best[k + 1] for k in range(depth - 1)]
    assert max(np.abs(g).max() for g in G) < 1e-4 * np.sum(sigma ** (2 / depth))


def test_dln_l2_velocity_is_the_projected_gradient(rng):
    model = MODELS["dense-2.3.4.2"][0]()
    field = FLOW(FLOW.Options(t_max=1.0, variant="l2")).velocity_field(model)
    theta = rng.standard_normal(model.n_params)
    v = field(theta)
    K = null_space(model.jacobian(theta[None])[0])  # orthonormal basis of ker J
    assert K.shape[1] == model.n_params - 4  # J is onto the 2 x 2 matrices
    np.testing.assert_allclose(v, K @ (K.T @ (-theta)), rtol=1e-9, atol=1e-12)


def orbit_projection(model, theta, g):
    """Orthogonal projection of ``g`` on ``{(xi_l w_l) : sum xi_l = 0}`` by least squares."""
    L = model.n_layers
    T = np.zeros((model.n_params, L))
    for l in range(L):
        a, b = model.offsets[l], model.offsets[l + 1]
        T[a:b, l] = theta[a:b]
    C = np.eye(L)[:, :-1] - np.eye(L)[:, 1:]  # sum-zero vectors
    B = T @ C
    return B @ np.linalg.lstsq(B, g, rcond=None)[0]


@pytest.mark.parametrize("name", [n for n in MODELS if n.startswith("lcn")])
def test_lcn_l2_velocity_is_the_projection_on_the_rescaling_orbit(name, rng):
    model = MODELS[name][0]()
    field = FLOW(FLOW.Options(t_max=1.0, variant="l2")).velocity_field(model)
    theta = rng.standard_normal(model.n_params)
    v = field(theta)
    np.testing.assert_allclose(v, orbit_projection(model, theta, -theta), rtol=1e-10, atol=1e-13)
    J = model.jacobian(theta[None])[0]
    assert np.linalg.norm(J @ v) < 1e-12 * np.linalg.norm(J) * np.linalg.norm(v)


@pytest.mark.parametrize("name", [n for n in MODELS if n.startswith("lcn")])
@pytest.mark.parametrize("variant", VARIANTS)
def test_lcn_flow_equalizes_the_filter_norms(name, variant, rng):
    make, shape = MODELS[name]
    model = make()
    scales = np.repeat([0.3, 1.0, 2.5][: model.n_layers], model.layer_sizes)
    theta0 = (rng.standard_normal(model.n_params) * scales)[None]
    n0 = model.layer_norms_sq(theta0)[0]
    geometric = np.prod(n0) ** (1.0 / model.n_layers)
    predicted = model.n_layers * geometric
    assert n0.max() / n0.min() > 5
    traj = run(problem_of(model, shape, rng), theta0, variant, t_max=15.0)
    v = model.end_to_end(traj.theta)
    np.testing.assert_allclose(v, np.broadcast_to(v[0], v.shape), rtol=0, atol=1e-10)
    n = model.layer_norms_sq(traj.theta)
    np.testing.assert_allclose(np.prod(n, axis=1), np.prod(n0), rtol=1e-9)
    np.testing.assert_allclose(n[-1], geometric, rtol=1e-8)
    R = n.sum(axis=1)
    assert np.all(np.diff(R) <= 1e-12 * R[0])
    assert abs(R[-1] - predicted) < 1e-8 * predicted
    np.testing.assert_allclose(traj.attrs["sum_sq_norms_min"], predicted, rtol=1e-13)
    np.testing.assert_allclose(traj.series["phi_norms"], np.abs(n[:, :-1] - n[:, 1:]), atol=1e-13)
    assert traj.series["end_to_end_drift"].max() < 1e-10


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_tap_lcn_and_scalar_dln_agree(variant, rng):
    """Filters of size 1 are 1 x 1 layers: the LCN (rescaling group) and DLN (GL, ker J)
    implementations of each variant must give the same trajectory."""
    lcn = LCN(LCN.Options(filters=(1, 1, 1)))
    dln = Dense(Dense.Options(widths=(1, 1, 1, 1)))
    theta0 = np.array([[0.4, -1.3, 2.2]])
    x, y = rng.standard_normal((3, 1)), rng.standard_normal((3, 1))
    a = run(Problem(lcn, LOSSES["square"](), Dataset(x, y)), theta0, variant, t_max=12.0, points=7)
    b = run(Problem(dln, LOSSES["square"](), Dataset(x, y)), theta0, variant, t_max=12.0, points=7)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-9, atol=1e-12)
    assert np.ptp(np.abs(a.theta[-1])) < 1e-6  # balanced: |w_1| = |w_2| = |w_3|


def test_old_variant_names_are_rejected_not_reinterpreted(tmp_path):
    """``moment_map`` / ``l2_regularizer`` ran at other speeds than the printed flows; a spec naming them
    fails validation (exit 2, the key and the new names) instead of silently changing meaning."""
    from typer.testing import CliRunner

    from lcnrun.cli import app

    for old in ("moment_map", "l2_regularizer"):
        spec = tmp_path / f"{old}.yaml"
        spec.write_text("name: old\nmodel: {kind: dense, widths: [2, 2, 2]}\n"
                        "data: {kind: gaussian, n_samples: 4, seed: 0}\ninit: {kind: gaussian, scale: 1.0, seed: 0}\n"
                        f"loss: {{kind: square}}\ndynamics: {{kind: balancing_flow, variant: {old}, t_max: 1.0}}\n")
        r = CliRunner().invoke(app, ["validate", str(spec)])
        assert r.exit_code == 2, r.output
        assert "dynamics.variant" in r.output and "kirwan_ness, l2" in r.output and "Traceback" not in r.output
