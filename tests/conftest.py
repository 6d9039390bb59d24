"""Shared fixtures of the core tests: a table of architectures (every registered model family),
small problems built from them, and the Taylor-remainder slope of a gradient check.

A test that takes an argument named ``arch`` runs once per entry of :data:`ARCHITECTURES`
(``lcn_arch`` / ``dense_arch``: once per entry of that family). The helpers are fixtures
(``make_model``, ``make_problem``, ``input_shape``, ``taylor_slope``) so that test files never import
this module.
"""
from __future__ import annotations

import numpy as np
import pytest

from lcnrun.core.data import GaussianData, TeacherTarget, build_dataset
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import MODELS
from lcnrun.core.options import Section
from lcnrun.core.problem import Problem

#: name -> (model kind, options); test_models checks that every key of ``MODELS`` appears
ARCHITECTURES = {
    "lcn-1d-k33-s11": ("lcn", dict(filters=(3, 3), strides=(1, 1))),
    "lcn-1d-k432-s221": ("lcn", dict(filters=(4, 3, 2), strides=(2, 2, 1))),
    "lcn-1d-k222-s312": ("lcn", dict(filters=(2, 2, 2), strides=(3, 1, 2))),
    "lcn-1d-k3-s2": ("lcn", dict(filters=(3,), strides=(2,))),
    "lcn-2d-k33.22-s11.22": ("lcn", dict(filters=((3, 3), (2, 2)), strides=((1, 1), (2, 2)))),
    "lcn-2d-k32.23-s21.13": ("lcn", dict(filters=((3, 2), (2, 3)), strides=((2, 1), (1, 3)))),
    "dense-3.4.2": ("dense", dict(widths=(3, 4, 2))),
    "dense-2.3.3.4.2": ("dense", dict(widths=(2, 3, 3, 4, 2))),
    "dense-4.1.3": ("dense", dict(widths=(4, 1, 3))),
    "dense-3.2": ("dense", dict(widths=(3, 2))),
}


def pytest_generate_tests(metafunc):
    """``arch``: every architecture; ``lcn_arch`` / ``dense_arch``: those of one family."""
    for argname, kinds in (("arch", None), ("lcn_arch", ("lcn",)), ("dense_arch", ("dense",))):
        if argname in metafunc.fixturenames:
            metafunc.parametrize(argname, [name for name, (kind, _) in ARCHITECTURES.items()
                                           if kinds is None or kind in kinds])


def model_of(name: str):
    kind, opts = ARCHITECTURES[name]
    return MODELS[kind](MODELS[kind].Options(**opts))


def _lcn_test_input(model) -> tuple[int, ...]:
    """An input with 3 outputs per axis plus a remainder that the stride skips (so ``floor`` matters)."""
    k, S = model.end_to_end_shape, model.end_to_end_stride
    return tuple(kk + 2 * ss + (ss - 1) for kk, ss in zip(k, S))


#: families whose tests want a richer input shape than the generic one (by registry name)
TEST_INPUT_SHAPES = {"lcn": _lcn_test_input}


def input_shape_of(model) -> tuple[int, ...]:
    """The family's test input (:data:`TEST_INPUT_SHAPES`), else its default input shape, else the
    shape of its whitened inputs (every family has one that fits)."""
    if model.name in TEST_INPUT_SHAPES:
        return TEST_INPUT_SHAPES[model.name](model)
    if model.default_input_shape is not None:
        return model.default_input_shape
    return model.whitened_inputs().shape[1:]


def problem_of(model, loss: str = "square", loss_options=None, *, n_samples: int = 5, noise: float = 0.3,
               seed: int = 0) -> Problem:
    """Gaussian inputs, targets from a teacher of the same architecture plus ``noise``."""
    data = Section("gaussian", GaussianData.Options(
        n_samples=n_samples, input_size=input_shape_of(model),
        target=Section("teacher", TeacherTarget.Options(scale=0.6)), noise=noise, seed=seed))
    cls = LOSSES[loss]
    return Problem(model, cls(loss_options if loss_options is not None else cls.Options()),
                   build_dataset(data, model))


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture
def architectures():
    return ARCHITECTURES


@pytest.fixture
def make_model():
    return model_of


@pytest.fixture
def make_problem():
    return problem_of


@pytest.fixture
def input_shape():
    return input_shape_of


@pytest.fixture(name="taylor_slope")
def taylor_slope_fixture():
    return taylor_slope


def taylor_slope(f, x, grad, rng, *, points: int = 9, tries: int = 8):
    """Log-log slope of the Taylor remainder ``r(h) = |f(x + h u) - f(x) - h <grad, u>|``.

    ``f`` maps a point ``x`` (any shape) to a scalar and ``grad`` is the analytic gradient at ``x``:
    if it is right, ``r(h) = O(h^2)`` and the slope is 2 (if it is wrong, ``r(h) ~ h``: slope 1).
    The unit direction ``u`` is the one of largest curvature ``|f(x+hu) + f(x-hu) - 2 f(x)|`` among
    ``tries`` random draws, so that the ``h^2`` term is not accidentally tiny (a random direction of
    an indefinite Hessian can make it vanish and the cubic term take over). ``h`` runs over
    ``10^0 .. 10^-8`` in quarter decades; the slope is fitted over the ``points`` smallest
    consecutive ``h`` (two decades) whose remainder is far above the rounding error of ``f``.
    Returns ``(slope, hs, remainders)`` of the fitted window.
    """
    x = np.asarray(x, dtype=float)
    f0 = f(x)

    def curvature(u, h=1e-3):
        return abs(f(x + h * u) + f(x - h * u) - 2 * f0)

    draws = [u / np.linalg.norm(u) for u in rng.standard_normal((tries,) + x.shape)]
    u = max(draws, key=curvature)
    slope_u = float(np.sum(grad * u))
    hs = np.logspace(0, -8, 33)
    rem = np.array([abs(f(x + h * u) - f0 - h * slope_u) for h in hs])
    clean = rem > 1e4 * np.finfo(float).eps * max(1.0, abs(f0))
    end = next((i for i in range(len(hs), points - 1, -1) if clean[i - points: i].all()), None)
    assert end is not None, f"no window of {points} clean remainders: {rem}"
    window = slice(end - points, end)
    slope = np.polyfit(np.log(hs[window]), np.log(rem[window]), 1)[0]
    return slope, hs[window], rem[window]
