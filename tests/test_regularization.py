"""L2 regularization ``L_lambda = L + lambda sum_p |W_p|_F^2`` and the fiber decomposition of its
velocity, against independent values.

- value from the layer-by-layer network plus ``lambda |theta|^2``; gradient by the Taylor slope;
- regularized gradient flow: the invariants decay exactly as ``exp(-4 lambda t)`` (LCN ``delta_l``,
  DLN ``W_{l+1}^T W_{l+1} - W_l W_l^T``), because ``<w_l, grad_{w_l} L>`` is the same for every layer;
- regularized gradient descent: ``delta(k+1) = (1 - 2 lambda lr)^2 delta(k) + lr^2 (|g_l|^2 - |g_{l+1}|^2)``
  exactly, with ``g`` the gradient of the data loss alone;
- fiber decomposition: the along component lies in ``ker J`` (``scipy.linalg.null_space``) and is
  ``lambda`` times the l2 balancing velocity, the two parts are orthogonal and add up to ``-grad L_lambda``;
  with ``lambda = 0`` the along part vanishes.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import null_space

from lcnrun.core.dynamics import COMPLETED, DYNAMICS
from lcnrun.core.recording import RecordOptions
from lcnrun.core.regularization import RegularizationOptions, RegularizedProblem, fiber_decomposition, regularize

GF, GD, BAL = DYNAMICS["gradient_flow"], DYNAMICS["gradient_descent"], DYNAMICS["balancing_flow"]
LAM = 0.15


def record_linear(points):
    return RecordOptions(points=points, spacing="linear")


@pytest.fixture(params=["lcn-1d-k432-s221", "lcn-2d-k33.22-s11.22", "dense-2.3.3.4.2"])
def setup(request, make_model, make_problem):
    model = make_model(request.param)
    return model, make_problem(model, "square", n_samples=6)


def test_value_and_gradient(setup, rng, taylor_slope):
    model, problem = setup
    reg = RegularizedProblem(problem, LAM)
    theta = 0.7 * rng.standard_normal((2, model.n_params))
    val, grad = reg.value_and_grad(theta)
    np.testing.assert_allclose(val, problem.direct_value(theta) + LAM * np.sum(theta ** 2, axis=1), rtol=1e-12)
    np.testing.assert_allclose(reg.direct_value(theta), val, rtol=1e-12)
    np.testing.assert_allclose(reg.value(theta), val, rtol=1e-12)
    slope, _, _ = taylor_slope(lambda th: reg.value(th[None])[0], theta[0], grad[0], rng)
    assert 1.9 < slope < 2.1
    assert regularize(problem, RegularizationOptions()) is problem
    assert regularize(problem, RegularizationOptions(l2=LAM)).l2 == LAM


def test_invariants_decay_exponentially_under_regularized_flow(setup, rng):
    model, problem = setup
    theta0 = 0.7 * rng.standard_normal((1, model.n_params))
    (traj,) = GF(GF.Options(t_max=3.0, rtol=1e-12, atol=1e-14)).run(
        RegularizedProblem(problem, LAM), theta0, record_linear(7))
    assert traj.status == COMPLETED
    inv = model.invariants(traj.theta)["invariants"]
    assert np.abs(inv[0]).max() > 0.1
    np.testing.assert_allclose(inv, inv[0] * np.exp(-4 * LAM * traj.t)[:, None], rtol=0,
                               atol=1e-9 * np.abs(inv[0]).max())


def test_regularized_descent_changes_delta_by_the_exact_law(make_model, make_problem, rng):
    model = make_model("lcn-1d-k432-s221")
    problem = make_problem(model, "square", n_samples=6)
    lr, steps = 0.02, 20
    theta0 = 0.7 * rng.standard_normal((1, model.n_params))
    (traj,) = GD(GD.Options(lr=lr, steps=steps)).run(RegularizedProblem(problem, LAM), theta0,
                                                    record_linear(steps + 1))
    n = model.layer_norms_sq(traj.theta)
    delta = n[:, :-1] - n[:, 1:]
    g = problem.value_and_grad(traj.theta)[1]  # data loss only
    gn = model.layer_norms_sq(g)
    predicted = (1 - 2 * LAM * lr) ** 2 * delta[:-1] + lr ** 2 * (gn[:-1, :-1] - gn[:-1, 1:])
    np.testing.assert_allclose(delta[1:], predicted, rtol=0, atol=1e-13)


def test_fiber_decomposition(make_model, make_problem, rng):
    model = make_model("dense-2.3.3.4.2")
    problem = make_problem(model, "square", n_samples=6)
    reg = RegularizedProblem(problem, LAM)
    theta = 0.8 * rng.standard_normal((3, model.n_params))
    out = fiber_decomposition(reg, theta)
    grad = reg.value_and_grad(theta)[1]
    balancing = BAL(BAL.Options(t_max=1.0, variant="l2")).velocity_field(model)
    for i, th in enumerate(theta):
        J = model.jacobian(th[None])[0]
        K = null_space(J)
        u = -grad[i]
        along = K @ (K.T @ u)
        assert out["rank_J"][i] == model.n_params - K.shape[1] == np.linalg.matrix_rank(J)
        np.testing.assert_allclose(out["velocity_along_fiber"][i], np.linalg.norm(along), rtol=1e-9)
        np.testing.assert_allclose(out["velocity_across_fiber"][i], np.linalg.norm(u - along), rtol=1e-9)
        # the along part is kappa = 2 lambda times the L2 balancing flow's velocity -Pi theta (Lindsey & Menon)
        np.testing.assert_allclose(along, 2 * LAM * balancing(th), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["velocity_along_fiber"] ** 2 + out["velocity_across_fiber"] ** 2,
                               np.sum(grad ** 2, axis=1), rtol=1e-10)
    np.testing.assert_allclose(out["data_loss"], problem.value(theta), rtol=1e-14)
    np.testing.assert_allclose(out["regularizer"], np.sum(theta ** 2, axis=1), rtol=1e-14)
    assert out["velocity_along_fiber"].min() > 1e-3
    plain = fiber_decomposition(problem, theta)  # lambda = 0: grad L = J^T grad l is across
    assert plain["velocity_along_fiber"].max() < 1e-12 * plain["velocity_across_fiber"].max()
