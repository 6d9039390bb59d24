"""The contract every model family fulfils.

A model is a parametrization ``theta -> e`` of an end-to-end map ``e`` (the filter ``v`` of an LCN,
the matrix ``X`` of a DLN), linear in each layer. Parameters are always *batched*: ``theta`` has
shape ``(B, P)`` with ``B`` ensemble members (a single run is ``B = 1``) and ``P = sum_l |w_l|``
parameters, the layers concatenated in order, each flattened in C order.

A new model family implements, numbered as in scipy's ``OdeSolver`` contract:

1. ``Options``: a frozen dataclass of its spec keys (see :mod:`lcnrun.core.options`),
   ``check_options`` for the consistency checks that involve several keys and, if several
   spellings mean one network, ``resolve_options`` (their one form: one run id);
2. ``param_shapes`` (one shape per layer) and ``end_to_end_shape``;
3. ``_prefixes(layers)`` (the partial end-to-end maps, the last one is ``e``) and
   ``_pullback(layers, prefixes, g) = J^T g``; the base class builds ``end_to_end``,
   ``end_to_end_vjp`` and ``end_to_end_with_pullback`` from them;
4. ``jacobian(theta)``: ``J = de/dtheta`` of shape ``(B, E, P)``;
5. ``forward(theta, x)``: the network applied layer by layer (the independent reference);
6. ``output_shape(input_shape)``, ``features``/``predict``/``predict_vjp`` (outputs of all samples
   as a linear function of ``e``), and ``square_loss_statistics`` (the sufficient statistics of the
   square loss, so that a step never touches the samples);
7. ``invariants(theta)``: the quantities gradient flow conserves;
8. ``chain_program()``: the prefix chain as index triples for the compiled kernels
   (:mod:`lcnrun.core.kernels`; the square-loss step loops and ensembles run on it), and
   ``sample_layout(x, y)``: the samples laid out for the compiled pass of the separable losses
   (:class:`~lcnrun.core.kernels.SampleForms`);
9. what differs between families where the rest of the package needs it (so that no code outside
   this package asks which family a model is): ``symmetry_group`` and ``symmetry_tangent`` (the
   generic fibers of ``theta -> e``), ``expected_rank`` (generic rank of ``J``),
   ``default_input_shape`` (``data.input_size`` when the spec leaves it out), ``whitened_inputs``
   (inputs with ``G = I``, data kind ``function_space``), ``balanced_point`` (init kind
   ``balanced``), ``data_gram``/``gram_name`` (the data condition), ``output_factor`` (the output
   metric; a generic default), ``polynomial_spacings`` (``None`` unless ``e`` is a product of
   univariate layer polynomials) and ``label`` (a short text for figures).

A new family is one file with a subclass plus one line in ``MODELS``; ``tests/test_model_contract.py``
runs the shared property tests on every registered family.
"""
from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np


def compact(value: Any) -> str:
    """``value`` as compact JSON, tuples as lists: ``[[3,3],[2,2]]``."""
    def plain(x):
        return [plain(a) for a in x] if isinstance(x, (list, tuple)) else x
    return json.dumps(plain(value), separators=(",", ":"))


