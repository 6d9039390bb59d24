"""Losses (every kind in ``LOSSES``) and the training objective ``Problem``.

- pointwise losses: derivative vs central differences, ``lp`` with ``p = 2`` is ``square``, the two
  regimes of ``pseudo_huber``, ``log_cosh`` at ``|r| = 1000``;
- ``Problem.value_and_grad`` for every loss and architecture: Taylor slope 2, central differences,
  and the value against the network run layer by layer on every sample (``direct_value``);
- the square loss from sufficient statistics (``QuadraticForm``) against an independent least-squares
  fit, also at and next to the minimum; ``function_space`` data gives exactly ``1/2 |e - u|^2``.
"""
from __future__ import annotations

import numpy as np
import pytest

from lcnrun.core.data import EndToEndTarget, FunctionSpaceData, RandomEndToEndTarget, build_dataset
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import LCN, Dense
from lcnrun.core.options import Section
from lcnrun.core.problem import Problem

#: (kind, options) pairs; every registered loss appears (checked below)
LOSS_CASES = [
    ("square", {}),
    ("lp", {"p": 3.0}),
    ("lp", {"p": 1.5}),
    ("lp", {"p": 4.0}),
    ("pseudo_huber", {"delta": 0.5}),
    ("pseudo_huber", {"delta": 2.0}),
    ("log_cosh", {}),
]
CASE_IDS = [kind + "".join(f"-{k}{v:g}" for k, v in opts.items()) for kind, opts in LOSS_CASES]


def make_loss(kind, opts):
    cls = LOSSES[kind]
    return cls(cls.Options(**opts))


def test_every_loss_is_covered():
    assert {kind for kind, _ in LOSS_CASES} == set(LOSSES), "add the new loss to LOSS_CASES"


# ---------------------------------------------------------------------------------------------
# pointwise
@pytest.mark.parametrize("kind, opts", LOSS_CASES, ids=CASE_IDS)
def test_pointwise_gradient_vs_finite_differences(kind, opts, rng):
    loss = make_loss(kind, opts)
    r = 3 * rng.standard_normal(200)
    r = r[np.abs(r) > 0.05]  # lp with p < 2 has no second derivative at 0
    h = 1e-6
    fd = (loss.pointwise(r + h) - loss.pointwise(r - h)) / (2 * h)
    np.testing.assert_allclose(loss.pointwise_grad(r), fd, rtol=1e-7, atol=1e-9)
    assert np.all(loss.pointwise(r) >= 0) and np.all(loss.pointwise(np.zeros(3)) == 0)


@pytest.mark.parametrize("kind, opts", LOSS_CASES, ids=CASE_IDS)
def test_mean_over_samples_sum_over_components(kind, opts, rng):
    """``L = (1/N) sum_n loss(p_n, y_n)`` with ``loss`` summed over output components."""
    loss = make_loss(kind, opts)
    pred, target = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal((5, 3, 4))
    by_hand = np.array([sum(loss.pointwise(pred[b, n] - target[n]).sum() for n in range(5)) / 5 for b in range(2)])
    np.testing.assert_allclose(loss.value(pred, target), by_hand, rtol=1e-14)
    val, grad = loss.value_and_residual_grad(pred, target)
    np.testing.assert_allclose(val, by_hand, rtol=1e-14)
    np.testing.assert_allclose(grad, loss.pointwise_grad(pred - target[None]) / 5, rtol=1e-15)


def test_lp_with_p_2_is_square(rng):
    r = rng.standard_normal(50) * 10
    lp, sq = make_loss("lp", {"p": 2.0}), make_loss("square", {})
    np.testing.assert_allclose(lp.pointwise(r), sq.pointwise(r), rtol=1e-15)
    np.testing.assert_allclose(lp.pointwise_grad(r), sq.pointwise_grad(r), rtol=1e-15)
    np.testing.assert_allclose(make_loss("lp", {"p": 3.0}).pointwise(r), np.abs(r) ** 3 / 3, rtol=1e-15)


