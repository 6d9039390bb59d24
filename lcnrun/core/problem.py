"""The training objective ``L(theta) = (1/N) sum_n loss(f(x_n), y_n)`` of a model on a data set.

For the square loss every evaluation works on the end-to-end map only (sufficient statistics,
:class:`~lcnrun.core.models.QuadraticForm`): the cost of a step does not grow with ``N``, and
``value_and_grad`` runs in compiled code (:mod:`lcnrun.core.kernels`), one call for the whole batch.
Other (separable) losses evaluate the outputs of all samples in one compiled pass over the data
(:class:`~lcnrun.core.kernels.SampleForms`: every member of a batch while a block of samples is
in cache); :meth:`Problem.numpy_value_and_grad` is the numpy reference (``features @ e``).

:class:`ProblemEnsemble` trains members on different data sets (e.g. one noise seed per member)
with the same model and loss: member ``b`` uses ``problems[index[b]]``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .data import Dataset
from .losses import Loss
from .models import Model


def _kernels():
    """:mod:`lcnrun.core.kernels`, imported on first use (it loads numba) and then kept: a flow
    evaluates one member thousands of times, and an import statement per call is a few us."""
    global _KERNELS
    if _KERNELS is None:
        from . import kernels  # noqa: PLC0415
        _KERNELS = kernels
    return _KERNELS


_KERNELS = None


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
        self._program = None
        self._forms = None
        self._sample_forms = None
        self._batch_forms: dict = {}

    # -- compiled evaluation (square loss) ----------------------------------------------------------
    def chain_program(self):
        """The model's :class:`~lcnrun.core.kernels.ChainProgram` (built once)."""
        if self._program is None:
            self._program = self.model.chain_program()
        return self._program

    def compiled(self, batch: int):
        """``(program, forms)`` for the compiled kernels with ``batch`` members, or None if this
        problem has no compiled form (a loss other than the square loss)."""
        cached = self._batch_forms.get(batch)
        if cached is not None:  # a flow's every evaluation: no import, no checks
            return self._program, cached
        from .kernels import QuadraticForms  # noqa: PLC0415

        if self.quadratic is None or self.chain_program() is None:
            return None
        if self._forms is None:
            q = self.quadratic
            self._forms = QuadraticForms(np.ascontiguousarray(q.gram, dtype=float)[None],
                                         np.ascontiguousarray(q.e_min, dtype=float).reshape(1, -1),
                                         np.array([q.l_min]), np.zeros(0, dtype=np.int64))
        # the forms of the last batch size and of single members, kept: a flow evaluates one
        # member thousands of times, and building them is a good part of a small problem's call
        cached = self._batch_forms.get(batch)
        if cached is None:
            cached = dataclasses.replace(self._forms, index=np.zeros(batch, dtype=np.int64))
            self._batch_forms = {k: v for k, v in self._batch_forms.items() if k == 1}
            self._batch_forms[batch] = cached
        return self._program, cached

    def sample_forms(self):
        """:class:`~lcnrun.core.kernels.SampleForms` of a separable loss (built once), or None (the
        square loss, or a model or loss without a compiled form)."""
        if self._sample_forms is None and self.quadratic is None:
            code = self.loss.kernel_code()
            if code is None or self.chain_program() is None:
                return None
            from .kernels import SampleForms  # noqa: PLC0415
            layout = self.model.sample_layout(self.dataset.inputs, self.dataset.targets)
            self._sample_forms = SampleForms.of(layout, code, self.n_samples)
        return self._sample_forms

    def value_and_grad_of(self, theta: np.ndarray, members: np.ndarray):
        """:meth:`value_and_grad` of ensemble members ``members`` (all alike here)."""
        return self.value_and_grad(theta)

    def member(self, b: int) -> "Problem":
        """The problem of member ``b`` (the same for every member)."""
        return self

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
        """``L(theta)`` ``(B,)`` and ``grad L(theta)`` ``(B, P)`` (compiled for the square loss)."""
        theta = np.asarray(theta, dtype=float)
        compiled = self.compiled(theta.shape[0])
        if compiled is not None:
            return _kernels().value_and_grad(*compiled, theta)
        forms = self.sample_forms()
        if forms is not None:
            from .kernels import samples_value_and_grad  # noqa: PLC0415
            return samples_value_and_grad(self.chain_program(), forms, theta)
        return self.numpy_value_and_grad(theta)

    def numpy_value_and_grad(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`value_and_grad` by numpy: the end-to-end map and its pull-back, layer by layer
        (the reference of the compiled kernels; any loss)."""
        e, pullback = self.model.end_to_end_with_pullback(theta)
        val, ge = self.end_to_end_loss_and_gradient(e)
        return val, pullback(ge)

    def value(self, theta: np.ndarray) -> np.ndarray:
        """``L(theta)`` ``(B,)`` (the same numbers as :meth:`value_and_grad`)."""
        if self.chain_program() is not None and (self.quadratic is not None or self.sample_forms() is not None):
            return self.value_and_grad(theta)[0]
        return self.end_to_end_loss_and_gradient(self.model.end_to_end(theta))[0]

    def direct_value(self, theta: np.ndarray) -> np.ndarray:
        """The loss from the network run layer by layer on every sample (the reference value)."""
        return self.loss.value(self.model.forward(theta, self.dataset.inputs), self.dataset.targets)


class ProblemEnsemble:
    """Members ``b = 0..B-1``, member ``b`` trained on ``problems[index[b]]``: one model and loss,
    data sets that may differ. ``value_and_grad(theta (B, P))`` evaluates every member on its own
    problem (one compiled call for the square loss)."""

    def __init__(self, problems, index):
        self.problems = list(problems)
        self.index = np.asarray(index, dtype=np.int64)
        first = self.problems[0]
        self.model = first.model
        self.loss = first.loss
        self.quadratic = first.quadratic
        for p in self.problems[1:]:
            if p.model is not self.model and (p.model.name != self.model.name
                                              or p.model.param_shapes != self.model.param_shapes):
                raise ValueError("the members of an ensemble must share one architecture")

    def member(self, b: int):
        return self.problems[int(self.index[b])]

    def chain_program(self):
        return self.problems[0].chain_program()

    def compiled(self, batch: int):
        from .kernels import QuadraticForms  # noqa: PLC0415

        if batch != len(self.index):
            raise ValueError(f"the ensemble has {len(self.index)} members, not {batch}")
        parts = [p.compiled(1) for p in self.problems]
        if any(c is None for c in parts):
            return None
        l2 = {c[1].l2 for c in parts}
        if len(l2) != 1:
            return None
        forms = QuadraticForms(np.concatenate([c[1].S for c in parts]),
                               np.concatenate([c[1].e_min for c in parts]),
                               np.concatenate([c[1].l_min for c in parts]),
                               np.ascontiguousarray(self.index), l2.pop())
        return parts[0][0], forms

    def value_and_grad(self, theta):
        theta = np.asarray(theta, dtype=float)
        compiled = self.compiled(theta.shape[0])
        if compiled is not None:
            return _kernels().value_and_grad(*compiled, theta)
        loss = np.empty(theta.shape[0])
        grad = np.empty_like(theta)
        for f, p in enumerate(self.problems):
            members = np.flatnonzero(self.index == f)
            if len(members):
                loss[members], grad[members] = p.value_and_grad(theta[members])
        return loss, grad

    def value(self, theta):
        return self.value_and_grad(theta)[0]

    def value_and_grad_of(self, theta, members):
        """``L`` and ``grad L`` of ``theta (m, P)``, row ``i`` being member ``members[i]``."""
        theta = np.asarray(theta, dtype=float)
        members = np.asarray(members, dtype=np.int64)
        compiled = self.compiled(len(self.index))
        if compiled is not None:
            from .kernels import value_and_grad  # noqa: PLC0415
            program, forms = compiled
            return value_and_grad(program, forms.select(members), theta)
        loss = np.empty(theta.shape[0])
        grad = np.empty_like(theta)
        which = self.index[members]
        for f, p in enumerate(self.problems):
            rows = np.flatnonzero(which == f)
            if len(rows):
                loss[rows], grad[rows] = p.value_and_grad(theta[rows])
        return loss, grad
