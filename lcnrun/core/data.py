"""Training data: inputs ``x (N, *input_shape)`` and targets ``y (N, *output_shape)``.

Data kinds (``data.kind``): ``gaussian`` (standard normal inputs, targets from a ``target`` rule),
``file`` (an ``.npz`` with ``X`` and ``Y``) and ``function_space`` (a whitened data set for which the
square loss is exactly ``1/2 |e - u|^2`` in the end-to-end map, the setting of the geometry papers).

Target kinds (``data.target.kind``): ``teacher`` (a network of any architecture whose output shape
fits, default the trained architecture), ``random_end_to_end`` (a random end-to-end map ``u`` of the
trained model's shape, not necessarily in its function space), ``end_to_end`` (an explicit ``u``) and
``gaussian`` (pure noise targets). ``noise`` adds ``N(0, noise^2)`` to every target entry.

All randomness comes from ``data.seed`` through independent ``SeedSequence`` children
(inputs, target, noise), so changing the noise level does not change the inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .models import MODELS, Model
from .npzfile import read_npz_arrays
from .options import OptionError, Section, option


@dataclass(frozen=True)
class Dataset:
    """``inputs (N, *input_shape)``, ``targets (N, *output_shape)``."""

    inputs: np.ndarray
    targets: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.inputs.shape[0])


# ---------------------------------------------------------------------------------------------
# targets
class TeacherTarget:
    name = "teacher"

    @dataclass(frozen=True)
    class Options:
        model: Section | None = option(None, kind="section:models", nullable=True,
                                       doc="teacher architecture (default: the trained one)")
        scale: float = option(1.0, kind="float", check="nonnegative",
                              doc="teacher parameters are scale * N(0, 1)")

    @staticmethod
    def teacher(options, model: Model) -> Model:
        if options.model is None:
            return model
        return MODELS[options.model.kind](options.model.options)

    @classmethod
    def outputs(cls, options, model: Model, x: np.ndarray, rng) -> np.ndarray:
        teacher = cls.teacher(options, model)
        want = model.output_shape(x.shape[1:])
        try:
            got = teacher.output_shape(x.shape[1:])
        except OptionError as err:
            raise OptionError("target.model." + err.key, err.message) from None
        if got != want:
            raise OptionError("target.model", f"teacher output shape {list(got)} does not match the "
                                              f"network's output shape {list(want)}")
        theta = options.scale * rng.standard_normal((1, teacher.n_params))
        return teacher.forward(theta, x)[0]


class RandomEndToEndTarget:
    name = "random_end_to_end"

    @dataclass(frozen=True)
    class Options:
        scale: float = option(1.0, kind="float", check="nonnegative",
                              doc="entries of the target end-to-end map are scale * N(0, 1)")

    @staticmethod
    def outputs(options, model, x, rng):
        u = options.scale * rng.standard_normal((1,) + model.end_to_end_shape)
        return model.predict(u, model.features(x))[0]


class EndToEndTarget:
    name = "end_to_end"

    @dataclass(frozen=True)
    class Options:
        value: tuple = option(kind="array", doc="the target end-to-end filter/matrix u")

    @staticmethod
    def outputs(options, model, x, rng):
        u = np.asarray(options.value, dtype=float)
        if u.shape != model.end_to_end_shape:
            raise OptionError("target.value", f"has shape {list(u.shape)} but the end-to-end map has "
                                              f"shape {list(model.end_to_end_shape)}")
        return model.predict(u[None], model.features(x))[0]


class GaussianTarget:
    name = "gaussian"

    @dataclass(frozen=True)
    class Options:
        scale: float = option(1.0, kind="float", check="nonnegative", doc="targets are scale * N(0, 1)")

    @staticmethod
    def outputs(options, model, x, rng):
        return options.scale * rng.standard_normal((x.shape[0],) + model.output_shape(x.shape[1:]))


TARGETS: dict[str, type] = {
    "teacher": TeacherTarget,
    "random_end_to_end": RandomEndToEndTarget,
    "end_to_end": EndToEndTarget,
    "gaussian": GaussianTarget,
}


def _streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for inputs, target and noise."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))


def _targets(target: Section, model, x, rng_target, rng_noise, noise):
    y = TARGETS[target.kind].outputs(target.options, model, x, rng_target)
    if noise > 0:
        y = y + noise * rng_noise.standard_normal(y.shape)
    return np.asarray(y, dtype=float)


# ---------------------------------------------------------------------------------------------
# data sets
class GaussianData:
    name = "gaussian"

    @dataclass(frozen=True)
    class Options:
        n_samples: int = option(64, kind="int", check="at_least_one", doc="number of samples N")
        input_size: tuple | int | None = option(None, kind="shape", nullable=True,
                                                doc="input length (or [H, W]); default d0 for dense")
        input_scale: float = option(1.0, kind="float", check="positive", doc="inputs are scale * N(0, 1)")
        target: Section = option(Section("teacher", TeacherTarget.Options()), kind="section:targets",
                                 doc="how targets are made")
        noise: float = option(0.0, kind="float", check="nonnegative", doc="std of additive target noise")
        seed: int = option(0, kind="int", check="nonnegative", doc="seed of inputs, target and noise")

    @staticmethod
    def resolve_options(options):
        """One written form: a one-axis ``input_size`` is its int (``[64]`` and ``64`` are one
        data set, one run id)."""
        s = options.input_size
        if isinstance(s, (list, tuple)) and len(s) == 1:
            return replace(options, input_size=int(s[0]))
        return options

    @staticmethod
    def input_shape(options, model) -> tuple[int, ...]:
        if options.input_size is None:
            if model.default_input_shape is not None:
                return model.default_input_shape
            raise OptionError("input_size", f"is required for an {model.name} model (it has no default "
                                            "input shape)")
        s = options.input_size
        return tuple(s) if isinstance(s, (list, tuple)) else (int(s),)

    @classmethod
    def build(cls, options, model: Model) -> Dataset:
        shape = cls.input_shape(options, model)
        model.output_shape(shape)
        rng_x, rng_t, rng_n = _streams(options.seed)
        x = options.input_scale * rng_x.standard_normal((options.n_samples,) + shape)
        return Dataset(x, _targets(options.target, model, x, rng_t, rng_n, options.noise))


class FunctionSpaceData:
    """Whitened inputs ``x_n = sqrt(E) e_n`` (``n = 1..E``), so that ``G = I`` and the square loss is
    ``1/2 |e - u|^2`` with ``u`` the end-to-end map of the target (plus noise)."""

    name = "function_space"

    @dataclass(frozen=True)
    class Options:
        target: Section = option(kind="section:targets", doc="the target end-to-end map u")
        noise: float = option(0.0, kind="float", check="nonnegative", doc="std of additive target noise")
        seed: int = option(0, kind="int", check="nonnegative", doc="seed of target and noise")

    @classmethod
    def build(cls, options, model: Model) -> Dataset:
        x = model.whitened_inputs()
        _, rng_t, rng_n = _streams(options.seed)
        return Dataset(x, _targets(options.target, model, x, rng_t, rng_n, options.noise))


class FileData:
    name = "file"

    @dataclass(frozen=True)
    class Options:
        path: str = option(kind="path", doc="npz file with X (N, d_in) or (N, H, W) and Y")

    @staticmethod
    def build(options, model: Model) -> Dataset:
        x, y = read_npz_arrays(options.path, ["X", "Y"])
        if x.ndim < 2 or y.ndim < 2:
            raise OptionError("path", f"X and Y must have a sample axis and a sample shape, got X "
                                      f"of shape {list(x.shape)} and Y of shape {list(y.shape)}")
        if x.shape[0] == 0:
            raise OptionError("path", "X and Y have no samples (their first axis has length 0)")
        if x.shape[0] != y.shape[0]:
            raise OptionError("path", f"X has {x.shape[0]} samples but Y has {y.shape[0]}")
        want = model.output_shape(x.shape[1:])
        if tuple(y.shape[1:]) != tuple(want):
            raise OptionError("path", f"Y has sample shape {list(y.shape[1:])} but the network maps "
                                      f"X's shape {list(x.shape[1:])} to {list(want)}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise OptionError("path", "X and Y must be finite")
        return Dataset(x, y)


DATA: dict[str, type] = {
    "gaussian": GaussianData,
    "function_space": FunctionSpaceData,
    "file": FileData,
}


def build_dataset(section: Section, model: Model) -> Dataset:
    return DATA[section.kind].build(section.options, model)


def check_dataset(section: Section, model: Model) -> None:
    """Shape checks of a data section against a model without drawing the data (cheap; used by
    ``lcnrun validate``). Raises OptionError with the key relative to the data section."""
    opts = section.options
    if section.kind == "file":
        FileData.build(opts, model)
        return
    if section.kind == "gaussian":
        shape = GaussianData.input_shape(opts, model)
        model.output_shape(shape)
    target = opts.target
    if target.kind == "teacher" and target.options.model is not None:
        teacher = MODELS[target.options.model.kind](target.options.model.options)
        in_shape = (GaussianData.input_shape(opts, model) if section.kind == "gaussian"
                    else model.whitened_inputs().shape[1:])
        want = model.output_shape(in_shape)
        try:
            got = teacher.output_shape(in_shape)
        except OptionError as err:
            raise OptionError("target.model." + err.key, err.message) from None
        if got != want:
            raise OptionError("target.model", f"teacher output shape {list(got)} does not match the "
                                              f"network's output shape {list(want)}")
    if target.kind == "end_to_end":
        u = np.asarray(target.options.value, dtype=float)
        if u.shape != model.end_to_end_shape:
            raise OptionError("target.value", f"has shape {list(u.shape)} but the end-to-end map has "
                                              f"shape {list(model.end_to_end_shape)}")
