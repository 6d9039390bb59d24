"""Output-metric flows and descents (``output_metric_flow``, ``output_metric_descent``) against
independent values.

- ``D = dx/dtheta`` by central differences of the layer-by-layer network (exact: the outputs are
  affine in each single parameter): its singular values, and ``-pinv(D) grad_x C`` against the
  velocity the core computes without forming ``D``, for DLNs and LCNs (1-D, strided, 2-D), square
  and non-square losses;
- over-parametrized (``rank D = QN <= P``): ``C(t)/C(0) = exp(-2t/N)`` to 1e-8, the outputs move on
  the straight line ``x(t) - y = (x(0) - y) exp(-t/N)``, the measured time of ``C = eps`` is the
  a-priori ``T(eps) = (N/2) ln(C(0)/eps)``, and the gradient-flow invariants are conserved (the
  velocity lies in ``row D``, orthogonal to the symmetry directions in ``ker J``);
- the equilibria are those of gradient flow (``D^+ g = 0 iff D^T g = 0``), at a global minimum, at a
  saddle of a rank-one DLN (``grad L = 0`` but ``x != y`` and ``D != 0``) and at the origin;
- honest status: the over-parametrized variant fails when ``P < QN`` or ``rank D < QN`` at t = 0;
  on the scalar DLN ``a = w1 w2`` with ``w2 = -w1`` the output path reaches ``a = 0`` (``D = 0``) at
  ``t* = ln((s - a0)/s)`` and the run fails there;
- descent converges to the flow at order 1 in ``lr``.
"""
from __future__ import annotations

import numpy as np
import pytest

from lcnrun.core.data import Dataset
from lcnrun.core.dynamics import COMPLETED, DYNAMICS, FAILED
from lcnrun.core.dynamics.output_metric import OutputMetric
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import LCN, Dense
from lcnrun.core.problem import Problem
from lcnrun.core.recording import RecordOptions

FLOW, DESCENT = DYNAMICS["output_metric_flow"], DYNAMICS["output_metric_descent"]


def dense(*widths):
    return Dense(Dense.Options(widths=widths))


def lcn(filters, strides=None):
    return LCN(LCN.Options(filters=filters, strides=strides))


#: name -> (model, input shape, N); QN <= P for the "over" ones
CASES = {
    "dense-over": (lambda: dense(4, 3, 3), (4,), 3),            # QN = 9,  P = 21
    "lcn-k33-over": (lambda: lcn((3, 3)), (5,), 4),             # QN = 4,  P = 6, E = 5
    "lcn-k22-s21-over": (lambda: lcn((2, 2), (2, 1)), (5,), 3),  # QN = 3,  P = 4
    "lcn-2d-over": (lambda: lcn(((2, 2), (2, 2))), (4, 4), 1),   # QN = 4,  P = 8, E = 9
    "dense-under": (lambda: dense(3, 2, 2), (3,), 10),          # QN = 20, P = 10
    "lcn-k32-under": (lambda: lcn((3, 2)), (9,), 4),            # QN = 24, P = 5
}


def problem_for(name, seed=0, loss="square"):
    make, shape, N = CASES[name]
    model = make()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N,) + shape)
    y = rng.standard_normal((N,) + model.output_shape(shape))
    return Problem(model, LOSSES[loss](), Dataset(x, y)), rng


def outputs(problem, theta):
    """All training outputs ``x (QN,)`` from the network run layer by layer."""
    return problem.model.forward(theta[None], problem.dataset.inputs)[0].ravel()


def finite_difference_D(problem, theta):
    """``D = dx/dtheta (QN, P)`` by central differences (exact: x is affine in each parameter)."""
    return np.stack([(outputs(problem, theta + h) - outputs(problem, theta - h)) / 2
                     for h in np.eye(len(theta))], axis=1)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("loss", ["square", "log_cosh"])
def test_velocity_is_minus_pinv_D_times_grad_x(name, loss):
    problem, rng = problem_for(name, loss=loss)
    model = problem.model
    metric = OutputMetric(model, problem.dataset.inputs, rank_rtol=1e-10)
    for _ in range(2):
        theta = 0.8 * rng.standard_normal(model.n_params)
        D = finite_difference_D(problem, theta)
        s = np.linalg.svd(D, compute_uv=False)
        assert metric.n_outputs == D.shape[0]
        np.testing.assert_allclose(metric.singular_values(theta), s, rtol=0, atol=1e-12 * s[0])
        assert metric.rank(theta) == np.linalg.matrix_rank(D, tol=1e-10 * s[0])
        # grad_x C of the per-sample loss (square: (x - y)/N)
        r = outputs(problem, theta) - problem.dataset.targets.ravel()
        grad_x = problem.loss.pointwise_grad(r) / problem.n_samples
        _, grad = problem.value_and_grad(theta[None])
        np.testing.assert_allclose(grad[0], D.T @ grad_x, rtol=1e-10, atol=1e-13)
        expected = np.linalg.pinv(D, rcond=1e-10) @ grad_x
        np.testing.assert_allclose(metric(theta, grad[0]), expected, rtol=1e-8,
                                   atol=1e-10 * np.linalg.norm(expected))