@pytest.mark.parametrize("delta", [0.1, 1.0, 3.0])
def test_pseudo_huber_regimes(delta):
    loss = make_loss("pseudo_huber", {"delta": delta})
    # |r| << delta: r^2/2 (1 - (r/delta)^2/4 + ...), and no cancellation for tiny r
    small = delta * np.array([1e-12, -1e-8, 1e-4, -1e-3])
    np.testing.assert_allclose(loss.pointwise(small), small ** 2 / 2, rtol=(1e-3) ** 2 / 4 * 1.01)
    np.testing.assert_allclose(loss.pointwise(small[:2]), small[:2] ** 2 / 2, rtol=1e-15)
    np.testing.assert_allclose(loss.pointwise_grad(small), small, rtol=1e-6)
    # |r| >> delta: delta |r| - delta^2 + O(delta^3 / |r|)
    large = delta * np.array([1e3, -1e5, 1e8])
    assert np.all(np.abs(loss.pointwise(large) - (delta * np.abs(large) - delta ** 2))
                  <= delta ** 3 / np.abs(large) + 1e-15 * delta * np.abs(large))
    np.testing.assert_allclose(loss.pointwise_grad(large), delta * np.sign(large), rtol=1e-6)


def test_log_cosh_is_stable():
    loss = make_loss("log_cosh", {})
    big = np.array([1000.0, -1000.0, 1e8])
    val = loss.pointwise(big)
    assert np.all(np.isfinite(val))
    np.testing.assert_allclose(val, np.abs(big) - np.log(2), rtol=1e-15)
    np.testing.assert_allclose(loss.pointwise_grad(big), np.sign(big), rtol=0)
    moderate = np.linspace(-5, 5, 41)
    np.testing.assert_allclose(loss.pointwise(moderate), np.log(np.cosh(moderate)), rtol=1e-14, atol=1e-16)
    # small |r|: r^2/2 - r^4/12 + r^6/45 to full relative precision (no cancellation)
    tiny = np.array([1e-150, 1e-9, -1e-5, 1e-3])
    np.testing.assert_allclose(loss.pointwise(tiny), tiny ** 2 / 2 - tiny ** 4 / 12 + tiny ** 6 / 45, rtol=1e-15)
    # continuous across the switch between the two formulas at |r| = 1
    near_one = np.array([1 - 1e-12, 1.0, 1 + 1e-12, -1.0])
    np.testing.assert_allclose(loss.pointwise(near_one), np.log(np.cosh(near_one)), rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# Problem: value and gradient, every loss x every architecture
@pytest.mark.parametrize("kind, opts", LOSS_CASES, ids=CASE_IDS)
def test_problem_gradient(arch, kind, opts, make_model, make_problem, rng, taylor_slope):
    model = make_model(arch)
    problem = make_problem(model, kind, LOSSES[kind].Options(**opts))
    theta = 0.6 * rng.standard_normal((2, model.n_params))
    value, grad = problem.value_and_grad(theta)
    assert value.shape == (2,) and grad.shape == (2, model.n_params)
    # the value: the network run layer by layer on every sample
    np.testing.assert_allclose(value, problem.direct_value(theta), rtol=1e-12)
    np.testing.assert_array_equal(problem.value(theta), value)
    f = lambda t: float(problem.value(t[None])[0])  # noqa: E731
    slope, _, _ = taylor_slope(f, theta[0], grad[0], rng)
    assert abs(slope - 2) < 0.01
    # central differences of the layer-by-layer loss along a few directions
    h = 1e-5
    for u in rng.standard_normal((3, model.n_params)):
        u /= np.linalg.norm(u)
        fd = (problem.direct_value(theta + h * u) - problem.direct_value(theta - h * u)) / (2 * h)
        np.testing.assert_allclose(grad @ u, fd, rtol=1e-7, atol=1e-9 * np.abs(grad).max())


# ---------------------------------------------------------------------------------------------
# the square loss from sufficient statistics
def one_layer_design_matrix(model, x):
    """``A`` with ``A vec(e) =`` all outputs (flattened) of the one-layer network of end-to-end map
    ``e``: built column by column from the network itself, independently of ``features``."""
    one_layer = (Dense(Dense.Options(widths=(model.widths[0], model.widths[-1]))) if model.name == "dense"
                 else LCN(LCN.Options(filters=(model.end_to_end_shape,), strides=(model.end_to_end_stride,))))
    E = model.end_to_end_size
    return np.stack([one_layer.forward(np.eye(E)[j: j + 1], x)[0].ravel() for j in range(E)], axis=1)


@pytest.mark.parametrize("noise", [0.3, 1e-3, 0.0])
def test_quadratic_form_at_and_near_the_minimum(arch, noise, make_model, make_problem, rng):
    """``l(e) = l_min + 1/2 (e - e_min)^T G (e - e_min)`` against ``(1/2N) |A e - y|^2`` with ``A``,
    ``e_ls`` and ``l_ls`` from an independent least-squares fit."""
    model = make_model(arch)
    problem = make_problem(model, n_samples=8, noise=noise)
    x, y = problem.dataset.inputs, problem.dataset.targets
    N = x.shape[0]
    A = one_layer_design_matrix(model, x)
    e_ls = np.linalg.lstsq(A, y.ravel(), rcond=None)[0]
    r_ls = A @ e_ls - y.ravel()
    l_ls = 0.5 * (r_ls @ r_ls) / N
    q = problem.quadratic
    as_batch = lambda e: e.reshape((1,) + model.end_to_end_shape)  # noqa: E731
    value, grad = q.value_and_gradient(as_batch(e_ls))
    # the exact minimum (with noise 0 both are rounding, O(eps^2 |y|^2)) ...
    np.testing.assert_allclose(value, l_ls, rtol=1e-12, atol=2e-29 * np.mean(y ** 2))
    assert np.abs(grad).max() < 1e-13 * np.abs(A.T @ y.ravel() / N).max()  # ... is critical
    # next to it: l_ls + the excess 1/(2N) |A d|^2 + <r_ls, A d>/N (the second term ~ 0), to 1e-12
    # relative or to the accuracy that rounding e alone allows (|e| |grad l(e)| eps): with noise 0,
    # l_min = 0 and the excess keeps its digits (the expanded quadratic would lose them all)
    for h in (1e-2, 1e-4, 1e-6):
        d = h * rng.standard_normal(e_ls.shape)
        excess = 0.5 * np.sum((A @ d) ** 2) / N + (r_ls @ (A @ d)) / N
        value = q.value_and_gradient(as_batch(e_ls + d))[0][0]
        conditioning = np.linalg.norm(e_ls + d) * np.linalg.norm(A.T @ (A @ (e_ls + d) - y.ravel()) / N)
        assert abs(value - (l_ls + excess)) <= 1e-12 * (l_ls + excess) + 8 * np.finfo(float).eps * conditioning
    # anywhere: the value equals the loss of the network run layer by layer
    theta = 0.6 * rng.standard_normal((3, model.n_params))
    np.testing.assert_allclose(problem.value(theta), problem.direct_value(theta), rtol=1e-12)
    grad_e = (model.end_to_end(theta).reshape(3, -1) @ A.T - y.ravel()) @ A / N  # A^T (A e - y) / N
    grad = model.end_to_end_vjp(theta, grad_e.reshape((3,) + model.end_to_end_shape))
    np.testing.assert_allclose(problem.value_and_grad(theta)[1], grad, rtol=1e-10, atol=1e-13 * np.abs(grad).max())


@pytest.mark.parametrize("noise", [0.0, 1e-3])
def test_quadratic_form_at_the_teacher(arch, noise, make_model, make_problem, rng):
    """Next to the minimum in parameter space: at (and around) the teacher's parameters the loss
    from the sufficient statistics equals the layer-by-layer loss; with realizable targets both are
    0 up to the rounding of the outputs, O(eps^2 |y|^2)."""
    model = make_model(arch)
    problem = make_problem(model, n_samples=8, noise=noise)
    rng_target = np.random.default_rng(np.random.SeedSequence(0).spawn(3)[1])  # see test_models
    theta_teacher = 0.6 * rng_target.standard_normal((1, model.n_params))
    scale = np.mean(problem.dataset.targets ** 2)
    if noise == 0:
        assert problem.direct_value(theta_teacher)[0] < 1e-29 * scale
        assert 0 <= problem.value(theta_teacher)[0] < 1e-29 * scale
        assert 0 <= problem.quadratic.l_min < 1e-29 * scale
    else:
        near = theta_teacher + 1e-4 * rng.standard_normal((3, model.n_params))
        theta = np.concatenate([theta_teacher, near])
        np.testing.assert_allclose(problem.value(theta), problem.direct_value(theta), rtol=1e-12)
        assert np.all(problem.quadratic.l_min <= problem.direct_value(theta))


@pytest.mark.parametrize("name", ["lcn-1d-k432-s221", "lcn-2d-k32.23-s21.13", "dense-2.3.3.4.2", "dense-3.4.2"])
def test_quadratic_form_with_fewer_equations_than_unknowns(name, make_model, make_problem, rng):
    """One sample: the patch Gram / ``Sigma_xx`` is singular; the minimiser is the minimum-norm one and
    the value is still the layer-by-layer loss everywhere."""
    model = make_model(name)
    problem = make_problem(model, n_samples=1)
    assert np.linalg.matrix_rank(problem.quadratic.gram) < problem.quadratic.gram.shape[0]
    theta = 0.6 * rng.standard_normal((4, model.n_params))
    np.testing.assert_allclose(problem.value(theta), problem.direct_value(theta), rtol=1e-12)
    assert problem.quadratic.l_min < 1e-28 * np.mean(problem.dataset.targets ** 2)  # interpolates


@pytest.mark.parametrize("name", ["lcn-1d-k432-s221", "lcn-2d-k32.23-s21.13", "dense-2.3.3.4.2", "dense-4.1.3"])
@pytest.mark.parametrize("kind", ["square", "log_cosh"])
def test_function_space_data(name, kind, make_model, rng):
    """Whitened data: the loss is ``1/2 |e - u|^2`` (square), ``sum_i log cosh(e_i - u_i) / E``
    sample by sample with ``E`` samples ``sqrt(E) e_i`` (log_cosh: a check of the data itself)."""
    model = make_model(name)
    u = rng.standard_normal(model.end_to_end_shape)
    data = build_dataset(Section("function_space", FunctionSpaceData.Options(
        target=Section("end_to_end", EndToEndTarget.Options(value=u.tolist())))), model)
    problem = Problem(model, LOSSES[kind](), data)
    theta = 0.8 * rng.standard_normal((2, model.n_params))
    e = model.end_to_end(theta)
    if kind == "square":
        expected = 0.5 * np.sum((e - u[None]).reshape(2, -1) ** 2, axis=1)
        np.testing.assert_allclose(problem.value(theta), expected, rtol=1e-12)
        np.testing.assert_allclose(problem.direct_value(theta), expected, rtol=1e-12)
        np.testing.assert_allclose(problem.end_to_end_loss_and_gradient(e)[1], e - u[None], rtol=1e-12, atol=1e-14)
    else:
        n = data.n_samples  # outputs are sqrt(n) * (e - u) component by component
        if model.name == "dense":
            assert n == model.widths[0]
            res = np.sqrt(n) * (e - u[None])
        else:
            assert n == model.end_to_end_size
            res = np.sqrt(n) * (e - u[None]).reshape(2, -1)
        expected = np.sum(np.log(np.cosh(res)).reshape(2, -1), axis=1) / n
        np.testing.assert_allclose(problem.value(theta), expected, rtol=1e-12)
    # a random end-to-end target is found again as the minimiser
    data = build_dataset(Section("function_space", FunctionSpaceData.Options(
        target=Section("random_end_to_end", RandomEndToEndTarget.Options()), seed=3)), model)
    q = Problem(model, LOSSES["square"](), data).quadratic
    np.testing.assert_allclose(q.gram, np.eye(q.gram.shape[0]), atol=1e-14)
    assert q.l_min < 1e-28


# ---------------------------------------------------------------------------------------------
# the compiled log-cosh: polynomials on |r| < 1, the C library beyond
def _log_cosh_and_tanh_to_80_digits(x: float) -> tuple[float, float]:
    """``log cosh x`` and ``tanh x`` from ``exp(-2 |x|)`` in 80-digit decimal arithmetic (for ``|x| <
    1e-20`` their series, whose next terms are below ``1e-80`` relative), rounded to doubles."""
    from decimal import Decimal, localcontext  # noqa: PLC0415

    with localcontext() as ctx:
        ctx.prec = 80
        d = Decimal(x)
        if abs(d) < Decimal("1e-20"):
            return float(d * d / 2 - d ** 4 / 12), float(d - d ** 3 / 3)
        a = abs(d)
        w = (-2 * a).exp()  # log cosh = a - log 2 + log(1 + w), tanh = sign (1 - w) / (1 + w)
        return float(a - Decimal(2).ln() + (1 + w).ln()), float(Decimal(1).copy_sign(d) * (1 - w) / (1 + w))


def test_compiled_log_cosh_is_within_one_ulp_of_80_digit_values(rng):
    """The kernel's ``residual_loss`` for log-cosh (``lacc += log cosh r``, ``g = tanh r``) against
    80-digit values: within 1 ulp on ``|r| < 1`` (its polynomials, 1.00 and 1.00 ulp measured over
    4,054 points; these 4,026) and beyond (``exp_small``, ``log1p_small``, log 2 in two parts: 1.00
    and 1.00 ulp measured over 34,250 points in [1, 100], 20,000 of them in [1, 1.01], up to and
    past the clamp at 40); tiny ``r`` to full relative precision; NaN
    stays NaN (a divergent run must be seen), ``+-inf`` gives ``inf`` and ``+-1``; the values are
    added to what ``lacc`` held, once. The coefficients are exactly those that
    ``scripts/log_cosh_coefficients.py`` derives from the Taylor series (exact rationals)."""
    import runpy  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from lcnrun.core import _numba_kernels as K  # noqa: PLC0415

    derived = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "log_cosh_coefficients.py"))["coefficients"]()
    assert derived["Q"][0] == K.LOG_COSH_Q and derived["H"][0] == K.TANH_H
    assert derived["Q"][1] < 0.1 and derived["H"][1] < 0.1  # the economization's part of an ulp
    below = np.concatenate([rng.uniform(-1, 1, 3000), np.nextafter(1.0, 0.0) - rng.uniform(0, 1e-9, 20),
                            10.0 ** rng.uniform(-150, 0, 1000) * rng.choice([-1, 1], 1000),
                            [0.0, -0.0, 5e-324, 1e-160, 0.5, -0.999999999999]])
    above = np.concatenate([rng.uniform(1, 20, 100) * rng.choice([-1, 1], 100), 10.0 ** rng.uniform(0, 2.8, 60),
                            rng.uniform(39, 41, 40), rng.uniform(1, 1.5, 40), rng.uniform(1, 1.01, 2000),
                            [1.0023890714858725],  # 2 ulp with log 2 as one double
                            [1.0, -1.0, np.nextafter(1.0, 2.0), 18.5, 19.5, 40.0, -40.0, np.nextafter(40.0, 0.0),
                             350.0, 700.0, 1e300]])
    r = np.concatenate([below, above])
    y = np.zeros_like(r)
    start = rng.standard_normal(r.size)
    lacc, g, t = start.copy(), np.empty_like(r), np.empty_like(r)
    K.residual_loss(K.LOG_COSH, 0.0, r, y, lacc, g, t)
    lacc0, g0 = np.zeros_like(r), np.empty_like(r)
    K.residual_loss(K.LOG_COSH, 0.0, r, y, lacc0, g0, t)
    np.testing.assert_array_equal(lacc, start + lacc0)  # one addition to what lacc held
    np.testing.assert_array_equal(g, g0)
    for x, value, slope in zip(r, lacc0, g0):
        ref_value, ref_slope = _log_cosh_and_tanh_to_80_digits(float(x))
        for got, want in ((value, ref_value), (slope, ref_slope)):
            assert abs(got - want) <= np.spacing(abs(want)) or got == want, (x, got, want)
    bad = np.array([np.nan, np.inf, -np.inf])
    lacc, g = np.zeros(3), np.empty(3)
    K.residual_loss(K.LOG_COSH, 0.0, bad, np.zeros(3), lacc, g, np.empty(3))
    assert np.isnan(lacc[0]) and np.isnan(g[0])
    np.testing.assert_array_equal(lacc[1:], [np.inf, np.inf])
    np.testing.assert_array_equal(g[1:], [1.0, -1.0])


