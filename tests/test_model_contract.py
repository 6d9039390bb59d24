"""The parts of the model contract that differ between families (item 9 of
:mod:`lcnrun.core.models.base`), checked on every registered family (``arch`` runs once per entry of
tests/conftest.py's ARCHITECTURES, which covers every key of ``MODELS``) against independent values:

- ``symmetry_tangent``: ``J T = 0`` (the orbit keeps ``e``), and the orbit is at most the fiber;
- ``expected_rank``: the numerical rank of ``J`` at a random point;
- ``whitened_inputs``: with them the loss computed layer by layer (``forward``) is ``1/2 |e - u|^2``;
- ``balanced_point``: every conserved quantity of gradient flow is zero there (balanced);
- ``data_gram``: ``F^T F / N`` (``F`` built column by column from ``predict``) is ``I kron data_gram``;
- ``output_factor``: ``M^T M = F^T F``;
- ``polynomial_spacings``: ``e`` is the product of the upsampled layer polynomials (numpy.convolve);
- ``chain_program``: the compiled loss and gradient equal the numpy ones;
- ``default_input_shape`` fits the model; ``label`` names the family; the declared names are set.
"""
from __future__ import annotations

import numpy as np
import pytest

from lcnrun.core.models import MODELS, Model


def _F(model, x):
    """``F (QN, E)``: the outputs of all samples as a linear map of the flattened ``e``."""
    E = model.end_to_end_size
    return model.predict(np.eye(E).reshape((E,) + model.end_to_end_shape), model.features(x)).reshape(E, -1).T


def test_every_family_declares_its_names():
    for kind, family in MODELS.items():
        assert issubclass(family, Model) and family.name == kind
        assert family.symmetry_group in ("GL", "rescaling"), kind
        assert family.gram_name, kind
        assert not getattr(family, "__abstractmethods__", None), f"{kind} leaves {family.__abstractmethods__}"


def test_symmetry_tangent_keeps_e_and_stays_in_the_fiber(arch, make_model, rng):
    model = make_model(arch)
    theta = rng.standard_normal(model.n_params)
    T = model.symmetry_tangent(theta)
    assert T.shape[0] == model.n_params
    J = model.jacobian(theta[None])[0]
    if T.shape[1]:
        np.testing.assert_allclose(J @ T, 0.0, atol=1e-12 * max(1.0, float(np.abs(J).max() * np.abs(T).max())))
    rank_T = np.linalg.matrix_rank(T) if T.shape[1] else 0
    assert rank_T <= model.n_params - model.expected_rank()


def test_expected_rank_is_the_rank_at_a_random_point(arch, make_model, rng):
    model = make_model(arch)
    J = model.jacobian(rng.standard_normal((1, model.n_params)))[0]
    assert np.linalg.matrix_rank(J) == model.expected_rank()


def test_whitened_inputs_make_the_loss_the_distance_of_end_to_end_maps(arch, make_model, rng):
    model = make_model(arch)
    x = model.whitened_inputs()
    theta, teacher = rng.standard_normal((2, model.n_params))
    y = model.forward(teacher[None], x)[0]
    f = model.forward(theta[None], x)[0]
    loss = 0.5 * np.sum((f - y) ** 2) / x.shape[0]
    d = model.end_to_end(theta[None]) - model.end_to_end(teacher[None])
    np.testing.assert_allclose(loss, 0.5 * np.sum(d ** 2), rtol=1e-12)


def test_balanced_point_is_balanced_and_reproducible(arch, make_model):
    model = make_model(arch)
    theta = model.balanced_point(np.random.default_rng(3), 0.7)
    assert theta.shape == (1, model.n_params)
    again = model.balanced_point(np.random.default_rng(3), 0.7)
    np.testing.assert_array_equal(theta, again)
    inv = model.invariants(theta)["invariants"]
    np.testing.assert_allclose(inv, 0.0, atol=1e-13 * max(1.0, float(np.sum(theta ** 2))))


def test_data_gram_is_the_block_of_the_square_loss_gram(arch, make_model, input_shape, rng):
    model = make_model(arch)
    x = rng.standard_normal((7,) + tuple(input_shape(model)))
    F = _F(model, x)
    S = model.data_gram(model.features(x))
    n = S.shape[0]
    assert model.end_to_end_size % n == 0
    np.testing.assert_allclose(F.T @ F / len(x), np.kron(np.eye(model.end_to_end_size // n), S),
                               rtol=1e-12, atol=1e-12)


def test_output_factor_has_the_gram_of_the_outputs(arch, make_model, input_shape, rng):
    model = make_model(arch)
    x = rng.standard_normal((4,) + tuple(input_shape(model)))
    F = _F(model, x)
    M = model.output_factor(x)
    assert M.shape == (min(F.shape), model.end_to_end_size)
    np.testing.assert_allclose(M.T @ M, F.T @ F, rtol=1e-12, atol=1e-12)


def test_polynomial_spacings_give_the_end_to_end_polynomial(arch, make_model, rng):
    model = make_model(arch)
    spacings = model.polynomial_spacings()
    if spacings is None:
        pytest.skip(f"{arch}: e is not a product of univariate layer polynomials")
    theta = rng.standard_normal((1, model.n_params))
    v = np.ones(1)
    for w, S in zip(model.split(theta), spacings):
        up = np.zeros((w.size - 1) * S + 1)
        up[::S] = w.ravel()
        v = np.convolve(v, up)
    np.testing.assert_allclose(model.end_to_end(theta)[0].ravel(), v, rtol=1e-12, atol=1e-12)


def test_chain_program_gives_the_numpy_loss_and_gradient(arch, make_model, make_problem, rng):
    from lcnrun.core import kernels

    model = make_model(arch)
    problem = make_problem(model, "square")
    theta = rng.standard_normal((3, model.n_params))
    program, forms = problem.compiled(3)
    loss, grad = kernels.value_and_grad(program, forms, theta)
    e, pullback = model.end_to_end_with_pullback(theta)
    ref_loss, ge = problem.quadratic.value_and_gradient(e)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, pullback(ge), rtol=1e-10, atol=1e-12)


def test_default_input_shape_fits_and_label_names_the_family(arch, make_model):
    model = make_model(arch)
    if model.default_input_shape is not None:
        model.output_shape(model.default_input_shape)
    assert model.label().startswith(model.name + " ")