@pytest.mark.parametrize("name", [n for n in CASES if n.endswith("over")])
def test_overparametrized_flow_decays_exactly_exponentially(name):
    problem, rng = problem_for(name, seed=0)
    N = problem.n_samples
    eps = 1e-4
    theta0 = 0.7 * rng.standard_normal((1, problem.model.n_params))
    opts = FLOW.Options(t_max=6.0 * N, variant="overparametrized", eps=eps, rtol=1e-11, atol=1e-13)
    (traj,) = FLOW(opts).run(problem, theta0, RecordOptions(points=13, spacing="linear"))
    assert traj.status == COMPLETED, traj.message
    assert traj.attrs["variant_used"] == "overparametrized"
    QN = traj.attrs["n_outputs"]
    assert QN <= traj.attrs["n_params"] and np.all(traj.series["rank_D"] == QN)
    assert np.all(traj.series["sigma_min_D"] > 0)
    ratio = traj.loss / traj.loss[0]
    np.testing.assert_allclose(ratio, np.exp(-2 * traj.t / N), rtol=0, atol=1e-8)
    assert ratio[-1] < 1e-4  # it got far
    np.testing.assert_allclose(traj.series["loss_predicted"], traj.loss[0] * np.exp(-2 * traj.t / N), rtol=1e-14)
    # the outputs themselves move on the straight line to the targets
    y = problem.dataset.targets.ravel()
    r0 = outputs(problem, traj.theta[0]) - y
    for t, th in zip(traj.t, traj.theta):
        np.testing.assert_allclose(outputs(problem, th) - y, r0 * np.exp(-t / N), rtol=0,
                                   atol=1e-8 * np.linalg.norm(r0))
    # a-priori stopping time
    T = 0.5 * N * np.log(traj.loss[0] / eps)
    assert 0 < T < opts.t_max
    np.testing.assert_allclose(traj.attrs["T_eps_predicted"], T, rtol=1e-14)
    np.testing.assert_allclose(traj.attrs["t_eps_measured"], T, rtol=1e-8)
    assert np.isnan(traj.attrs["rank_condition_failed_at"])
    # the gradient-flow invariants are conserved
    inv = problem.model.invariants(traj.theta)["invariants"]
    np.testing.assert_allclose(inv, np.broadcast_to(inv[0], inv.shape), rtol=0, atol=1e-9)


def test_same_equilibria_as_gradient_flow():
    # (a) a saddle of the rank-one DLN on whitened data: l = 1/2 |X - U|^2, X = s_2 u_2 v_2^T
    model = dense(2, 1, 2)
    U = np.array([[2.0, 0.5], [-0.3, 1.0]])
    x = np.sqrt(2.0) * np.eye(2)
    problem = Problem(model, LOSSES["square"](), Dataset(x, x @ U.T))
    u, s, vt = np.linalg.svd(U)
    saddle = model.join([(np.sqrt(s[1]) * vt[1])[None, None], (np.sqrt(s[1]) * u[:, 1])[None, :, None]])
    # (b) a global minimum: targets produced by the network itself; (c) the origin of a depth-3 LCN
    over, rng = problem_for("lcn-k33-over", seed=3)
    theta_star = rng.standard_normal((1, over.model.n_params))
    minimum = Problem(over.model, over.loss, Dataset(over.dataset.inputs,
                                                     over.model.forward(theta_star, over.dataset.inputs)[0]))
    deep = lcn((2, 2, 2))
    origin = Problem(deep, LOSSES["square"](), Dataset(rng.standard_normal((3, 6)), rng.standard_normal((3, 3))))
    for pb, theta in [(problem, saddle[0]), (minimum, theta_star[0]), (origin, np.zeros(deep.n_params))]:
        loss, grad = pb.value_and_grad(theta[None])
        metric = OutputMetric(pb.model, pb.dataset.inputs, rank_rtol=1e-10)
        assert np.linalg.norm(grad) < 1e-12
        assert np.linalg.norm(metric(theta, grad[0])) < 1e-12
    # the saddle is not trivial: outputs miss the targets and D has rank 3 = P - 1 (the tangent
    # space of the rank-one 2 x 2 matrices; the scaling (w1, w2) -> (c w1, w2 / c) is its kernel)
    assert problem.value(saddle)[0] > 0.1
    assert OutputMetric(model, x, 1e-10).rank(saddle[0]) == 3
    (traj,) = FLOW(FLOW.Options(t_max=5.0)).run(problem, saddle, RecordOptions(points=5))
    np.testing.assert_allclose(traj.theta, np.broadcast_to(saddle, traj.theta.shape), atol=1e-12)
    # away from equilibria both move, and the output-metric direction descends
    for _ in range(3):
        theta = rng.standard_normal(model.n_params)
        _, grad = problem.value_and_grad(theta[None])
        d = OutputMetric(model, x, 1e-10)(theta, grad[0])
        assert np.linalg.norm(grad) > 1e-3 and d @ grad[0] > 1e-6 * np.linalg.norm(d) * np.linalg.norm(grad)


