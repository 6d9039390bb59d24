"""Balancing flows (``balancing_flow``, variants ``moment_map`` and ``l2_regularizer``) against
conservation laws, closed-form minima, finite differences and independent projections.

- DLN, depth 4, 3 x 3 matrices, started far from balanced on the fiber of a well-conditioned X:
  ``X`` is conserved to 1e-10, ``sum |W_p|^2`` decreases monotonically to ``N sum sigma_i(X)^{2/N}``
  (singular values by numpy from the product of the initial layers) to 1e-8, ``Phi -> 0``;
- the moment-map velocity is minus the gradient of ``(1/4) sum |Phi_p|^2`` (Taylor slope 2), is
  tangent to the fiber (``J v = 0``) and decreases ``sum |W_p|^2`` at the rate ``2 sum |Phi_p|^2``;
  the l2 velocity is ``-2 theta`` minus its component orthogonal to ``ker J``, with ``ker J`` from
  ``scipy.linalg.null_space``;
- LCN: ``v`` and ``prod |w_l|`` conserved, every ``|w_l|^2`` driven to the geometric mean, the
  minimum ``L (prod |w_l|)^{2/L}``; the l2 velocity is the orthogonal projection of ``-2 theta`` on
  ``{(xi_l w_l) : sum xi_l = 0}`` (least squares), the moment-map velocity the gradient of
  ``(1/4) sum delta_l^2``;
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
VARIANTS = ["moment_map", "l2_regularizer"]


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
    np.testing.assert_allclose(traj.loss, traj.loss[0], rtol=1e-12)  # L is constant on a fiber


def moment_map_energy(model, theta):
    """``(1/4) sum_p |Phi_p|_F^2`` (DLN, from numpy matrices) or ``(1/4) sum_l delta_l^2`` (LCN)."""
    if isinstance(model, Dense):
        W = [w[0] for w in model.split(theta[None])]
        return 0.25 * sum(np.sum((W[p] @ W[p].T - W[p + 1].T @ W[p + 1]) ** 2) for p in range(len(W) - 1))
    n = np.array([np.sum(w ** 2) for w in model.split(theta[None])])
    return 0.25 * np.sum((n[:-1] - n[1:]) ** 2)


MODELS = {
    "dense-2.3.4.2": (lambda: Dense(Dense.Options(widths=(2, 3, 4, 2))), (2,)),
    "lcn-k324-s121": (lambda: LCN(LCN.Options(filters=(3, 2, 4), strides=(1, 2, 1))), (20,)),
    "lcn-2d": (lambda: LCN(LCN.Options(filters=((2, 2), (3, 2)), strides=((1, 2), (1, 1)))), (6, 7)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_moment_map_velocity_is_the_gradient_of_the_squared_moment_map(name, rng, taylor_slope):
    make, _ = MODELS[name]
    model = make()
    field = FLOW(FLOW.Options(t_max=1.0, variant="moment_map")).velocity_field(model)
    theta = rng.standard_normal(model.n_params)
    v = field(theta)
    slope, _, _ = taylor_slope(lambda th: moment_map_energy(model, th), theta, -v, rng)
    assert 1.9 < slope < 2.1
    J = model.jacobian(theta[None])[0]
    assert np.linalg.norm(J @ v) < 1e-12 * np.linalg.norm(J) * np.linalg.norm(v)
    # d/dt sum |W|^2 = -2 sum |Phi_p|^2 = -8 (energy)
    np.testing.assert_allclose(2 * theta @ v, -8 * moment_map_energy(model, theta), rtol=1e-12)


def test_dln_l2_velocity_is_the_projected_gradient(rng):
    model = MODELS["dense-2.3.4.2"][0]()
    field = FLOW(FLOW.Options(t_max=1.0, variant="l2_regularizer")).velocity_field(model)
    theta = rng.standard_normal(model.n_params)
    v = field(theta)
    K = null_space(model.jacobian(theta[None])[0])  # orthonormal basis of ker J
    assert K.shape[1] == model.n_params - 4  # J is onto the 2 x 2 matrices
    np.testing.assert_allclose(v, K @ (K.T @ (-2 * theta)), rtol=1e-9, atol=1e-12)


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
    field = FLOW(FLOW.Options(t_max=1.0, variant="l2_regularizer")).velocity_field(model)
    theta = rng.standard_normal(model.n_params)
    v = field(theta)
    np.testing.assert_allclose(v, orbit_projection(model, theta, -2 * theta), rtol=1e-10, atol=1e-13)
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
    traj = run(problem_of(model, shape, rng), theta0, variant, t_max=10.0)
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