class Model(ABC):
    """Base class: bookkeeping of the flat batched parameter vector; subclasses do the mathematics."""

    #: registry name, e.g. ``"lcn"``
    name: str = ""
    #: frozen dataclass of the family's spec keys
    Options: type

    def __init__(self, options: Any):
        self.options = options
        self.param_shapes: list[tuple[int, ...]] = self._param_shapes()
        self.layer_sizes = [int(np.prod(s)) for s in self.param_shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.layer_sizes)]).astype(int)
        self.n_params = int(self.offsets[-1])
        self.n_layers = len(self.param_shapes)

    # -- bookkeeping ---------------------------------------------------------------------------
    @classmethod
    def check_options(cls, options: Any) -> None:
        """Raise :class:`~lcnrun.core.options.OptionError` if the keys are inconsistent."""

    @classmethod
    def resolve_options(cls, options: Any) -> Any:
        """The one written form of checked options (defaults filled in, equivalent spellings made
        one), so that equal networks have equal run ids; the spec layer calls it after
        :meth:`check_options`. Default: the options as given."""
        return options

    @abstractmethod
    def _param_shapes(self) -> list[tuple[int, ...]]:
        ...

    @property
    @abstractmethod
    def end_to_end_shape(self) -> tuple[int, ...]:
        ...

    @property
    def end_to_end_size(self) -> int:
        return int(np.prod(self.end_to_end_shape))

    def split(self, theta: np.ndarray) -> list[np.ndarray]:
        """``theta (B, P)`` -> list of layer views ``(B, *param_shapes[l])``."""
        theta = np.asarray(theta)
        B = theta.shape[0]
        return [
            theta[:, self.offsets[l]: self.offsets[l + 1]].reshape((B,) + self.param_shapes[l])
            for l in range(self.n_layers)
        ]

    def join(self, layers: list[np.ndarray]) -> np.ndarray:
        """List of layers ``(B, *shape_l)`` -> ``theta (B, P)``."""
        B = layers[0].shape[0]
        return np.concatenate([np.reshape(w, (B, -1)) for w in layers], axis=1)

    def layer_norms_sq(self, theta: np.ndarray) -> np.ndarray:
        """``|w_l|^2`` (Frobenius) per layer, shape ``(B, L)``."""
        return np.stack(
            [np.einsum("bi,bi->b", theta[:, a:b], theta[:, a:b])
             for a, b in zip(self.offsets[:-1], self.offsets[1:])], axis=1)

    # -- the mathematics -------------------------------------------------------------------------
    @abstractmethod
    def _prefixes(self, layers: list[np.ndarray]) -> list[np.ndarray]:
        """Partial end-to-end maps of layers 1..l, for l = 1..L (the last one is ``e``)."""

    @abstractmethod
    def _pullback(self, layers: list[np.ndarray], prefixes: list[np.ndarray], g: np.ndarray) -> np.ndarray:
        """``J^T g`` from the layers and their prefixes; returns ``(B, P)``."""

    def end_to_end(self, theta: np.ndarray) -> np.ndarray:
        """``e(theta)``, shape ``(B, *end_to_end_shape)``."""
        return self._prefixes(self.split(np.asarray(theta, dtype=float)))[-1]

    def end_to_end_vjp(self, theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        """``J^T g`` for ``g`` of shape ``(B, *end_to_end_shape)``; returns ``(B, P)``."""
        return self.end_to_end_with_pullback(theta)[1](g)

    def end_to_end_with_pullback(self, theta: np.ndarray):
        """``(e, pullback)`` with ``pullback(g) = J^T g``, sharing the prefixes between the two."""
        layers = self.split(np.asarray(theta, dtype=float))
        prefixes = self._prefixes(layers)
        return prefixes[-1], lambda g: self._pullback(layers, prefixes, g)

    @abstractmethod
    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """``J = de/dtheta``, shape ``(B, E, P)`` with ``e`` flattened in C order."""

    @abstractmethod
    def forward(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The network layer by layer: ``x (N, *input_shape)`` -> ``(B, N, *output_shape)``."""

    @abstractmethod
    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one output for one input of ``input_shape``; OptionError if impossible."""

    @abstractmethod
    def features(self, x: np.ndarray) -> np.ndarray:
        """Per-sample features making the outputs linear in ``e`` (patches / inputs)."""

    @abstractmethod
    def predict(self, e: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Outputs ``(B, N, *output_shape)`` of end-to-end maps ``e (B, *e_shape)``."""

    @abstractmethod
    def predict_vjp(self, features: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Pull-back of ``r (B, N, *output_shape)`` to the end-to-end map: ``(B, *e_shape)``."""

    @abstractmethod
    def square_loss_statistics(self, x: np.ndarray, y: np.ndarray) -> "QuadraticForm":
        """Sufficient statistics of ``(1/2N) sum_n |f(x_n) - y_n|^2`` as a quadratic in ``e``."""

    @abstractmethod
    def invariants(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Conserved quantities of gradient flow, each with a leading batch axis.

        Always contains ``"invariants"`` of shape ``(B, n)`` (flattened, the dataset stored in run
        files); families add named extras (norms, balancedness).
        """

    @abstractmethod
    def chain_program(self):
        """The prefix chain ``a_l = a_{l-1} (x) w_l`` as a :class:`~lcnrun.core.kernels.ChainProgram`
        (index triples or one matrix product per layer) for the compiled kernels."""

    @abstractmethod
    def sample_layout(self, x: np.ndarray, y: np.ndarray) -> dict:
        """The samples ``x (N, *input_shape)``, ``y (N, *output_shape)`` as blocks of output positions
        for the compiled pass of a separable loss: a dict of the fields of
        :class:`~lcnrun.core.kernels.SampleForms` (``Z, base, off, Y, c, R, period, run_start,
        run_len, fold``), with ``pred[blk, ch, m] = sum_k e[ch, k] Z[base[blk] + off[k] + m]``."""

    # -- what differs between families (item 9 of the contract) ------------------------------------
    #: the group whose orbits are the generic fibers of ``theta -> e``: ``"rescaling"``
    #: (``w_l -> c_l w_l``, ``prod c_l = 1``) or ``"GL"`` (``W_p -> A W_p``, ``W_{p+1} -> W_{p+1} A^-1``)
    symmetry_group: str = ""
    #: what :meth:`data_gram` is called in messages (``"patch Gram matrix"``, ...)
    gram_name: str = ""

    def symmetry_tangent(self, theta: np.ndarray) -> np.ndarray:
        """Columns spanning the tangent space of the symmetry orbit at ``theta (P,)``: ``(P, m)``.

        This default is the rescaling group (every family multilinear in its layers has it):
        ``(0, .., w_l, -w_{l+1}, .., 0)`` for ``l = 1..L-1``. Families with a larger group override it.
        """
        layers = [w[0] for w in self.split(np.asarray(theta, dtype=float)[None])]
        cols = []
        for l in range(self.n_layers - 1):
            d = [np.zeros_like(w) for w in layers]
            d[l], d[l + 1] = layers[l], -layers[l + 1]
            cols.append(self.join([x[None] for x in d])[0])
        return np.array(cols).T.reshape(self.n_params, len(cols))

    @abstractmethod
    def expected_rank(self) -> int:
        """The generic (maximal) rank of ``J = de/dtheta``."""

    @property
    def default_input_shape(self) -> tuple[int, ...] | None:
        """The input shape of a Gaussian data set whose ``input_size`` is left out; ``None``: required."""
        return None

    @abstractmethod
    def whitened_inputs(self) -> np.ndarray:
        """Inputs ``(N, *input_shape)`` whose square loss has ``G = I`` exactly:
        ``(1/2N) sum_n |f(x_n) - y_n|^2 = 1/2 |e - u|^2`` (data kind ``function_space``)."""

    @abstractmethod
    def balanced_point(self, rng: np.random.Generator, scale: float) -> np.ndarray:
        """A random balanced ``theta (1, P)`` (init kind ``balanced``), drawn from ``rng``."""

    @abstractmethod
    def data_gram(self, features: np.ndarray) -> np.ndarray:
        """The Gram matrix of the data (``G`` of the square loss, or its non-repeated block) from
        :meth:`features` of ``N`` samples: ``(1/N) sum_n F_n^T F_n``."""

    def output_factor(self, inputs: np.ndarray, max_block: int = 2_000_000) -> np.ndarray:
        """``M (r, E)`` with ``M^T M = F^T F``, ``r = min(QN, E)``, for ``x = F e`` the outputs of all
        samples ``inputs (N, *input_shape)`` (flattened sample-major, C order) as a linear map of ``e``.

        The ``R`` factor of a QR of ``F``, accumulated over chunks of samples (TSQR), so ``F`` is
        never held whole; backward stable (no Gram matrix, whose rounding would blur small singular
        values). Families with structure in ``F`` override it.
        """
        x = np.asarray(inputs, dtype=float)
        E = self.end_to_end_size
        basis = np.eye(E).reshape((E,) + self.end_to_end_shape)
        Q = int(np.prod(self.output_shape(x.shape[1:])))
        chunk = max(1, max_block // max(1, E * Q))
        R = np.zeros((0, E))
        for lo in range(0, x.shape[0], chunk):
            F = self.predict(basis, self.features(x[lo: lo + chunk])).reshape(E, -1).T
            R = np.linalg.qr(np.vstack([R, F]), mode="r")
        return R

    def polynomial_spacings(self) -> list[int] | None:
        """``[S_0, .., S_{L-1}]`` if ``e`` is the coefficient vector of the univariate polynomial
        ``prod_l W_l(z^{S_{l-1}})`` (``W_l`` the polynomial of layer ``l``'s coefficients), else ``None``."""
        return None

    def label(self) -> str:
        """A short text naming the architecture: ``NAME key value ...`` over the options (families
        override it, e.g. ``lcn filters [3,3] strides [1,1]``)."""
        return " ".join([self.name] + [f"{f.name} {compact(getattr(self.options, f.name))}"
                                       for f in dataclasses.fields(self.options)])

    def describe(self) -> dict[str, Any]:
        """Scalars worth storing as attributes (number of parameters, end-to-end shape ...)."""
        return {"n_params": self.n_params, "n_layers": self.n_layers,
                "end_to_end_shape": list(self.end_to_end_shape)}


def balance_filters(model: Model, theta: np.ndarray) -> np.ndarray:
    """Rescale each layer of ``theta (B, P)`` to the geometric mean norm (keeps the end-to-end map
    of a multilinear model, makes every ``|w_l|`` equal)."""
    n = np.sqrt(model.layer_norms_sq(theta))
    if np.any(n == 0):
        return theta.copy()
    target = np.exp(np.mean(np.log(n), axis=1, keepdims=True))
    layers = [w * (target[:, 0] / n[:, l]).reshape((-1,) + (1,) * (w.ndim - 1))
              for l, w in enumerate(model.split(theta))]
    return model.join(layers)


class QuadraticForm:
    """``l(e) = l_min + 1/2 (e - e_min)^T G (e - e_min)`` on flattened end-to-end maps.

    Written around a minimiser ``e_min`` (least squares, so ``G e_min = b``) and the exactly
    computed minimum ``l_min`` rather than as ``1/2 e^T G e - b^T e + c``: near a global minimum
    the expanded form loses all digits to cancellation, this one keeps them.

    ``apply_gram(d)`` multiplies ``(B, *e_shape)`` by ``G``; subclasses may use structure
    (``I kron Sigma_xx`` for a DLN).
    """

    def __init__(self, gram: np.ndarray, e_min: np.ndarray, l_min: float, e_shape: tuple[int, ...]):
        self.gram = gram
        self.e_min = e_min
        self.l_min = float(l_min)
        self.e_shape = e_shape

    def apply_gram(self, d: np.ndarray) -> np.ndarray:
        B = d.shape[0]
        return (d.reshape(B, -1) @ self.gram).reshape(d.shape)

    def value_and_gradient(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss ``(B,)`` and gradient ``(B, *e_shape)`` of the quadratic at ``e``."""
        d = e - self.e_min
        gd = self.apply_gram(d)
        B = e.shape[0]
        excess = 0.5 * np.einsum("bi,bi->b", d.reshape(B, -1), gd.reshape(B, -1))
        # d^T G d >= 0 exactly; rounding can make it -1e-17 where G is singular: clamp at 0 so the
        # loss never reads below its minimum
        return self.l_min + np.maximum(excess, 0.0), gd
