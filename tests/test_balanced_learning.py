"""The balanced learning flow ``dX/dt = -sum_j (X X^T)^{(N-j)/N} grad l(X) (X^T X)^{(j-1)/N}``
(``balanced_learning_flow``) against independent values.

- from a balanced start it is what parameter gradient flow does to ``X`` (square, tall and wide
  DLNs, to 1e-6; in practice ~1e-10), with the same loss and ``|grad L|``; the trajectory's ``theta``
  is a balanced factorization of the integrated ``X(t)`` that starts at ``theta0``;
- its right-hand side equals ``-J J^T grad l`` at balanced points, also where ``X`` is singular
  (``A^0 = I`` on the kernel);
- N = 2, scalar: the logistic closed form ``a(t) = s / (1 + (s/a0 - 1) exp(-2 s t))``;
- an unbalanced start and a model it is not defined for are reported, not ignored.
"""
from __future__ import annotations

import numpy as np
import pytest

from lcnrun.core.data import Dataset
from lcnrun.core.dynamics import COMPLETED, DYNAMICS
from lcnrun.core.dynamics.balanced_learning_flow import balanced_velocity
from lcnrun.core.init import BalancedInit
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import LCN, Dense
from lcnrun.core.options import OptionError
from lcnrun.core.problem import Problem
from lcnrun.core.recording import RecordOptions

BLF, GF = DYNAMICS["balanced_learning_flow"], DYNAMICS["gradient_flow"]


def dense_problem(widths, rng, loss="square", n=6):
    model = Dense(Dense.Options(widths=widths))
    x, y = rng.standard_normal((n, widths[0])), rng.standard_normal((n, widths[-1]))
    return Problem(model, LOSSES[loss](), Dataset(x, y))


@pytest.mark.parametrize("widths", [(3, 3, 3, 3), (2, 4, 3, 3), (4, 3, 5, 2)])
@pytest.mark.parametrize("loss", ["square", "pseudo_huber"])
def test_matches_parameter_gradient_flow_from_a_balanced_start(widths, loss, rng):
    problem = dense_problem(widths, rng, loss)
    model = problem.model
    theta0 = BalancedInit.build(BalancedInit.Options(scale=1.0, seed=3), model)
    assert model.invariants(theta0)["balancedness"][0] < 1e-12
    record = RecordOptions(points=11, spacing="linear")
    opts = dict(t_max=4.0, rtol=1e-12, atol=1e-14)
    (gf,) = GF(GF.Options(**opts)).run(problem, theta0, record)
    (blf,) = BLF(BLF.Options(**opts)).run(problem, theta0, record)
    assert gf.status == blf.status == COMPLETED and blf.attrs["warning"] == ""
    np.testing.assert_allclose(blf.t, gf.t)
    X_gf = model.end_to_end(gf.theta)
    X_blf = blf.series["end_to_end_integrated"]
    assert np.abs(X_gf[-1] - X_gf[0]).max() > 0.1  # it moved
    np.testing.assert_allclose(X_blf, X_gf, rtol=0, atol=1e-6)
    np.testing.assert_allclose(blf.loss, gf.loss, rtol=1e-8)
    np.testing.assert_allclose(blf.grad_norm, gf.grad_norm, rtol=1e-7)
    # theta(t): a balanced factorization of X(t), starting at theta0, whose |grad L| is grad_norm
    np.testing.assert_allclose(blf.theta[0], theta0[0], atol=1e-12)
    np.testing.assert_allclose(model.end_to_end(blf.theta), X_blf, atol=1e-12)
    assert model.invariants(blf.theta)["balancedness"].max() < 1e-10
    grads = problem.value_and_grad(blf.theta)[1]
    np.testing.assert_allclose(np.linalg.norm(grads, axis=1), blf.grad_norm, rtol=1e-9)
    # same per-layer norms as gradient flow's balanced layers (sum sigma_i(X)^{2/N} each)
    np.testing.assert_allclose(model.layer_norms_sq(blf.theta), model.layer_norms_sq(gf.theta), rtol=1e-6)


@pytest.mark.parametrize("rank", [3, 2])
def test_velocity_is_minus_J_J_transpose_grad_at_balanced_points(rank, rng):
    """``-J J^T G`` from the model's Jacobian (no fractional powers) at ``W_p = U_p S^{1/N} U_{p-1}^T``."""
    model = Dense(Dense.Options(widths=(3, 4, 4, 3)))
    N = model.n_layers
    s = np.array([2.0, 0.7, 0.3])[:rank]
    frames = [np.linalg.qr(rng.standard_normal((d, d)))[0][:, :rank] for d in model.widths]
    layers = [frames[p + 1] @ np.diag(s ** (1 / N)) @ frames[p].T for p in range(N)]
    theta = model.join([W[None] for W in layers])
    assert model.invariants(theta)["balancedness"][0] < 1e-12
    X = model.end_to_end(theta)[0]
    assert np.linalg.matrix_rank(X) == rank
    G = rng.standard_normal(X.shape)
    J = model.jacobian(theta)[0]
    expected = -(J @ (J.T @ G.ravel())).reshape(X.shape)
    vel, gn2 = balanced_velocity(X, G, N)
    np.testing.assert_allclose(vel, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gn2, np.sum((J.T @ G.ravel()) ** 2), rtol=1e-10)


@pytest.mark.parametrize("s, a0", [(2.0, 0.1), (1.0, 3.0)])
def test_scalar_depth_two_follows_the_logistic_closed_form(s, a0):
    """``l(a) = 1/2 (a - s)^2``, N = 2: ``da/dt = -2 |a| (a - s)``."""
    model = Dense(Dense.Options(widths=(1, 1, 1)))
    problem = Problem(model, LOSSES["square"](), Dataset(np.ones((1, 1)), np.full((1, 1), s)))
    w = np.sqrt(a0)
    (traj,) = BLF(BLF.Options(t_max=3.0, rtol=1e-12, atol=1e-14)).run(
        problem, np.array([[w, w]]), RecordOptions(points=13, spacing="linear"))
    a = traj.series["end_to_end_integrated"][:, 0, 0]
    closed = s / (1 + (s / a0 - 1) * np.exp(-2 * s * traj.t))
    assert abs(a[-1] - a[0]) > 0.5 * abs(s - a0)
    np.testing.assert_allclose(a, closed, rtol=1e-9)
    np.testing.assert_allclose(np.abs(traj.theta), np.sqrt(np.abs(a))[:, None] * np.ones(2), rtol=1e-9)


def test_unbalanced_start_is_reported(rng):
    problem = dense_problem((3, 3, 3), rng)
    model = problem.model
    theta0 = rng.standard_normal((1, model.n_params))
    (traj,) = BLF(BLF.Options(t_max=1.0)).run(problem, theta0, RecordOptions(points=5))
    assert "not balanced" in traj.attrs["warning"]
    assert traj.attrs["initial_balancedness"] > 0.1
    np.testing.assert_allclose(traj.series["end_to_end_integrated"][0], model.end_to_end(theta0)[0], rtol=1e-15)
    np.testing.assert_allclose(model.end_to_end(traj.theta[:1]), model.end_to_end(theta0), atol=1e-12)
    assert model.invariants(traj.theta)["balancedness"].max() < 1e-10


@pytest.mark.parametrize("model", [LCN(LCN.Options(filters=(3, 3))), Dense(Dense.Options(widths=(4, 1, 3)))],
                         ids=["lcn", "bottleneck"])
def test_models_it_is_not_defined_for_are_rejected(model):
    with pytest.raises(OptionError) as err:
        BLF.check_model(model)
    assert err.value.key == "kind"
