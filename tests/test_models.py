"""Models (every family in ``MODELS``), initialisations and data sets, against independent values.

- the end-to-end map against the network run layer by layer, a hand-written loop of the SPEC's
  correlation formula, ``np.correlate``, the polynomial product ``v(z) = W_1(z) W_2(z^{S_1}) ...``
  (``polymul`` in 1-D, evaluation at random points in 2-D) and the size / output-length formulas;
- ``jacobian`` against ``end_to_end_vjp`` and central finite differences, and a Taylor slope;
- the identities behind the conservation laws (``<w_l, g_l>`` independent of ``l`` for an LCN,
  ``W_{l+1}^T G_{l+1} = G_l W_l^T`` for a DLN) and the invariants themselves;
- ``balanced`` / ``gaussian`` / ``explicit`` inits and the ``gaussian`` data (seeds, noise, teacher).
"""
from __future__ import annotations

from functools import reduce

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import polynomial as P

from lcnrun.core.data import (DATA, TARGETS, EndToEndTarget, GaussianData, GaussianTarget,
                              RandomEndToEndTarget, TeacherTarget, build_dataset)
from lcnrun.core.init import INITS, BalancedInit, ExplicitInit, GaussianInit
from lcnrun.core.models.base import balance_filters
from lcnrun.core.models import MODELS, LCN, Dense
from lcnrun.core.options import OptionError, Section


def inner(a, b):
    """``<a_b, b_b>`` per batch member: ``(B, ...) x (B, ...) -> (B,)``."""
    return np.sum(a * b, axis=tuple(range(1, np.ndim(a))))


