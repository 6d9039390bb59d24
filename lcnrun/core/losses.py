"""Per-sample losses ``loss(p, y)`` of a prediction ``p`` against a target ``y``, summed over the
output components; the training loss is their mean over the ``N`` samples:
``L(theta) = (1/N) sum_n loss(f(x_n), y_n)``.

=============  ==========================================================  =====================
kind           loss(p, y) with r = p - y                                    options
=============  ==========================================================  =====================
square         ``1/2 |r|^2``                                                -
lp             ``(1/p) sum_i |r_i|^p``  (``p = 2`` is ``square``)           ``p >= 1``
pseudo_huber   ``delta^2 sum_i (sqrt(1 + (r_i/delta)^2) - 1)``              ``delta > 0``
log_cosh       ``sum_i log cosh(r_i)``                                      -
=============  ==========================================================  =====================

The square loss is never evaluated sample by sample during training: it is a quadratic in the
end-to-end map (see :meth:`lcnrun.core.models.Model.square_loss_statistics`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .options import option


class Loss:
    """A separable loss: ``pointwise(r)`` and its derivative ``pointwise_grad(r)``."""

    name = ""
    #: True if the loss is a quadratic that can be trained from sufficient statistics
    quadratic = False

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def check_options(cls, options) -> None:
        pass

    def kernel_code(self) -> tuple[int, float] | None:
        """``(code, parameter)`` of this loss in the compiled pass over the samples
        (:func:`lcnrun.core._numba_kernels.residual_loss`), or None if it has none."""
        return None

    def pointwise(self, r: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pointwise_grad(self, r: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def value(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``pred (B, N, *out)``, ``target (N, *out)`` -> mean loss ``(B,)``."""
        B, N = pred.shape[:2]
        return self.pointwise(pred - target[None]).reshape(B, -1).sum(axis=1) / N

    def value_and_residual_grad(self, pred, target):
        """Mean loss ``(B,)`` and ``dL/dpred`` ``(B, N, *out)`` (includes the ``1/N``)."""
        r = pred - target[None]
        B, N = pred.shape[:2]
        return self.pointwise(r).reshape(B, -1).sum(axis=1) / N, self.pointwise_grad(r) / N


class Square(Loss):
    name = "square"
    quadratic = True

    def pointwise(self, r):
        return 0.5 * r * r

    def pointwise_grad(self, r):
        return r


class Lp(Loss):
    name = "lp"

    @dataclass(frozen=True)
    class Options:
        p: float = option(kind="float", doc="exponent p >= 1 of (1/p) sum |r_i|^p")

    @classmethod
    def check_options(cls, options):
        from .options import OptionError
        if not options.p >= 1:
            raise OptionError("p", "must be at least 1")

    def kernel_code(self):
        return (1, float(self.options.p))

    def pointwise(self, r):
        p = self.options.p
        return np.abs(r) ** p / p

    def pointwise_grad(self, r):
        p = self.options.p
        return np.sign(r) * np.abs(r) ** (p - 1)


class PseudoHuber(Loss):
    name = "pseudo_huber"

    @dataclass(frozen=True)
    class Options:
        delta: float = option(1.0, kind="float", check="positive",
                              doc="transition scale: quadratic below delta, linear above")

    def kernel_code(self):
        return (2, float(self.options.delta))

    def pointwise(self, r):
        d = self.options.delta
        # written as d^2 s^2 / (sqrt(1+s^2) + 1) to keep precision for small r
        s2 = (r / d) ** 2
        return d * d * s2 / (np.sqrt(1.0 + s2) + 1.0)

    def pointwise_grad(self, r):
        d = self.options.delta
        return r / np.sqrt(1.0 + (r / d) ** 2)


class LogCosh(Loss):
    name = "log_cosh"

    def kernel_code(self):
        return (3, 0.0)

    def pointwise(self, r):
        a = np.abs(r)
        # |r| >= 1: log cosh r = |r| + log(1 + exp(-2|r|)) - log 2 (no overflow for large |r|);
        # |r| < 1: log cosh r = log(1 + 2 sinh(r/2)^2) (no cancellation: ~ r^2/2 to full precision)
        with np.errstate(over="ignore"):
            small = np.log1p(2.0 * np.sinh(0.5 * a) ** 2)
        large = a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0)
        return np.where(a < 1.0, small, large)

    def pointwise_grad(self, r):
        return np.tanh(r)


LOSSES: dict[str, type[Loss]] = {
    "square": Square,
    "lp": Lp,
    "pseudo_huber": PseudoHuber,
    "log_cosh": LogCosh,
}