def test_the_vectorised_exp_and_log1p_of_the_log_cosh_kernel_against_80_digit_values(rng):
    """``exp_small`` on [-80, 0] within 1 ulp and ``log1p_small`` on [0, e^-2] within 2 ulp of 80-digit
    values (log-cosh beyond ``|r| = 1``; measured over 20,000 points each: 1.0 and 2.0 ulp, and
    ``log cosh = |r| - log 2 + log1p_small`` within 1.0); ``two_to_the_shifted(n + 1.5 2^52)`` is
    ``2^n`` exactly for every ``n`` of the double exponent (the bits it moves into the exponent field);
    ``fma(a, b, c)`` is ``a b + c`` rounded once (exact rationals), which a multiply and an add are not."""
    from decimal import Decimal, localcontext  # noqa: PLC0415

    import numba  # noqa: PLC0415

    from lcnrun.core import _numba_kernels as K  # noqa: PLC0415

    @numba.njit
    def both(x, u, n, ex, lg, p2):
        for i in range(x.shape[0]):
            ex[i] = K.exp_small(x[i])
        for i in range(u.shape[0]):
            lg[i] = K.log1p_small(u[i])
        for i in range(n.shape[0]):
            p2[i] = K.two_to_the_shifted(n[i] + K.SHIFT)

    x = np.concatenate([-rng.uniform(0, 80, 1500), -rng.uniform(0, 1, 300), [0.0, -80.0, -2.0, -np.log(2) / 2]])
    u = np.concatenate([rng.uniform(0, np.exp(-2), 1500), np.exp(-2) * 10.0 ** -rng.uniform(0, 30, 300),
                        [0.0, np.exp(-2), 5e-324]])
    n = np.arange(-1022.0, 1024.0)
    ex, lg, p2 = np.empty_like(x), np.empty_like(u), np.empty_like(n)
    both(x, u, n, ex, lg, p2)
    np.testing.assert_array_equal(p2, 2.0 ** n)
    from fractions import Fraction  # noqa: PLC0415

    @numba.njit
    def fused(a, b, c, out):
        for i in range(a.shape[0]):
            out[i] = K.fma(a[i], b[i], c[i])

    a, b = rng.standard_normal(2000), rng.standard_normal(2000)
    c = -a * b * (1 + rng.uniform(-1e-8, 1e-8, 2000))  # cancellation: the product's low bits count
    out = np.empty_like(a)
    fused(a, b, c, out)
    exact = [float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(a, b, c)]
    np.testing.assert_array_equal(out, exact)
    assert np.mean(out != a * b + c) > 0.5
    with localcontext() as ctx:
        ctx.prec = 80
        for got, arg, want, ulp in [(g, a, float(Decimal(a).exp()), 1) for g, a in zip(ex, x)] + \
                                   [(g, a, float((1 + Decimal(a)).ln()), 2) for g, a in zip(lg, u)]:
            assert abs(got - want) <= ulp * np.spacing(abs(want)) or got == want, (arg, got, want)
