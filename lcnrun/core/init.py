"""Initial parameters ``theta0`` of shape ``(1, P)`` (see :class:`lcnrun.core.models.Model`).

=============  ==========================================================================
kind           what it draws
=============  ==========================================================================
gaussian       every entry ``scale * N(0, 1)``, from ``seed``
balanced       a balanced point (:meth:`~lcnrun.core.models.Model.balanced_point`). DLN: ``W_p = U_p S^{1/L} U_{p-1}^T`` from the SVD of a random
               ``scale * N(0,1)`` end-to-end matrix (``U_p`` random orthonormal columns), so
               ``W_{p+1}^T W_{p+1} = W_p W_p^T``. LCN: a gaussian draw whose filters are rescaled to
               a common norm (the geometric mean), so every ``delta_l = 0`` and ``v`` is unchanged.
file           ``layer_0 .. layer_{L-1}`` from an ``.npz``
explicit       the layers written in the spec
=============  ==========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models import Model
from .npzfile import read_npz_arrays
from .options import OptionError, option


class GaussianInit:
    name = "gaussian"

    @dataclass(frozen=True)
    class Options:
        scale: float = option(0.1, kind="float", check="nonnegative", doc="std of every entry")
        seed: int = option(0, kind="int", check="nonnegative", doc="seed of the draw")

    @staticmethod
    def build(options, model: Model) -> np.ndarray:
        rng = np.random.default_rng(options.seed)
        return options.scale * rng.standard_normal((1, model.n_params))


class BalancedInit:
    name = "balanced"

    @dataclass(frozen=True)
    class Options:
        scale: float = option(0.1, kind="float", check="nonnegative",
                              doc="DLN: std of the random end-to-end matrix; LCN: std of the filters")
        seed: int = option(0, kind="int", check="nonnegative", doc="seed of the draw")

    @staticmethod
    def build(options, model: Model) -> np.ndarray:
        return model.balanced_point(np.random.default_rng(options.seed), options.scale)


def _check_layers(model: Model, arrays: list[np.ndarray], where: str) -> np.ndarray:
    if len(arrays) != model.n_layers:
        raise OptionError(where, f"has {len(arrays)} layers but the model has {model.n_layers}")
    for l, (a, shape) in enumerate(zip(arrays, model.param_shapes)):
        if a.shape != shape:
            raise OptionError(f"{where}[{l}]" if where == "layers" else where,
                              f"layer_{l} has shape {list(a.shape)} but the model needs {list(shape)}")
        if not np.all(np.isfinite(a)):
            raise OptionError(where, f"layer_{l} is not finite")
    return model.join([a[None] for a in arrays])


class FileInit:
    name = "file"

    @dataclass(frozen=True)
    class Options:
        path: str = option(kind="path", doc="npz with layer_0 .. layer_{L-1}")

    @staticmethod
    def build(options, model: Model) -> np.ndarray:
        arrays = read_npz_arrays(options.path, [f"layer_{l}" for l in range(model.n_layers)])
        return _check_layers(model, arrays, "path")


class ExplicitInit:
    name = "explicit"

    @dataclass(frozen=True)
    class Options:
        layers: tuple = option(kind="array_list", doc="one (nested) list of numbers per layer")

    @staticmethod
    def build(options, model: Model) -> np.ndarray:
        return _check_layers(model, [np.asarray(a, dtype=float) for a in options.layers], "layers")


INITS: dict[str, type] = {
    "gaussian": GaussianInit,
    "balanced": BalancedInit,
    "file": FileInit,
    "explicit": ExplicitInit,
}


def build_init(section, model: Model) -> np.ndarray:
    return INITS[section.kind].build(section.options, model)
