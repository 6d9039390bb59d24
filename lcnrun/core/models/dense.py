"""Deep linear networks (DLNs): ``f(x) = W_L ... W_1 x`` with ``W_l`` of shape ``(d_l, d_{l-1})``.

End-to-end matrix ``X = W_L ... W_1`` of shape ``(d_L, d_0)``. Gradient flow conserves
``W_{l+1}^T W_{l+1} - W_l W_l^T`` (l = 1..L-1); balancedness is ``Phi_p = W_p W_p^T - W_{p+1}^T W_{p+1}``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import OptionError, option
from .base import Model, QuadraticForm, compact


def _random_orthonormal(rng, n: int, r: int) -> np.ndarray:
    """``(n, r)`` orthonormal columns: Q of a QR of a Gaussian matrix, signs fixed by ``diag R > 0``."""
    q, rr = np.linalg.qr(rng.standard_normal((n, r)))
    return q * np.sign(np.diag(rr))


class DenseQuadratic(QuadraticForm):
    """Square loss of a DLN: ``G = I_{d_L} kron Sigma_xx`` applied as ``D @ Sigma_xx``."""

    def apply_gram(self, d):
        return d @ self.gram


class Dense(Model):
    """Deep linear network with widths ``[d_0, ..., d_L]``."""

    name = "dense"
    symmetry_group = "GL"
    gram_name = "input covariance Sigma_xx"

    @dataclass(frozen=True)
    class Options:
        widths: tuple = option(kind="int_list", doc="layer widths [d0, d1, ..., dL] (input first)")

    @classmethod
    def check_options(cls, options):
        if len(options.widths) < 2:
            raise OptionError("widths", "needs at least two entries [d0, d1]")
        for i, d in enumerate(options.widths):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise OptionError(f"widths[{i}]", "must be a positive integer")

    def __init__(self, options):
        self.check_options(options)
        self.widths = [int(d) for d in options.widths]
        super().__init__(options)

    def _param_shapes(self):
        return [(self.widths[l + 1], self.widths[l]) for l in range(len(self.widths) - 1)]

    @property
    def end_to_end_shape(self):
        return (self.widths[-1], self.widths[0])

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if input_shape != (self.widths[0],):
            raise OptionError("input_size", f"is {list(input_shape) if len(input_shape) > 1 else input_shape[0]}"
                              f" but the network's input width is {self.widths[0]}")
        return (self.widths[-1],)

    # -- end-to-end map ----------------------------------------------------------------------------
    def _prefixes(self, layers):
        """``A_l = W_l ... W_1`` for l = 1..L."""
        A = [layers[0]]
        for W in layers[1:]:
            A.append(W @ A[-1])
        return A

    def _pullback(self, layers, A, g):
        """``grad W_l = (W_L...W_{l+1})^T g (W_{l-1}...W_1)^T``."""
        grads = [None] * self.n_layers
        C = g  # (W_L ... W_{l+1})^T g, built from the top
        for l in range(self.n_layers - 1, -1, -1):
            grads[l] = C @ np.swapaxes(A[l - 1], 1, 2) if l > 0 else C
            if l > 0:
                C = np.swapaxes(layers[l], 1, 2) @ C
        return self.join(grads)

    def chain_program(self):
        """The prefix chain ``A_l = W_l A_{l-1}`` (``A_l`` of shape ``(d_l, d_0)``) for the compiled
        kernels (:mod:`lcnrun.core.kernels`): one matrix product per layer."""
        from ..kernels import chain_program  # noqa: PLC0415

        d0, L = self.widths[0], self.n_layers
        sizes = [self.widths[l + 1] * d0 for l in range(L)]
        empty = np.zeros(0, dtype=np.int64)
        matmul = [(0, 0, 0)] + [(self.widths[l + 1], self.widths[l], d0) for l in range(1, L)]
        return chain_program(self.offsets, sizes, [(empty, empty, empty)] * (L - 1), matmul)

    def jacobian(self, theta):
        """``dX[i, j] / dW_l[a, b] = (W_L..W_{l+1})[i, a] (W_{l-1}..W_1)[b, j]``."""
        layers = self.split(np.asarray(theta, dtype=float))
        B = layers[0].shape[0]
        A = self._prefixes(layers)
        dL, d0 = self.end_to_end_shape
        blocks = []
        top = np.broadcast_to(np.eye(dL), (B, dL, dL))
        tops = [None] * self.n_layers
        for l in range(self.n_layers - 1, -1, -1):
            tops[l] = top
            top = top @ layers[l]
        for l in range(self.n_layers):
            bottom = A[l - 1] if l > 0 else np.broadcast_to(np.eye(d0), (B, d0, d0))
            blk = np.einsum("bia,bkj->bijak", tops[l], bottom)
            blocks.append(blk.reshape(B, dL * d0, -1))
        return np.concatenate(blocks, axis=2)

    # -- the network and the data ----------------------------------------------------------------
    def forward(self, theta, x):
        h = np.asarray(x, dtype=float)[None]  # (1, N, d0)
        for W in self.split(np.asarray(theta, dtype=float)):
            h = h @ np.swapaxes(W, 1, 2)
        return h

    def features(self, x):
        x = np.asarray(x, dtype=float)
        self.output_shape(x.shape[1:])
        return x

    def predict(self, e, features):
        return features[None] @ np.swapaxes(e, 1, 2)

    def predict_vjp(self, features, r):
        return np.swapaxes(r, 1, 2) @ features[None]

    def sample_layout(self, x, y, block: int = 16):
        """The samples for the compiled pass of a separable loss (:class:`~lcnrun.core.kernels.SampleForms`):
        blocks of ``R = block`` samples, ``Z[blk, k, r] = x[blk R + r, k]`` and the targets
        ``Y[blk, i, r] = y[blk R + r, i]`` (zero padding), so ``pred[blk, i, r] = sum_k X[i, k]
        Z[blk, k, r]`` reads ``Z`` contiguously."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float).reshape(x.shape[0], -1)
        self.output_shape(x.shape[1:])
        N, d0, dL = x.shape[0], self.widths[0], self.widths[-1]
        R = max(1, min(block, N))
        nblk = -(-N // R)
        xp = np.zeros((nblk * R, d0))
        yp = np.zeros((nblk * R, dL))
        xp[:N], yp[:N] = x, y
        Z = xp.reshape(nblk, R, d0).transpose(0, 2, 1)
        Y = yp.reshape(nblk, R, dL).transpose(0, 2, 1)
        return {"Z": Z, "base": np.arange(nblk) * (d0 * R), "off": np.arange(d0) * R, "Y": Y,
                "c": dL, "R": R, "period": R, "run_start": [0], "run_len": [R], "fold": R}

    def square_loss_statistics(self, x, y):
        """``Sigma_xx = x^T x / N`` and the least-squares matrix ``X_min`` (from the data, not G)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        N = x.shape[0]
        sigma_xx = x.T @ x / N
        X_min = np.linalg.lstsq(x, y, rcond=None)[0].T
        r = x @ X_min.T - y
        return DenseQuadratic(sigma_xx, X_min, 0.5 * float(np.sum(r * r)) / N, self.end_to_end_shape)

    # -- what differs between families ---------------------------------------------------------------
    @property
    def default_input_shape(self):
        return (self.widths[0],)

    def whitened_inputs(self):
        """``x_n = sqrt(d_0) e_n``, ``n = 1..d_0``: ``Sigma_xx = I``."""
        d0 = self.widths[0]
        return np.sqrt(d0) * np.eye(d0)

    def balanced_point(self, rng, scale):
        """``W_p = U_p S^{1/L} U_{p-1}^T`` from the SVD ``X = U S V^T`` of a random ``scale * N(0,1)``
        end-to-end matrix (``U_0 = V``, ``U_L = U``, hidden ``U_p`` random orthonormal columns), so
        that ``W_{p+1}^T W_{p+1} = W_p W_p^T``."""
        widths, L = self.widths, self.n_layers
        r = min(widths)
        X = scale * rng.standard_normal((widths[-1], widths[0]))
        U, s, Vt = np.linalg.svd(X)
        root = np.diag(s[:r] ** (1.0 / L))
        frames = [Vt[:r].T] + [_random_orthonormal(rng, d, r) for d in widths[1:-1]] + [U[:, :r]]
        return self.join([(frames[p + 1] @ root @ frames[p].T)[None] for p in range(L)])

    def symmetry_tangent(self, theta):
        """GL on every hidden layer: ``dW_l = A W_l``, ``dW_{l+1} = -W_{l+1} A`` for ``A = E_ab``."""
        layers = [w[0] for w in self.split(np.asarray(theta, dtype=float)[None])]
        cols = []
        for l in range(self.n_layers - 1):
            n = layers[l].shape[0]
            for a in range(n):
                for b in range(n):
                    A = np.zeros((n, n))
                    A[a, b] = 1.0
                    d = [np.zeros_like(w) for w in layers]
                    d[l], d[l + 1] = A @ layers[l], -layers[l + 1] @ A
                    cols.append(self.join([x[None] for x in d])[0])
        return np.array(cols).T.reshape(self.n_params, len(cols))

    def expected_rank(self):
        """``r (d_0 + d_L - r)``, ``r = min_l d_l``: the dimension of the ``d_L x d_0`` matrices of rank
        ``r`` (the image of ``mu`` near a point where every partial product has full rank)."""
        r = min(self.widths)
        return r * (self.widths[0] + self.widths[-1] - r)

    def data_gram(self, features):
        """``Sigma_xx = (1/N) sum_n x_n x_n^T`` (``d_0 x d_0``; ``G = I_{d_L} kron Sigma_xx``)."""
        F = np.asarray(features, dtype=float).reshape(-1, self.widths[0])
        return F.T @ F / features.shape[0]

    def output_factor(self, inputs, max_block=2_000_000):
        """``M = I_{d_L} kron R_x`` with ``x_in = Q_x R_x`` (every output row sees the same inputs)."""
        r_x = np.linalg.qr(np.asarray(inputs, dtype=float), mode="r")  # (min(N, d0), d0)
        return np.kron(np.eye(self.widths[-1]), r_x)

    def label(self):
        return "dense " + compact(self.widths)

    # -- invariants ------------------------------------------------------------------------------
    def imbalance_matrices(self, theta):
        """``W_{l+1}^T W_{l+1} - W_l W_l^T`` for l = 1..L-1, each ``(B, d_l, d_l)``."""
        layers = self.split(np.asarray(theta, dtype=float))
        return [np.swapaxes(layers[l + 1], 1, 2) @ layers[l + 1] - layers[l] @ np.swapaxes(layers[l], 1, 2)
                for l in range(self.n_layers - 1)]

    def invariants(self, theta):
        """Flattened imbalance matrices, their Frobenius norms, and the balancedness norm.

        ``balancedness = sqrt(sum_p |Phi_p|_F^2)`` with ``Phi_p = -(imbalance_p)``: zero iff balanced.
        """
        mats = self.imbalance_matrices(theta)
        B = np.shape(theta)[0]
        if not mats:
            z = np.zeros((B, 0))
            return {"invariants": z, "invariant_norms": z, "balancedness": np.zeros(B)}
        norms = np.stack([np.sqrt(np.einsum("bij,bij->b", M, M)) for M in mats], axis=1)
        return {
            "invariants": np.concatenate([M.reshape(B, -1) for M in mats], axis=1),
            "invariant_norms": norms,
            "balancedness": np.sqrt(np.sum(norms ** 2, axis=1)),
        }
