"""Dynamics (every kind in ``DYNAMICS``): conservation laws, closed forms, convergence order,
stopping rules, divergence, the recording grid and determinism.

- gradient flow conserves ``delta_l = |w_l|^2 - |w_{l+1}|^2`` (LCN) and ``W_{l+1}^T W_{l+1} - W_l W_l^T``
  (DLN) to the integrator's tolerance, for square and non-square losses;
- gradient descent changes them by exactly ``lr^2 (|g_l|^2 - |g_{l+1}|^2)`` resp.
  ``lr^2 (G_{l+1}^T G_{l+1} - G_l G_l^T)`` per step: expanding ``W_l - lr G_l``, the first-order term
  is ``-lr (G_{l+1}^T W_{l+1} + W_{l+1}^T G_{l+1} - G_l W_l^T - W_l G_l^T)``, which vanishes because
  ``W_{l+1}^T G_{l+1} = G_l W_l^T`` (for an LCN because ``<w_l, g_l> = <e, grad_e l>`` for every l);
- gradient descent converges to gradient flow at order 1 in ``lr`` (fitted log-log slope);
- the scalar two-layer DLN follows the logistic closed form ``a(t) = s / (1 + (s/a0 - 1) e^{-2st})``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lcnrun.core.data import EndToEndTarget, FunctionSpaceData, build_dataset
from lcnrun.core.dynamics import COMPLETED, DIVERGED, DYNAMICS
from lcnrun.core.dynamics.gradient_flow import METHODS
from lcnrun.core.init import ExplicitInit
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import Dense
from lcnrun.core.options import Section, is_required
from lcnrun.core.problem import Problem
from lcnrun.core.recording import RecordOptions

#: values for the required options of a dynamics (a new dynamics with other required keys must add
#: them here); each makes a short run of total time 2 on the small test problems
REQUIRED_DEFAULTS = {"t_max": 2.0, "lr": 0.01, "steps": 200}


def dynamics_of(kind, **overrides):
    cls = DYNAMICS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls.Options)}
    missing = [n for n, f in fields.items() if is_required(f) and n not in overrides and n not in REQUIRED_DEFAULTS]
    assert not missing, f"add test values for {kind}'s required options {missing} to REQUIRED_DEFAULTS"
    values = {n: REQUIRED_DEFAULTS[n] for n, f in fields.items() if is_required(f) and n in REQUIRED_DEFAULTS}
    values.update(overrides)
    return cls(cls.Options(**values))


def t_end(dynamics):
    o = dynamics.options
    return o.t_max if hasattr(o, "t_max") else o.steps * o.lr


def is_descent(kind):
    """Descents (``lr``, ``steps``) store whole steps at ``t = step * lr``; flows integrate."""
    return "lr" in {f.name for f in dataclasses.fields(DYNAMICS[kind].Options)}


def init(model, rng, scale=0.5, batch=1):
    return scale * rng.standard_normal((batch, model.n_params))


# ---------------------------------------------------------------------------------------------
# conservation laws
CONSERVATION = [("lcn-1d-k33-s11", "square"), ("lcn-1d-k432-s221", "square"), ("lcn-1d-k222-s312", "log_cosh"),
                ("lcn-2d-k33.22-s11.22", "square"), ("lcn-2d-k32.23-s21.13", "pseudo_huber"),
                ("dense-2.3.3.4.2", "square"), ("dense-4.1.3", "square"), ("dense-3.4.2", "log_cosh")]


@pytest.mark.parametrize("name, loss", CONSERVATION)
def test_gradient_flow_conserves_the_invariants(name, loss, make_model, make_problem, rng):
    model = make_model(name)
    problem = make_problem(model, loss, n_samples=6)
    flow = dynamics_of("gradient_flow", t_max=5.0, rtol=1e-10, atol=1e-12)
    (traj,) = flow.run(problem, init(model, rng), RecordOptions(points=20))
    assert traj.status == COMPLETED and traj.t[-1] == 5.0
    assert traj.loss[-1] < 0.5 * traj.loss[0]  # it moved
    inv = model.invariants(traj.theta)["invariants"]
    scale = model.layer_norms_sq(traj.theta).max()
    assert np.abs(inv - inv[0]).max() < 1e-8 * scale
    # and the layers themselves changed by much more than that
    assert np.abs(traj.theta[-1] - traj.theta[0]).max() > 1e-2


@pytest.mark.parametrize("name, loss", CONSERVATION)
def test_gradient_descent_changes_the_invariants_by_lr_squared(name, loss, make_model, make_problem, rng):
    model = make_model(name)
    problem = make_problem(model, loss, n_samples=6)
    lr, steps = 0.02, 15
    descent = dynamics_of("gradient_descent", lr=lr, steps=steps)
    (traj,) = descent.run(problem, init(model, rng), RecordOptions(points=steps + 1, spacing="linear"))
    np.testing.assert_array_equal(traj.series["step"], np.arange(steps + 1))
    theta = traj.theta
    grads = problem.value_and_grad(theta)[1]  # (steps + 1, P): g_k at every stored step
    np.testing.assert_allclose(theta[1:], theta[:-1] - lr * grads[:-1], rtol=1e-14, atol=1e-15)
    W, G = model.split(theta), model.split(grads)
    for l in range(model.n_layers - 1):
        if model.name == "lcn":
            inv = np.sum(W[l].reshape(steps + 1, -1) ** 2, 1) - np.sum(W[l + 1].reshape(steps + 1, -1) ** 2, 1)
            second_order = lr ** 2 * (np.sum(G[l].reshape(steps + 1, -1) ** 2, 1)
                                      - np.sum(G[l + 1].reshape(steps + 1, -1) ** 2, 1))
        else:
            T = lambda A: np.swapaxes(A, 1, 2)  # noqa: E731
            inv = T(W[l + 1]) @ W[l + 1] - W[l] @ T(W[l])
            second_order = lr ** 2 * (T(G[l + 1]) @ G[l + 1] - G[l] @ T(G[l]))
        sizes = max(np.abs(W[l]).max(), np.abs(W[l + 1]).max()) ** 2
        assert np.abs(second_order).max() > 1e-8 * sizes  # a real check, not 0 == 0
        np.testing.assert_allclose(inv[1:] - inv[:-1], second_order[:-1], rtol=0, atol=1e-12 * sizes)


# ---------------------------------------------------------------------------------------------
# gradient descent -> gradient flow, order 1
@pytest.mark.parametrize("name, loss", [("lcn-1d-k432-s221", "square"), ("lcn-2d-k32.23-s21.13", "log_cosh"),
                                        ("dense-2.3.3.4.2", "square"), ("dense-4.1.3", "pseudo_huber")])
def test_gradient_descent_converges_to_gradient_flow_at_order_one(name, loss, make_model, make_problem, rng):
    model = make_model(name)
    problem = make_problem(model, loss, n_samples=6)
    theta0 = init(model, rng, scale=0.4)
    t = 0.5
    record = RecordOptions(points=2, spacing="linear")
    (flow,) = dynamics_of("gradient_flow", t_max=t, rtol=1e-13, atol=1e-15).run(problem, theta0, record)
    assert flow.t[-1] == t
    lrs = np.array([0.02, 0.01, 0.005, 0.0025])
    errors = []
    for lr in lrs:
        (gd,) = dynamics_of("gradient_descent", lr=lr, steps=int(round(t / lr))).run(problem, theta0, record)
        assert gd.t[-1] == pytest.approx(t, rel=1e-15)
        errors.append(np.linalg.norm(gd.theta[-1] - flow.theta[-1]))
    slope = np.polyfit(np.log(lrs), np.log(errors), 1)[0]
    assert abs(slope - 1) < 0.1, (slope, errors)


# ---------------------------------------------------------------------------------------------
# a closed form
def scalar_dln_run(s, a0, **flow_options):
    """``L = 1/2 (w2 w1 - s)^2`` from ``w1 = w2 = sqrt(a0)`` under gradient flow on ``[0, 4]``."""
    model = Dense(Dense.Options(widths=(1, 1, 1)))
    data = build_dataset(Section("function_space", FunctionSpaceData.Options(
        target=Section("end_to_end", EndToEndTarget.Options(value=((s,),))))), model)
    problem = Problem(model, LOSSES["square"](), data)
    w = np.sqrt(a0)
    theta0 = ExplicitInit.build(ExplicitInit.Options(layers=(((w,),), ((w,),))), model)
    np.testing.assert_allclose(problem.direct_value(theta0), 0.5 * (a0 - s) ** 2, rtol=1e-14)
    (traj,) = dynamics_of("gradient_flow", t_max=4.0, **flow_options).run(
        problem, theta0, RecordOptions(points=9, spacing="linear"))
    return model.end_to_end(traj.theta)[:, 0, 0], traj


def logistic(s, a0, t):
    return s / (1 + (s / a0 - 1) * np.exp(-2 * s * t))


@pytest.mark.parametrize("s, a0", [(2.0, 0.1), (1.0, 3.0), (-0.5, 0.2)])
def test_scalar_two_layer_dln_follows_the_logistic_closed_form(s, a0):
    """``a = w2 w1`` obeys ``da/dt = -(w1^2 + w2^2)(a - s) = 2 a (s - a)`` (balanced: ``w1^2 = w2^2 = a``),
    so ``a(t) = s / (1 + (s/a0 - 1) exp(-2 s t))``."""
    a, traj = scalar_dln_run(s, a0, rtol=1e-10, atol=1e-12)
    closed = logistic(s, a0, traj.t)
    np.testing.assert_allclose(a, closed, rtol=1e-9)
    np.testing.assert_allclose(traj.loss, 0.5 * (a - s) ** 2, rtol=1e-12, atol=1e-30)
    assert abs(a[-1] - a[0]) > 0.1 * abs(s - a0)  # it moved


@pytest.mark.parametrize("method", METHODS)
def test_every_integrator_follows_the_closed_form(method):
    a, traj = scalar_dln_run(2.0, 0.1, method=method, rtol=1e-12, atol=1e-14)
    assert traj.status == COMPLETED
    np.testing.assert_allclose(a, logistic(2.0, 0.1, traj.t), rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# stopping rules, divergence, recording, determinism: every dynamics
@pytest.fixture
def small_problem(request, make_model, make_problem):
    """The 3-layer strided LCN problem, or a DLN one for a dynamics (the test's ``kind``) that is not
    defined for LCNs (it refuses with a ValueError)."""
    kind = getattr(request.node, "callspec", None)
    kind = kind.params.get("kind", "gradient_descent") if kind is not None else "gradient_descent"
    refusals = []
    for name in ("lcn-1d-k432-s221", "dense-2.3.3.4.2"):
        model = make_model(name)
        problem = make_problem(model, "square", n_samples=6)
        try:
            dynamics_of(kind, **({"steps": 2} if is_descent(kind) else {"t_max": 1e-3})).run(
                problem, np.full((1, model.n_params), 0.5), RecordOptions(points=2))
        except ValueError as err:
            refusals.append(str(err))
            continue
        return model, problem
    pytest.fail(f"{kind} runs on none of the test problems: {refusals}")


def reference_run(kind, problem, theta0):
    return dynamics_of(kind).run(problem, theta0, RecordOptions(points=50, spacing="linear"))[0]


@pytest.mark.parametrize("kind", list(DYNAMICS))
def test_loss_below_stops_the_run(kind, small_problem, rng):
    model, problem = small_problem
    theta0 = init(model, rng)
    ref = reference_run(kind, problem, theta0)
    if kind in ("gradient_descent", "gradient_flow"):
        assert ref.loss[-1] < 0.5 * ref.loss[0]
    elif not ref.loss[-1] < 0.9 * ref.loss[0]:
        pytest.skip(f"the loss does not decrease under {kind}")
    threshold = float(np.sqrt(ref.loss[0] * ref.loss[-1]))  # crossed half-way (geometrically)
    (traj,) = dynamics_of(kind, loss_below=threshold).run(problem, theta0, RecordOptions(points=50))
    assert traj.status == COMPLETED
    assert traj.attrs["stop_reason"] == "loss_below" and "loss_below" in traj.message
    assert traj.t[-1] < t_end(dynamics_of(kind))
    assert traj.loss[-1] <= threshold * (1 + 1e-9) and np.all(traj.loss[:-1] > threshold)
    # the last stored point is the stop state
    np.testing.assert_allclose(problem.value(traj.theta[-1:])[0], traj.loss[-1], rtol=1e-14)
    if not is_descent(kind):  # the event's root: the loss there is the threshold
        np.testing.assert_allclose(traj.loss[-1], threshold, rtol=1e-9)
    if kind == "gradient_descent":  # the first step at or below the threshold
        k = int(traj.series["step"][-1])
        assert traj.t[-1] == k * dynamics_of(kind).options.lr
        theta = theta0.copy()
        for _ in range(k - 1):
            theta = theta - dynamics_of(kind).options.lr * problem.value_and_grad(theta)[1]
        assert problem.value(theta)[0] > threshold


@pytest.mark.parametrize("kind", list(DYNAMICS))
def test_grad_norm_below_stops_the_run(kind, small_problem, rng):
    model, problem = small_problem
    theta0 = init(model, rng)
    ref = reference_run(kind, problem, theta0)
    if kind in ("gradient_descent", "gradient_flow"):
        assert ref.grad_norm.min() < 0.5 * ref.grad_norm[0]
    elif not ref.grad_norm.min() < 0.9 * ref.grad_norm[0]:
        pytest.skip(f"|grad L| does not decrease under {kind} on this problem")
    threshold = float(np.sqrt(ref.grad_norm[0] * ref.grad_norm.min()))
    (traj,) = dynamics_of(kind, grad_norm_below=threshold).run(problem, theta0, RecordOptions(points=50))
    assert traj.status == COMPLETED and traj.attrs["stop_reason"] == "grad_norm_below"
    assert traj.t[-1] < t_end(dynamics_of(kind))
    assert traj.grad_norm[-1] <= threshold * (1 + 1e-9) and np.all(traj.grad_norm[:-1] > threshold)
    np.testing.assert_allclose(np.linalg.norm(problem.value_and_grad(traj.theta[-1:])[1]), traj.grad_norm[-1],
                               rtol=1e-14)
    if not is_descent(kind):
        np.testing.assert_allclose(traj.grad_norm[-1], threshold, rtol=1e-9)


@pytest.mark.parametrize("kind", list(DYNAMICS))
def test_a_rule_that_holds_at_the_start_stops_at_t_0(kind, small_problem, rng):
    model, problem = small_problem
    theta0 = init(model, rng)
    (traj,) = dynamics_of(kind, loss_below=1e6).run(problem, theta0, RecordOptions(points=50))
    assert traj.status == COMPLETED and traj.attrs["stop_reason"] == "loss_below"
    np.testing.assert_array_equal(traj.t, [0.0])
    assert traj.loss[0] == problem.value(traj.theta[:1])[0]
    if kind in ("gradient_descent", "gradient_flow"):  # (others may map the start, e.g. balance it)
        np.testing.assert_array_equal(traj.theta, theta0)


@pytest.mark.parametrize("kind", list(DYNAMICS))
def test_a_run_without_rules_completes_with_no_stop_reason(kind, small_problem, rng):
    model, problem = small_problem
    (traj,) = dynamics_of(kind).run(problem, init(model, rng), RecordOptions(points=30))
    assert traj.status == COMPLETED and traj.attrs["stop_reason"] == "" and traj.message == ""
    assert traj.t[-1] == pytest.approx(t_end(dynamics_of(kind)), rel=1e-15)
    # the loss never increases (beyond rounding / the integrator's tolerance; small steps too)
    assert np.all(np.diff(traj.loss) <= (1e-13 if is_descent(kind) else 1e-9) * traj.loss[0])


def test_huge_step_diverges_and_keeps_the_finite_prefix(small_problem, rng):
    model, problem = small_problem
    theta0 = init(model, rng)
    lr, steps = 5.0, 1000
    with np.errstate(all="ignore"):
        (traj,) = dynamics_of("gradient_descent", lr=lr, steps=steps).run(
            problem, theta0, RecordOptions(points=steps + 1, spacing="linear"))
    assert traj.status == DIVERGED and traj.message
    k = int(traj.series["step"][-1])
    assert 0 < k < steps and traj.attrs["n_steps"] == k and traj.t[-1] == k * lr
    np.testing.assert_array_equal(traj.series["step"], np.arange(k + 1))  # every step up to it kept
    threshold = dynamics_of("gradient_descent", lr=lr, steps=steps).options.divergence_factor * max(traj.loss[0], 1)
    assert np.all(np.isfinite(traj.loss[:-1])) and np.all(traj.loss[:-1] <= threshold)
    assert np.all(np.isfinite(traj.theta[:-1]))
    assert not traj.loss[-1] <= threshold  # above it, or not finite
    assert len(traj.theta) == len(traj.loss) == len(traj.grad_norm) == len(traj.t)


def test_gradient_descent_batch_members_are_independent(small_problem, rng):
    """A member stopped by a rule leaves the others untouched (the batch runs in one loop)."""
    model, problem = small_problem
    theta0 = init(model, rng, batch=2)
    theta0[1] *= 0.01  # starts next to the saddle at 0: barely moves
    solo = [reference_run("gradient_descent", problem, theta0[b: b + 1]) for b in range(2)]
    threshold = float(np.sqrt(solo[0].loss[0] * solo[0].loss[-1]))
    assert solo[1].loss[-1] > threshold  # member 1 never stops, member 0 does
    both = dynamics_of("gradient_descent", loss_below=threshold).run(problem, theta0, RecordOptions(points=50))
    assert both[0].attrs["stop_reason"] == "loss_below" and both[1].attrs["stop_reason"] == ""
    alone = [dynamics_of("gradient_descent", loss_below=threshold).run(problem, theta0[b: b + 1],
                                                                        RecordOptions(points=50))[0]
             for b in range(2)]
    for b in range(2):
        np.testing.assert_array_equal(both[b].t, alone[b].t)
        np.testing.assert_allclose(both[b].theta, alone[b].theta, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", list(DYNAMICS))
@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_recording_grid(kind, spacing, small_problem, rng):
    model, problem = small_problem
    dynamics = dynamics_of(kind)
    T = t_end(dynamics)
    (traj,) = dynamics.run(problem, init(model, rng), RecordOptions(points=25, spacing=spacing))
    t = traj.t
    assert t[0] == 0.0 and t[-1] == pytest.approx(T, rel=1e-15) and np.all(np.diff(t) > 0)
    assert traj.theta.shape == (len(t), model.n_params) and traj.loss.shape == traj.grad_norm.shape == t.shape
    if is_descent(kind):
        lr = dynamics.options.lr
        steps = traj.series["step"]
        np.testing.assert_array_equal(t, steps * lr)  # t = step * lr
        assert steps[0] == 0 and steps[-1] == dynamics.options.steps
        # the grid rounded to whole steps
        ideal = (np.linspace(0, T, 25) if spacing == "linear"
                 else np.concatenate([[0], np.geomspace(lr, T, 24)])) / lr
        np.testing.assert_array_equal(steps, np.unique(np.rint(ideal)))
    else:
        assert len(t) == 25
        if spacing == "linear":
            np.testing.assert_allclose(np.diff(t), T / 24, rtol=1e-12)
        else:
            np.testing.assert_allclose(t[1], 1e-4 * T, rtol=1e-12)  # default first time
            ratios = t[2:] / t[1:-1]
            np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    # the stored losses are those of the stored states
    np.testing.assert_allclose(traj.loss, problem.value(traj.theta), rtol=1e-14)
    np.testing.assert_allclose(traj.grad_norm, np.linalg.norm(problem.value_and_grad(traj.theta)[1], axis=1),
                               rtol=1e-13)


def test_log_grid_t_min(small_problem, rng):
    model, problem = small_problem
    (traj,) = dynamics_of("gradient_flow", t_max=3.0).run(problem, init(model, rng),
                                                          RecordOptions(points=10, t_min=0.01))
    np.testing.assert_allclose(traj.t, np.concatenate([[0], np.geomspace(0.01, 3.0, 9)]), rtol=1e-14)


@pytest.mark.parametrize("kind", list(DYNAMICS))
def test_runs_are_deterministic(kind, arch, make_model, make_problem):
    model = make_model(arch)

    def run():
        rng = np.random.default_rng(11)
        problem = make_problem(model, "log_cosh" if model.name == "dense" else "square", n_samples=4, seed=2)
        return dynamics_of(kind, **({"steps": 50} if is_descent(kind) else {"t_max": 0.5})).run(
            problem, init(model, rng, batch=2), RecordOptions(points=10))

    try:
        first = run()
    except ValueError as err:  # the dynamics is not defined for this model
        pytest.skip(str(err))
    second = run()
    for a, b in zip(first, second):
        for name in ("t", "theta", "loss", "grad_norm"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.status == b.status and a.message == b.message
        np.testing.assert_equal(a.attrs, b.attrs)  # (NaN == NaN here)
        np.testing.assert_equal(a.series, b.series)


def test_solve_ivp_stopping_events_equal_the_rules_values_bit_for_bit():
    """``StopRules.events`` (one member, on floats: what LSODA/Radau/BDF evaluate at every step)
    against :meth:`StopRules.values` (the arrays the ensemble integrator uses), for every rule and
    member, finite and non-finite losses: the same numbers, bit for bit."""
    from lcnrun.core.dynamics.stopping import RULES, StopRules

    rules = StopRules(threshold=np.array([3.0, 1e10]), loss_below=np.array([1e-3, 0.25]),
                      grad_norm_below=np.array([1e-7, 0.1 + 0.2]))
    points = [(0.1 + 0.2, 1e-9), (2.9999999999999996, 0.5), (1e-3, 1e-7), (np.inf, 1.0), (np.nan, np.nan)]
    for b in range(2):
        fns = rules.events(lambda y: points[int(y[0])], b)
        assert [fn.rule for fn in fns] == list(RULES)
        for k, (loss, gnorm) in enumerate(points):
            ref = rules.values(np.array([loss]), np.array([gnorm]), slice(b, b + 1))[0]
            got = np.array([fn(0.0, np.array([float(k)])) for fn in fns])
            assert np.array_equal(got, ref, equal_nan=True), (b, k, got, ref)