def test_overparametrized_variant_fails_honestly_at_the_start():
    # P < QN: the over-parametrized formula does not exist
    problem, rng = problem_for("lcn-k32-under")
    theta0 = rng.standard_normal((1, problem.model.n_params))
    (traj,) = FLOW(FLOW.Options(t_max=1.0, variant="overparametrized")).run(problem, theta0, RecordOptions())
    assert traj.status == FAILED and "parameters" in traj.message and "t = 0" in traj.message
    np.testing.assert_array_equal(traj.t, [0.0])
    assert traj.attrs["rank_condition_failed_at"] == 0.0
    # auto runs the pseudo-inverse flow instead, and says which regime it picked
    (traj,) = FLOW(FLOW.Options(t_max=1.0, variant="auto")).run(problem, theta0, RecordOptions(points=5))
    assert traj.status == COMPLETED and traj.attrs["variant_used"] == "underparametrized"
    assert traj.loss[-1] < traj.loss[0]
    # rank D < QN <= P: the origin of a two-layer DLN (J = 0, so D = 0)
    problem, rng = problem_for("dense-over")
    theta0 = np.zeros((1, problem.model.n_params))
    metric = OutputMetric(problem.model, problem.dataset.inputs, 1e-10)
    assert metric.rank(theta0[0]) < metric.n_outputs <= metric.n_params
    for dynamics in (FLOW(FLOW.Options(t_max=1.0, variant="overparametrized")),
                     DESCENT(DESCENT.Options(lr=0.01, steps=10, variant="overparametrized"))):
        (traj,) = dynamics.run(problem, theta0, RecordOptions())
        assert traj.status == FAILED and "rank D" in traj.message
        np.testing.assert_array_equal(traj.t, [0.0])


def test_scalar_dln_reaches_the_singular_point_in_finite_time():
    """``a = w1 w2``, one sample ``x = 1``, target ``s``: ``D = (w2, w1)``. From ``w2 = -w1`` (``a0 < 0``)
    the output ``a(t) = s + (a0 - s) e^{-t}`` reaches 0 at ``t* = ln((s - a0)/s)``, where the
    conserved ``w1^2 - w2^2 = 0`` forces ``theta = 0`` and ``D = 0``: the flow ends there."""
    s, a0 = 2.0, -0.5
    model = dense(1, 1, 1)
    problem = Problem(model, LOSSES["square"](), Dataset(np.ones((1, 1)), np.full((1, 1), s)))
    w = np.sqrt(-a0)
    t_star = np.log((s - a0) / s)
    (traj,) = FLOW(FLOW.Options(t_max=1.0, variant="overparametrized")).run(
        problem, np.array([[w, -w]]), RecordOptions(points=21, spacing="linear"))
    assert traj.status == FAILED and "sigma_min(D)" in traj.message
    assert abs(traj.t[-1] - t_star) < 1e-6
    a = traj.theta[:, 0] * traj.theta[:, 1]
    np.testing.assert_allclose(a, s + (a0 - s) * np.exp(-traj.t), rtol=0, atol=1e-8)
    assert np.abs(traj.theta[-1]).max() < 1e-3


def test_descent_converges_to_the_flow_at_order_one():
    problem, rng = problem_for("dense-over", seed=1)
    theta0 = 0.7 * rng.standard_normal((1, problem.model.n_params))
    T = 1.0
    (flow,) = FLOW(FLOW.Options(t_max=T, rtol=1e-12, atol=1e-14)).run(
        problem, theta0, RecordOptions(points=2, spacing="linear"))
    lrs = np.array([0.02, 0.01, 0.005])
    errors = []
    for lr in lrs:
        (gd,) = DESCENT(DESCENT.Options(lr=lr, steps=int(round(T / lr)))).run(
            problem, theta0, RecordOptions(points=2, spacing="linear"))
        assert gd.status == COMPLETED and gd.t[-1] == pytest.approx(T)
        assert np.all(gd.series["rank_D"] == gd.attrs["n_outputs"])
        errors.append(np.linalg.norm(gd.theta[-1] - flow.theta[-1]))
    slope = np.polyfit(np.log(lrs), np.log(errors), 1)[0]
    assert 0.9 < slope < 1.1, (slope, errors)


def test_descent_records_the_first_step_below_eps():
    problem, rng = problem_for("lcn-k33-over", seed=2)
    theta0 = 0.7 * rng.standard_normal((1, problem.model.n_params))
    lr, eps = 0.01, 1e-3
    (gd,) = DESCENT(DESCENT.Options(lr=lr, steps=3000, eps=eps)).run(
        problem, theta0, RecordOptions(points=3001, spacing="linear"))
    k = np.flatnonzero(gd.loss <= eps)[0]
    assert k > 0 and gd.attrs["t_eps_measured"] == gd.t[k] == k * lr
    # first order: close to the a-priori time of the flow
    assert abs(gd.attrs["t_eps_measured"] - gd.attrs["T_eps_predicted"]) < 0.05 * gd.attrs["T_eps_predicted"]