def relative_error(a, b):
    """``max |a - b| / max |b|``."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def lcn(filters, strides=None):
    return LCN(LCN.Options(filters=tuple(filters), strides=None if strides is None else tuple(strides)))


def dense(widths):
    return Dense(Dense.Options(widths=tuple(widths)))


def cumulative_strides(strides):
    """``S_0 = 1, S_l = s_1 ... s_l`` per axis (each stride a tuple)."""
    S = [tuple(1 for _ in strides[0])]
    for s in strides:
        S.append(tuple(a * b for a, b in zip(S[-1], s)))
    return S


# ---------------------------------------------------------------------------------------------
# coverage of the registry
def test_every_model_family_is_covered(architectures):
    kinds = {kind for kind, _ in architectures.values()}
    assert kinds == set(MODELS), "add an architecture of every registered model to tests/conftest.py"
    lcn_dims = {np.ndim(opts["filters"][0]) for kind, opts in architectures.values() if kind == "lcn"}
    assert lcn_dims == {0, 1}, "LCNs of both 1-D and 2-D filters must be covered"


def test_split_and_join_are_inverse_c_order(arch, make_model, rng):
    model = make_model(arch)
    theta = rng.standard_normal((3, model.n_params))
    layers = model.split(theta)
    assert [w.shape[1:] for w in layers] == list(model.param_shapes)
    assert model.n_params == sum(int(np.prod(s)) for s in model.param_shapes)
    start = 0
    for w in layers:  # layers concatenated in order, each flattened in C order
        n = w[0].size
        np.testing.assert_array_equal(theta[:, start: start + n], w.reshape(3, -1))
        start += n
    np.testing.assert_array_equal(model.join(layers), theta)


# ---------------------------------------------------------------------------------------------
# end-to-end map == the network layer by layer
def test_end_to_end_equals_layer_by_layer(arch, make_model, input_shape, rng):
    model = make_model(arch)
    B, N = 3, 4
    theta = rng.standard_normal((B, model.n_params))
    e = model.end_to_end(theta)
    assert e.shape == (B,) + model.end_to_end_shape
    # LCN: inputs with and without a remainder that the strides skip
    extras = (0, 1, 5) if model.name == "lcn" else (0,)
    for extra in extras:
        shape = tuple(d + extra for d in input_shape(model)) if model.name == "lcn" else input_shape(model)
        x = rng.standard_normal((N,) + shape)
        layer_by_layer = model.forward(theta, x)
        assert layer_by_layer.shape == (B, N) + model.output_shape(shape)
        assert relative_error(model.predict(e, model.features(x)), layer_by_layer) < 1e-12
        for b in range(B):  # batch members are independent runs
            assert relative_error(model.forward(theta[b: b + 1], x)[0], layer_by_layer[b]) < 1e-15


@pytest.mark.parametrize("k, s, d", [(3, 1, 10), (3, 2, 10), (4, 3, 17), (1, 2, 7), (5, 5, 5), (2, 4, 13)])
def test_one_layer_forward_is_the_strided_correlation_1d(k, s, d, rng):
    model = lcn([k], [s])
    w, x = rng.standard_normal(k), rng.standard_normal((2, d))
    out = model.forward(w[None], x)[0]
    n_out = (d - k) // s + 1
    loop = np.array([[sum(w[j] * xn[s * i + j] for j in range(k)) for i in range(n_out)] for xn in x])
    np.testing.assert_allclose(out, loop, rtol=1e-13, atol=0)
    np.testing.assert_allclose(out, [np.correlate(xn, w, mode="valid")[::s] for xn in x], rtol=1e-13, atol=0)


@pytest.mark.parametrize("k, s, d", [((3, 2), (1, 1), (6, 5)), ((3, 3), (2, 1), (9, 7)), ((2, 3), (3, 2), (10, 9))])
def test_one_layer_forward_is_the_strided_correlation_2d(k, s, d, rng):
    model = lcn([k], [s])
    w, x = rng.standard_normal(k), rng.standard_normal((2,) + d)
    out = model.forward(w.reshape(1, -1), x)[0]
    n_out = [(dd - kk) // ss + 1 for dd, kk, ss in zip(d, k, s)]
    loop = np.zeros((2, *n_out))
    for n in range(2):
        for i0 in range(n_out[0]):
            for i1 in range(n_out[1]):
                loop[n, i0, i1] = sum(w[j0, j1] * x[n, s[0] * i0 + j0, s[1] * i1 + j1]
                                      for j0 in range(k[0]) for j1 in range(k[1]))
    np.testing.assert_allclose(out, loop, rtol=1e-13, atol=0)


def test_dense_end_to_end_is_the_matrix_product(dense_arch, make_model, rng):
    model = make_model(dense_arch)
    theta = rng.standard_normal((2, model.n_params))
    for b, layers in enumerate(zip(*model.split(theta))):
        X = reduce(lambda acc, W: W @ acc, layers)  # W_L ... W_1
        assert relative_error(model.end_to_end(theta)[b], X) < 1e-14


# ---------------------------------------------------------------------------------------------
# end-to-end filter == polynomial product
LCN_1D = [([4, 3, 2], [2, 2, 1]), ([3, 3], [1, 1]), ([2, 2, 2], [3, 1, 2]), ([5], [3]), ([2, 3, 4, 2], [1, 2, 3, 2])]


@pytest.mark.parametrize("filters, strides", LCN_1D)
def test_end_to_end_filter_is_the_polynomial_product_1d(filters, strides, rng):
    model = lcn(filters, strides)
    S = [1] + list(np.cumprod(strides))
    k = 1 + sum((kl - 1) * S[l] for l, kl in enumerate(filters))
    assert model.end_to_end_shape == (k,)
    assert model.end_to_end_stride == (S[-1],)
    theta = rng.standard_normal((2, model.n_params))
    v = model.end_to_end(theta)
    for b in range(2):
        product = np.array([1.0])
        for l, w in enumerate(model.split(theta)):
            w_of_z_S = np.zeros(S[l] * (filters[l] - 1) + 1)  # coefficients of W_l(z^{S_{l-1}})
            w_of_z_S[:: S[l]] = w[b]
            product = P.polymul(product, w_of_z_S)
        assert relative_error(v[b], product) < 1e-13


@pytest.mark.parametrize("filters, strides", LCN_1D + [
    ([[3, 3], [2, 2]], [[1, 1], [2, 2]]), ([[3, 2], [2, 3]], [[2, 1], [1, 3]]),
    ([[2, 2], [2, 2], [3, 2]], [[2, 1], [1, 2], [1, 1]])])
def test_end_to_end_filter_evaluates_as_the_polynomial_product(filters, strides, rng):
    """``v(z) = prod_l W_l(z^{S_{l-1}})`` at random complex points of the unit torus (1-D and 2-D)."""
    model = lcn(filters, strides)
    strides_t = [tuple(np.atleast_1d(s)) for s in strides]
    S = cumulative_strides(strides_t)
    D = len(strides_t[0])
    theta = rng.standard_normal((2, model.n_params))
    v = model.end_to_end(theta)
    z = np.exp(2j * np.pi * rng.random((D, 7)))  # 7 random points
    polyval = P.polyval if D == 1 else P.polyval2d
    for b in range(2):
        product = np.ones(z.shape[1], dtype=complex)
        for l, w in enumerate(model.split(theta)):
            product *= polyval(*[z[a] ** S[l][a] for a in range(D)], w[b])
        assert relative_error(polyval(*z, v[b]), product) < 1e-12


@settings(max_examples=60, deadline=None, database=None)
@given(data=st.data(), ndim=st.sampled_from([1, 2]), n_layers=st.integers(1, 3))
def test_output_length_formula(data, ndim, n_layers):
    """floor((d - k)/S_L) + 1 with k = 1 + sum (k_l - 1) S_{l-1} == the layer-by-layer output size."""
    filters = [tuple(data.draw(st.integers(1, 4)) for _ in range(ndim)) for _ in range(n_layers)]
    strides = [tuple(data.draw(st.integers(1, 3)) for _ in range(ndim)) for _ in range(n_layers)]
    d = tuple(data.draw(st.integers(1, 40)) for _ in range(ndim))
    model = lcn(filters if ndim > 1 else [f[0] for f in filters], strides if ndim > 1 else [s[0] for s in strides])
    S = cumulative_strides(strides)
    k = tuple(1 + sum((f[a] - 1) * S[l][a] for l, f in enumerate(filters)) for a in range(ndim))
    assert model.end_to_end_shape == k
    if any(dd < kk for dd, kk in zip(d, k)):
        with pytest.raises(OptionError):
            model.output_shape(d)
        return
    formula = tuple((dd - kk) // S[-1][a] + 1 for a, (dd, kk) in enumerate(zip(d, k)))
    sizes = d
    for f, s in zip(filters, strides):  # layer by layer
        sizes = tuple((n - ff) // ss + 1 for n, ff, ss in zip(sizes, f, s))
    assert sizes == formula
    assert model.output_shape(d) == formula
    x = np.ones((1,) + d)
    theta = np.ones((1, model.n_params))
    assert model.forward(theta, x).shape == (1, 1) + formula
    assert model.predict(model.end_to_end(theta), model.features(x)).shape == (1, 1) + formula


def test_stride_shorthands(rng):
    """``strides`` omitted means all 1; a scalar stride of a D-dim layer applies to every axis."""
    default, ones = lcn([3, 2]), lcn([3, 2], [1, 1])
    assert default.strides == ones.strides == [(1,), (1,)]
    two_d_scalar = lcn([(3, 2), (2, 2)], [2, 1])
    two_d = lcn([(3, 2), (2, 2)], [(2, 2), (1, 1)])
    assert two_d_scalar.strides == two_d.strides and two_d_scalar.end_to_end_shape == two_d.end_to_end_shape
    theta = rng.standard_normal((2, two_d.n_params))
    x = rng.standard_normal((3, 9, 8))
    np.testing.assert_array_equal(two_d_scalar.forward(theta, x), two_d.forward(theta, x))
    with pytest.raises(OptionError):
        lcn([3, 2], [1])  # one stride per layer
    with pytest.raises(OptionError):
        lcn([(3, 2), (2,)])  # every filter has the same number of axes


# ---------------------------------------------------------------------------------------------
# Jacobian, its transpose and the pull-backs
def test_jacobian_agrees_with_vjp_and_finite_differences(arch, make_model, rng, taylor_slope):
    model = make_model(arch)
    B = 2
    theta = rng.standard_normal((B, model.n_params))
    J = model.jacobian(theta)
    assert J.shape == (B, model.end_to_end_size, model.n_params)
    g = rng.standard_normal((B,) + model.end_to_end_shape)
    vjp = model.end_to_end_vjp(theta, g)
    assert relative_error(np.einsum("bep,be->bp", J, g.reshape(B, -1)), vjp) < 1e-12
    e, pullback = model.end_to_end_with_pullback(theta)
    np.testing.assert_array_equal(e, model.end_to_end(theta))
    assert relative_error(pullback(g), vjp) < 1e-14
    # every column by central differences: error h^2 |d^3 e| ~ 1e-10
    h = 1e-5
    fd = np.empty_like(J)
    for p in range(model.n_params):
        step = np.zeros(model.n_params)
        step[p] = h
        fd[:, :, p] = (model.end_to_end(theta + step) - model.end_to_end(theta - step)).reshape(B, -1) / (2 * h)
    assert relative_error(fd, J) < 1e-8
    # Taylor slope of theta -> <g, e(theta)>, gradient J^T g
    pairing = lambda t: float(np.sum(g[0] * model.end_to_end(t[None])[0]))  # noqa: E731
    if model.n_layers == 1:  # e is linear: the first-order Taylor expansion is exact
        u = rng.standard_normal(model.n_params)
        assert abs(pairing(theta[0] + u) - pairing(theta[0]) - vjp[0] @ u) < 1e-13 * np.sum(np.abs(g)) * 10
        return
    for grad in (vjp[0], J[0].T @ g[0].ravel()):  # J^T g from the pull-back and from the Jacobian
        slope, _, _ = taylor_slope(pairing, theta[0], grad, rng)
        assert abs(slope - 2) < 0.01


def test_taylor_slope_detects_a_wrong_gradient(make_model, rng, taylor_slope):
    """The check of the tests above can fail: a gradient off by 0.1% gives slope 1."""
    model = make_model("lcn-1d-k432-s221")
    theta = rng.standard_normal(model.n_params)
    g = rng.standard_normal(model.end_to_end_shape)
    grad = model.end_to_end_vjp(theta[None], g[None])[0] * 1.001
    slope, _, _ = taylor_slope(lambda t: float(np.sum(g * model.end_to_end(t[None])[0])), theta, grad, rng)
    assert abs(slope - 1) < 0.05


def test_predict_vjp_is_the_adjoint_of_predict(arch, make_model, input_shape, rng):
    model = make_model(arch)
    x = rng.standard_normal((4,) + input_shape(model))
    F = model.features(x)
    e = rng.standard_normal((2,) + model.end_to_end_shape)
    r = rng.standard_normal((2, 4) + model.output_shape(x.shape[1:]))
    lhs = inner(model.predict(e, F), r)
    rhs = inner(e, model.predict_vjp(F, r))
    assert relative_error(lhs, rhs) < 1e-12


def test_layer_gradients_satisfy_the_conservation_identities(arch, make_model, rng):
    """LCN: ``<w_l, g_l> = <e, grad_e>`` for every l (each layer enters linearly). DLN:
    ``W_{l+1}^T G_{l+1} = G_l W_l^T``. These make ``delta`` / ``W_{l+1}^T W_{l+1} - W_l W_l^T``
    conserved by gradient flow and change by exactly ``lr^2 (...)`` per descent step."""
    model = make_model(arch)
    theta = rng.standard_normal((2, model.n_params))
    ge = rng.standard_normal((2,) + model.end_to_end_shape)
    W, G = model.split(theta), model.split(model.end_to_end_vjp(theta, ge))
    euler = inner(model.end_to_end(theta), ge)
    for w, g in zip(W, G):
        assert relative_error(inner(w, g), euler) < 1e-12
    if model.name == "dense":
        for l in range(model.n_layers - 1):
            lhs = np.swapaxes(W[l + 1], 1, 2) @ G[l + 1]
            assert relative_error(lhs, G[l] @ np.swapaxes(W[l], 1, 2)) < 1e-12


def test_invariants(arch, make_model, rng):
    model = make_model(arch)
    theta = rng.standard_normal((2, model.n_params))
    inv = model.invariants(theta)
    W = model.split(theta)
    if model.name == "lcn":
        norms = np.stack([np.sum(w.reshape(2, -1) ** 2, axis=1) for w in W], axis=1)
        expected = norms[:, :-1] - norms[:, 1:]
    else:
        mats = [np.einsum("bki,bkj->bij", W[l + 1], W[l + 1]) - np.einsum("bik,bjk->bij", W[l], W[l])
                for l in range(model.n_layers - 1)]
        expected = np.concatenate([m.reshape(2, -1) for m in mats], axis=1) if mats else np.zeros((2, 0))
        balancedness = np.sqrt(sum(np.sum(m ** 2, axis=(1, 2)) for m in mats)) if mats else np.zeros(2)
        np.testing.assert_allclose(inv["balancedness"], balancedness, rtol=1e-13)
    assert inv["invariants"].shape == expected.shape
    np.testing.assert_allclose(inv["invariants"], expected, rtol=1e-12, atol=1e-13 * np.max(theta ** 2))


# ---------------------------------------------------------------------------------------------
# initialisations
@pytest.mark.parametrize("widths", [[3, 3, 3], [3, 5, 2, 4], [4, 2, 6], [2, 7, 7, 1], [5, 3]])
def test_balanced_init_dln(widths):
    model = dense(widths)
    theta = BalancedInit.build(BalancedInit.Options(scale=0.7, seed=3), model)
    assert theta.shape == (1, model.n_params)
    W = [w[0] for w in model.split(theta)]
    scale = max(np.sum(w ** 2) for w in W)
    for p in range(len(W) - 1):
        np.testing.assert_allclose(W[p + 1].T @ W[p + 1], W[p] @ W[p].T, rtol=0, atol=1e-12 * scale)
    assert model.invariants(theta)["balancedness"][0] < 1e-12 * scale
    # at a balanced point every layer has the singular values sigma_i(X)^(1/L)
    r = min(widths)
    sigma_X = np.linalg.svd(model.end_to_end(theta)[0], compute_uv=False)[:r]
    for w in W:
        np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False)[:r], sigma_X ** (1 / len(W)), rtol=1e-10)


@pytest.mark.parametrize("name", ["lcn-1d-k432-s221", "lcn-2d-k32.23-s21.13", "lcn-1d-k3-s2"])
def test_balanced_init_lcn(name, make_model, rng):
    model = make_model(name)
    opts = dict(scale=0.8, seed=5)
    theta = BalancedInit.build(BalancedInit.Options(**opts), model)
    raw = GaussianInit.build(GaussianInit.Options(**opts), model)  # the same draw, not rescaled
    norms = model.layer_norms_sq(theta)
    np.testing.assert_allclose(model.invariants(theta)["invariants"], 0, atol=1e-14 * norms.max())
    assert relative_error(model.end_to_end(theta), model.end_to_end(raw)) < 1e-13
    # on a batch too: delta = 0, v unchanged, each layer a positive multiple of the original
    raw = rng.standard_normal((3, model.n_params))
    bal = balance_filters(model, raw)
    np.testing.assert_allclose(model.invariants(bal)["invariants"], 0, atol=1e-13 * model.layer_norms_sq(bal).max())
    assert relative_error(model.end_to_end(bal), model.end_to_end(raw)) < 1e-13
    for w, w0 in zip(model.split(bal), model.split(raw)):
        c = np.sum(w * w0, axis=tuple(range(1, w.ndim))) / np.sum(w0 * w0, axis=tuple(range(1, w.ndim)))
        assert np.all(c > 0)
        np.testing.assert_allclose(w, c.reshape((-1,) + (1,) * (w.ndim - 1)) * w0, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", ["gaussian", "balanced"])
def test_random_inits_follow_their_seed(kind, arch, make_model):
    model = make_model(arch)
    cls = INITS[kind]
    a = cls.build(cls.Options(scale=0.5, seed=1), model)
    b = cls.build(cls.Options(scale=0.5, seed=1), model)
    c = cls.build(cls.Options(scale=0.5, seed=2), model)
    assert a.shape == (1, model.n_params)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_gaussian_init_scale(make_model):
    model = make_model("dense-2.3.3.4.2")
    theta = GaussianInit.build(GaussianInit.Options(scale=0.3, seed=0), model)
    one = GaussianInit.build(GaussianInit.Options(scale=1.0, seed=0), model)
    np.testing.assert_allclose(theta, 0.3 * one, rtol=1e-15)


def test_explicit_init_places_the_layers(arch, make_model, rng):
    model = make_model(arch)
    layers = [rng.standard_normal(s) for s in model.param_shapes]
    theta = ExplicitInit.build(ExplicitInit.Options(layers=tuple(w.tolist() for w in layers)), model)
    for w, got in zip(layers, model.split(theta)):
        np.testing.assert_array_equal(got[0], w)
    with pytest.raises(OptionError):
        ExplicitInit.build(ExplicitInit.Options(layers=tuple(w.tolist() for w in layers[:-1])), model)


# ---------------------------------------------------------------------------------------------
# data
def gaussian_data(model, input_shape, *, seed=0, noise=0.0, target=None, n=6):
    target = target if target is not None else Section("teacher", TeacherTarget.Options())
    return build_dataset(Section("gaussian", GaussianData.Options(
        n_samples=n, input_size=input_shape, target=target, noise=noise, seed=seed)), model)


def test_data_seeds_and_noise(arch, make_model, input_shape):
    model = make_model(arch)
    shape = input_shape(model)
    a, b = gaussian_data(model, shape, seed=4), gaussian_data(model, shape, seed=4)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.targets, b.targets)
    c = gaussian_data(model, shape, seed=5)
    assert not np.allclose(a.inputs, c.inputs) and not np.allclose(a.targets, c.targets)
    assert a.inputs.shape == (6,) + shape and a.targets.shape == (6,) + model.output_shape(shape)
    # the noise level changes neither the inputs nor the clean targets, only adds noise
    n1, n2 = gaussian_data(model, shape, seed=4, noise=0.1), gaussian_data(model, shape, seed=4, noise=0.2)
    np.testing.assert_array_equal(n1.inputs, a.inputs)
    np.testing.assert_array_equal(n2.inputs, a.inputs)
    np.testing.assert_allclose(n2.targets - a.targets, 2 * (n1.targets - a.targets), rtol=1e-12, atol=1e-14)
    assert np.std(n1.targets - a.targets) > 0.02


def test_teacher_targets_are_the_teacher_network_outputs(arch, make_model, input_shape):
    """The teacher's parameters are ``scale * N(0, 1)`` from the target stream of ``data.seed``
    (the second ``SeedSequence`` child: inputs, target, noise)."""
    model = make_model(arch)
    data = gaussian_data(model, input_shape(model), seed=7,
                         target=Section("teacher", TeacherTarget.Options(scale=0.5)))
    rng_target = np.random.default_rng(np.random.SeedSequence(7).spawn(3)[1])
    theta_teacher = 0.5 * rng_target.standard_normal((1, model.n_params))
    assert relative_error(data.targets, model.forward(theta_teacher, data.inputs)[0]) < 1e-14


def test_teacher_of_another_architecture(rng):
    """A rank-2 DLN teacher for a wider student: the targets are a rank-2 linear map of the inputs."""
    student = dense([4, 5, 3])
    teacher = Section("dense", Dense.Options(widths=(4, 2, 3)))
    data = gaussian_data(student, (4,), n=12, target=Section("teacher", TeacherTarget.Options(model=teacher)))
    X, res, rank, _ = np.linalg.lstsq(data.inputs, data.targets, rcond=None)
    assert np.max(np.abs(data.inputs @ X - data.targets)) < 1e-12 * np.max(np.abs(data.targets))
    s = np.linalg.svd(X, compute_uv=False)
    assert s[2] < 1e-12 * s[0] and s[1] > 1e-3 * s[0]
    # an LCN teacher whose output size differs is refused
    with pytest.raises(OptionError):
        gaussian_data(lcn([3]), (8,), target=Section("teacher", TeacherTarget.Options(
            model=Section("lcn", LCN.Options(filters=(2,))))))


def one_layer_design_matrix(model, x):
    """Columns: the outputs (all samples, flattened) of the one-layer network with end-to-end map
    ``e_j`` (unit vectors), i.e. ``y = A vec(u)`` for the end-to-end map ``u``."""
    one_layer = (dense([model.widths[0], model.widths[-1]]) if model.name == "dense"
                 else lcn([model.end_to_end_shape], [model.end_to_end_stride]))
    E = model.end_to_end_size
    return np.stack([one_layer.forward(np.eye(E)[j: j + 1], x)[0].ravel() for j in range(E)], axis=1)


def test_end_to_end_targets(arch, make_model, input_shape, rng):
    """``end_to_end`` targets are the outputs of the single correlation / matrix ``u`` (a one-layer
    network of the end-to-end size and stride); ``random_end_to_end`` targets are such outputs too."""
    model = make_model(arch)
    shape = input_shape(model)
    u = rng.standard_normal(model.end_to_end_shape)
    data = gaussian_data(model, shape, target=Section("end_to_end", EndToEndTarget.Options(value=u.tolist())))
    A = one_layer_design_matrix(model, data.inputs)
    assert relative_error(data.targets.ravel(), A @ u.ravel()) < 1e-13
    data = gaussian_data(model, shape, seed=2, target=Section("random_end_to_end", RandomEndToEndTarget.Options()))
    A = one_layer_design_matrix(model, data.inputs)
    u_fit = np.linalg.lstsq(A, data.targets.ravel(), rcond=None)[0]
    assert relative_error(A @ u_fit, data.targets.ravel()) < 1e-12
    with pytest.raises(OptionError):
        gaussian_data(model, shape, target=Section("end_to_end", EndToEndTarget.Options(value=(1.0, 2.0))))


@pytest.mark.parametrize("kind", list(TARGETS))
def test_every_target_kind_follows_its_seed(kind, make_model, input_shape, rng):
    model = make_model("lcn-1d-k432-s221")
    shape = input_shape(model)
    cls = TARGETS[kind]
    opts = (cls.Options(value=tuple(rng.standard_normal(model.end_to_end_shape))) if kind == "end_to_end"
            else cls.Options())
    a, b, c = (gaussian_data(model, shape, seed=s, target=Section(kind, opts)) for s in (0, 0, 1))
    assert a.targets.shape == (6,) + model.output_shape(shape)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.allclose(a.targets, c.targets)  # (new inputs at least)


def test_gaussian_targets_are_scaled_noise(make_model):
    model = make_model("dense-3.4.2")
    one, two = (gaussian_data(model, (3,), n=400, target=Section("gaussian", GaussianTarget.Options(scale=s)))
                for s in (1.0, 2.0))
    np.testing.assert_allclose(two.targets, 2 * one.targets, rtol=1e-15)
    np.testing.assert_array_equal(one.inputs, two.inputs)
    assert abs(np.std(one.targets) - 1) < 0.1 and abs(np.mean(one.targets)) < 0.1
    # not a function of the inputs: no linear fit explains them
    fit = np.linalg.lstsq(one.inputs, one.targets, rcond=None)[0]
    assert np.mean((one.inputs @ fit - one.targets) ** 2) > 0.9 * np.mean(one.targets ** 2)


@pytest.mark.parametrize("kind", list(DATA))
def test_every_data_kind_builds_consistent_data(kind, make_model, input_shape, tmp_path):
    """Every data kind gives inputs the model accepts and targets of its output shape; a ``file``
    data set is read back exactly; ``function_space`` inputs are ``sqrt(E)`` times the unit maps."""
    model = make_model("lcn-2d-k33.22-s11.22")
    cls = DATA[kind]
    if kind == "gaussian":
        opts = cls.Options(n_samples=3, input_size=input_shape(model))
    elif kind == "function_space":
        opts = cls.Options(target=Section("random_end_to_end", RandomEndToEndTarget.Options()))
    elif kind == "file":
        source = gaussian_data(model, input_shape(model), seed=9)
        np.savez(tmp_path / "d.npz", X=source.inputs, Y=source.targets)
        opts = cls.Options(path=str(tmp_path / "d.npz"))
    else:
        pytest.fail(f"add a case for the data kind {kind!r}")
    data = build_dataset(Section(kind, opts), model)
    assert data.targets.shape == (data.n_samples,) + model.output_shape(data.inputs.shape[1:])
    if kind == "file":
        np.testing.assert_array_equal(data.inputs, source.inputs)
        np.testing.assert_array_equal(data.targets, source.targets)
    if kind == "function_space":
        E = model.end_to_end_size
        np.testing.assert_array_equal(data.inputs.reshape(E, E), np.sqrt(E) * np.eye(E))
