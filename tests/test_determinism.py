"""The very file a point gets alone: for every model family, dynamics, loss and BLAS thread count.

- the compiled pass over the samples (lp, pseudo-Huber, log-cosh) equals the numpy reference (the
  end-to-end map, ``features @ e`` and the pull-back, itself checked against finite differences in
  test_models.py) to ~1e-13, and each member of a batch is bitwise the member evaluated alone;
- an ensemble member's run record (trajectory, final state, attributes) is bitwise the record of
  its run alone, for every dynamics that batches members, on LCN and dense models, square and
  separable losses;
- a run's record does not depend on the BLAS thread count around it (1 or 2 threads), for every
  dynamics on LCN and dense models.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lcnrun.core.data import Dataset
from lcnrun.core.dynamics import DYNAMICS
from lcnrun.core.kernels import samples_value_and_grad
from lcnrun.core.losses import LOSSES
from lcnrun.core.problem import Problem
from lcnrun.runner import ensemble_key, execute, execute_ensemble
from lcnrun.spec import load_experiment_text

SEPARABLE = [("pseudo_huber", dict(delta=0.7)), ("log_cosh", {}), ("lp", dict(p=3.0)), ("lp", dict(p=1.0)),
             ("lp", dict(p=2.5))]


@pytest.mark.parametrize("loss,options", SEPARABLE, ids=[f"{k}-{v}" for k, v in SEPARABLE])
def test_compiled_separable_losses_equal_the_numpy_reference(arch, loss, options, make_model, make_problem, rng):
    model = make_model(arch)
    cls = LOSSES[loss]
    problem = make_problem(model, loss, cls.Options(**options), n_samples=7)
    assert problem.sample_forms() is not None
    # residuals of every size: small ones (log-cosh's series branch, |r| < 1) and large ones; more
    # members than the kernel passes over the data together (several groups)
    theta = np.concatenate([rng.standard_normal((11, model.n_params)),
                            0.2 * rng.standard_normal((10, model.n_params))])
    loss_k, grad_k = problem.value_and_grad(theta)
    loss_r, grad_r = problem.numpy_value_and_grad(theta)
    np.testing.assert_allclose(loss_k, loss_r, rtol=1e-13)
    np.testing.assert_allclose(grad_k, grad_r, rtol=1e-12, atol=1e-13 * np.abs(grad_r).max())
    for b in range(len(theta)):
        l1, g1 = problem.value_and_grad(theta[b: b + 1])
        assert l1[0] == loss_k[b] and np.array_equal(g1[0], grad_k[b])


@pytest.mark.parametrize("loss,options", SEPARABLE, ids=[f"{k}-{v}" for k, v in SEPARABLE])
def test_a_loss_over_whole_blocks_keeps_only_the_output_positions(loss, options, make_model, rng):
    """Where the outputs are most of a block (here 29 of each sample's 32 positions), the kernel runs
    the loss over the whole block and keeps the outputs only. The other positions read across a
    sample's end, so their residuals are not zero (checked here): neither their loss nor their
    slope may reach the result, which equals the numpy reference as above, and stays bitwise the
    same with NaN and infinities as targets there (dropped by a select, never multiplied by 0).
    (The table's inputs have 3 outputs of 8 positions: the loss runs over the output runs there.)"""
    model = make_model("lcn-1d-k432-s221")  # e: 12 taps, stride 4
    x = rng.standard_normal((7, 12 + 4 * 28))  # 29 outputs
    cls = LOSSES[loss]
    problem = Problem(model, cls(cls.Options(**options)), Dataset(x, rng.standard_normal((7, 29))))
    f = problem.sample_forms()
    outputs = int(f.run_len.sum()) * (f.R // f.period)
    assert 2 * outputs >= f.c * f.R and outputs < f.c * f.R
    theta = np.concatenate([rng.standard_normal((3, model.n_params)), 0.2 * rng.standard_normal((3, model.n_params))])
    e = model.end_to_end(theta[:1]).reshape(-1)
    pred = sum(e[k] * f.Z[f.base[0] + f.off[k]: f.base[0] + f.off[k] + f.R] for k in range(f.off.size))
    others = np.ones(f.R, dtype=bool)
    for s in range(f.R // f.period):
        for a, n in zip(f.run_start, f.run_len):
            others[s * f.period + a: s * f.period + a + n] = False
    assert np.abs(pred[others] - f.Y[: f.R][others]).max() > 0.1
    loss_k, grad_k = problem.value_and_grad(theta)
    loss_r, grad_r = problem.numpy_value_and_grad(theta)
    np.testing.assert_allclose(loss_k, loss_r, rtol=1e-13)
    np.testing.assert_allclose(grad_k, grad_r, rtol=1e-12, atol=1e-13 * np.abs(grad_r).max())
    poison = f.Y.copy().reshape(-1, f.R)
    poison[:, others] = rng.choice([np.nan, np.inf, -np.inf, 1e308], size=(poison.shape[0], int(others.sum())))
    loss_p, grad_p = samples_value_and_grad(problem.chain_program(), replace(f, Y=poison.reshape(-1)), theta)
    assert np.array_equal(loss_p, loss_k) and np.array_equal(grad_p, grad_k)


def test_sample_layout_reproduces_the_model_outputs(arch, make_model, make_problem, rng):
    """The model contract's ``sample_layout``, read in numpy: ``pred[blk, ch, m] = sum_k e[ch, k]
    Z[base[blk] + off[k] + m]`` at the output positions equals ``model.predict``, every target sits
    at its output's position, and every other position has target 0."""
    model = make_model(arch)
    problem = make_problem(model, n_samples=7)
    x, y = problem.dataset.inputs, problem.dataset.targets
    lay = model.sample_layout(x, y)
    Z, base, off, c, R = np.ravel(lay["Z"]), lay["base"], lay["off"], lay["c"], lay["R"]
    e = rng.standard_normal((1,) + model.end_to_end_shape)
    ek = e.reshape(c, -1)
    pred = np.zeros((len(base), c, R))
    for blk, zb in enumerate(base):
        for k, o in enumerate(off):
            pred[blk] += ek[:, k: k + 1] * Z[zb + o: zb + o + R][None]
    Y = np.ravel(lay["Y"]).reshape(len(base), c, R)
    mask = np.zeros(R, dtype=bool)
    for s in range(0, R, lay["period"]):
        for start, n in zip(lay["run_start"], lay["run_len"]):
            mask[s + start: s + start + n] = True
    ref = model.predict(e, model.features(x))[0]
    # the output positions in order: blocks, then positions; a DLN's blocks hold samples (c channels)
    got = np.moveaxis(pred, 1, -1)[:, mask].reshape(-1, c)
    want = np.moveaxis(Y, 1, -1)[:, mask].reshape(-1, c)
    n = ref.reshape(-1, c).shape[0]
    np.testing.assert_allclose(got[:n], ref.reshape(-1, c), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(want[:n], y.reshape(-1, c))
    assert not np.any(want[n:]) and not np.any(np.moveaxis(Y, 1, -1)[:, ~mask])


def test_log_cosh_keeps_its_digits_for_tiny_residuals(make_model, make_problem, rng):
    """Residuals ~1e-6: log cosh r = r^2/2 - r^4/12 + ... must not cancel (a naive
    ``|r| + log1p(exp(-2|r|)) - log 2`` keeps ~4 digits there); ``tanh r = r - r^3/3``."""
    model = make_model("lcn-1d-k432-s221")
    base = make_problem(model, "log_cosh", n_samples=9)
    theta = rng.standard_normal((1, model.n_params))
    pred = model.predict(model.end_to_end(theta), base.features)[0]
    # the residuals themselves carry the rounding of the predictions (~1e-16 |pred|, i.e. ~1e-10 of
    # r): rtol 1e-8 is far below the ~1e-4 a cancelling formula would lose, far above that noise
    d = 1e-6 * rng.standard_normal(pred.shape)
    problem = Problem(model, base.loss, Dataset(base.dataset.inputs, pred - d))
    r = model.predict(model.end_to_end(theta), problem.features)[0] - problem.dataset.targets
    exact = float(np.sum(r ** 2 / 2 - r ** 4 / 12)) / problem.n_samples
    loss, grad = problem.value_and_grad(theta)
    np.testing.assert_allclose(loss[0], exact, rtol=1e-8)
    ge = model.predict_vjp(problem.features, ((r - r ** 3 / 3) / problem.n_samples)[None])
    np.testing.assert_allclose(grad, model.end_to_end_vjp(theta, ge), rtol=1e-8, atol=1e-9 * np.abs(grad).max())


MODELS = {
    "lcn": "model: {kind: lcn, filters: [4, 3, 2], strides: [2, 2, 1]}\n"
           "data: {kind: gaussian, n_samples: 16, input_size: 30, target: {kind: teacher, scale: 0.5}, noise: 0.1, seed: 0}\n",
    "dense": "model: {kind: dense, widths: [48, 24, 12, 6]}\n"
             "data: {kind: gaussian, n_samples: 96, target: {kind: teacher, scale: 0.5}, noise: 0.1, seed: 0}\n",
    # end-to-end size 256: the square loss's statistics take an eigendecomposition of a 256 x 256
    # Gram matrix, whose LAPACK result depends on the BLAS thread count (the case that can fail)
    "wide-lcn": "model: {kind: lcn, filters: [64, 64, 64, 67]}\n"
                "data: {kind: gaussian, n_samples: 64, input_size: 300, target: {kind: teacher, scale: 0.5}, noise: 0.1, seed: 0}\n",
    "small-dense": "model: {kind: dense, widths: [5, 4, 3]}\n"
                   "data: {kind: gaussian, n_samples: 12, target: {kind: teacher, scale: 0.5}, noise: 0.1, seed: 0}\n",
}

DYNAMICS_SPECS = {
    "gradient_descent": "{kind: gradient_descent, lr: 0.002, steps: 40}",
    "gradient_flow": "{kind: gradient_flow, t_max: 0.3, method: DOP853, rtol: 1.0e-8}",
    "gradient_flow-RK23": "{kind: gradient_flow, t_max: 0.3, method: RK23, rtol: 1.0e-6}",
    "gradient_flow-LSODA": "{kind: gradient_flow, t_max: 0.3, method: LSODA, rtol: 1.0e-8}",
    "output_metric_flow": "{kind: output_metric_flow, t_max: 0.05}",
    "output_metric_descent": "{kind: output_metric_descent, lr: 0.001, steps: 10}",
    "balancing_flow": "{kind: balancing_flow, t_max: 0.05}",
    "balanced_learning_flow": "{kind: balanced_learning_flow, t_max: 0.05}",
}


def test_every_dynamics_is_covered():
    assert {k.split("-")[0] for k in DYNAMICS_SPECS} == set(DYNAMICS)


def spec(model: str, dynamics: str, loss: str = "square", seeds=(1,)) -> str:
    return (f"name: det\n{MODELS[model]}init: {{kind: gaussian, scale: 0.3, seed: 1}}\n"
            f"loss: {{kind: {loss}}}\ndynamics: {DYNAMICS_SPECS[dynamics]}\nrecord: {{points: 6}}\n"
            f"sweep:\n  grid: {{init.seed: {list(seeds)}}}\n")


def assert_same_record(a, b):
    assert (a.run_id, a.status, a.spec_text) == (b.run_id, b.status, b.spec_text)
    np.testing.assert_equal(a.attrs, b.attrs)  # NaN equals NaN here
    np.testing.assert_equal(a.final_attrs, b.final_attrs)
    for part in ("trajectory", "final_arrays"):
        x, y = getattr(a, part), getattr(b, part)
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{part}/{k}")


@pytest.mark.parametrize("model", ["lcn", "dense"])
@pytest.mark.parametrize("dynamics", ["gradient_descent", "gradient_flow", "gradient_flow-RK23"])
@pytest.mark.parametrize("loss", ["square", "pseudo_huber", "log_cosh"])
def test_an_ensemble_member_is_bitwise_its_run_alone(model, dynamics, loss):
    points = load_experiment_text(spec(model, dynamics, loss, seeds=(1, 2, 3, 4))).points
    key = ensemble_key(points[0].run_spec)
    assert key is not None and all(ensemble_key(p.run_spec) == key for p in points)
    records = execute_ensemble([p.run_spec for p in points], [p.run_id for p in points])
    for p, rec in zip(points, records):
        assert rec.status == "completed", rec.attrs.get("message")
        assert_same_record(rec, execute(p.run_spec, p.run_id))


CASES = ([(m, d) for m in ("lcn", "dense") for d in ("gradient_descent", "gradient_flow", "gradient_flow-LSODA")]
         + [(m, d) for m in ("lcn", "small-dense") for d in ("output_metric_flow", "output_metric_descent",
                                                              "balancing_flow")]
         + [("small-dense", "balanced_learning_flow"), ("wide-lcn", "gradient_descent")])


@pytest.mark.parametrize("model,dynamics", CASES, ids=[f"{m}-{d}" for m, d in CASES])
def test_the_blas_thread_count_does_not_change_a_run(model, dynamics):
    point = load_experiment_text(spec(model, dynamics)).points[0]
    records = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            records[threads] = execute(point.run_spec, point.run_id)
    assert records[1].status in ("completed", "failed", "diverged")
    assert len(records[1].trajectory.get("t", [])) > 1, records[1].attrs.get("message")
    assert_same_record(records[1], records[2])


def test_separable_losses_and_the_square_loss_do_not_share_an_ensemble():
    keys = {loss: ensemble_key(load_experiment_text(spec("lcn", "gradient_descent", loss)).points[0].run_spec)
            for loss in ("square", "pseudo_huber", "log_cosh")}
    assert len(set(keys.values())) == 3 and None not in keys.values()
