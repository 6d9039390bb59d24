"""The training objective ``L(theta) = (1/N) sum_n loss(f(x_n), y_n)`` of a model on a data set.

For the square loss every evaluation works on the end-to-end map only (sufficient statistics,
:class:`~lcnrun.core.models.QuadraticForm`): the cost of a step does not grow with ``N``. Other
losses evaluate the outputs of all samples as ``features @ e`` (one product, still no layer loop).
"""
from __future__ import annotations

import numpy as np

from .data import Dataset
from .losses import Loss
from .models import Model


class Problem:
    """``model`` + ``loss`` + ``dataset``; all methods take batched ``theta (B, P)``."""

    def __init__(self, model: Model, loss: Loss, dataset: Dataset):
        self.model = model
        self.loss = loss
        self.dataset = dataset
        self.n_samples = dataset.n_samples
        if loss.quadratic:
            self.quadratic = model.square_loss_statistics(dataset.inputs, dataset.targets)
            self.features = None
        else:
            self.quadratic = None
            self.features = model.features(dataset.inputs)

    # -- in function space -----------------------------------------------------------------------
    def end_to_end_loss_and_gradient(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``l(e)`` ``(B,)`` and ``grad_e l`` ``(B, *e_shape)`` of the loss as a function of ``e``."""
        if self.quadratic is not None:
            return self.quadratic.value_and_gradient(e)
        pred = self.model.predict(e, self.features)
        val, r = self.loss.value_and_residual_grad(pred, self.dataset.targets)
        return val, self.model.predict_vjp(self.features, r)

    # -- in parameter space ----------------------------------------------------------------------
    def value_and_grad(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``L(theta)`` ``(B,)`` and ``grad L(theta)`` ``(B, P)``."""
        e, pullback = self.model.end_to_end_with_pullback(theta)
        val, ge = self.end_to_end_loss_and_gradient(e)
        return val, pullback(ge)

    def value(self, theta: np.ndarray) -> np.ndarray:
        return self.end_to_end_loss_and_gradient(self.model.end_to_end(theta))[0]

    def direct_value(self, theta: np.ndarray) -> np.ndarray:
        """The loss from the network run layer by layer on every sample (the reference value)."""
        return self.loss.value(self.model.forward(theta, self.dataset.inputs), self.dataset.targets)
