"""Linear convolutional networks (LCNs), 1-D and D-dimensional, any strides.

Layer ``l`` (1-based, layer 1 touches the input) has a filter ``w_l`` of shape ``(k_l^1..k_l^D)``
and a stride ``s_l`` per axis, one channel, no padding, no bias:
``(a_l x)[i] = sum_j w_l[j] x[s_l * i + j]`` (valid cross-correlation, like ``torch.conv1d``).

End-to-end filter (per axis, multivariate in D dims): with ``S_0 = 1``, ``S_l = s_1...s_l`` and
``W_l(z) = sum_j w_l[j] z^j``,

    v(z) = W_1(z) W_2(z^{S_1}) ... W_L(z^{S_{L-1}}),   size k = 1 + sum_l (k_l - 1) S_{l-1},

and the network is the single correlation with ``v`` at stride ``S_L``. In coefficients, ``v`` is the
full convolution of the *upsampled* filters ``u_l`` (``w_l`` spread out at spacing ``S_{l-1}``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..options import OptionError, option
from .base import Model, QuadraticForm, balance_filters, compact


def _as_shape_list(value, name: str) -> list[tuple[int, ...]]:
    """``[4, 3]`` -> ``[(4,), (3,)]``; ``[[3, 3], [2, 2]]`` unchanged (as tuples)."""
    out = []
    for i, item in enumerate(value):
        t = tuple(item) if isinstance(item, (list, tuple)) else (item,)
        for a, n in enumerate(t):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                key = f"{name}[{i}]" + (f"[{a}]" if isinstance(item, (list, tuple)) else "")
                raise OptionError(key, "must be a positive integer")
        out.append(tuple(int(n) for n in t))
    return out


def _tap_conv(a: np.ndarray, w: np.ndarray, step: tuple[int, ...]) -> np.ndarray:
    """Full convolution of ``a (B, *n)`` with ``w (B, *m)`` whose taps sit at spacing ``step``.

    Returns ``(B, *(n + (m - 1) * step))``: ``out[i + j*step] += a[i] w[j]``. Looping over the few
    taps keeps every numpy operation vectorised over the batch and the (long) first operand.
    """
    B, n, m = a.shape[0], a.shape[1:], w.shape[1:]
    D = len(n)
    out = np.zeros((B,) + tuple(nn + (mm - 1) * s for nn, mm, s in zip(n, m, step)),
                   dtype=np.result_type(a, w))
    ones = (1,) * D
    for j in np.ndindex(*m):
        sl = (slice(None),) + tuple(slice(jj * s, jj * s + nn) for jj, s, nn in zip(j, step, n))
        out[sl] += a * w[(slice(None),) + j].reshape((B,) + ones)
    return out


def _tap_conv_vjp(g: np.ndarray, a: np.ndarray, w: np.ndarray, step: tuple[int, ...]):
    """Pull-back of :func:`_tap_conv`: given ``g = dL/dout``, return ``(dL/da, dL/dw)``."""
    B, n, m = a.shape[0], a.shape[1:], w.shape[1:]
    D = len(n)
    ga = np.zeros_like(a)
    gw = np.empty_like(w)
    ones = (1,) * D
    axes = tuple(range(1, D + 1))
    for j in np.ndindex(*m):
        sl = (slice(None),) + tuple(slice(jj * s, jj * s + nn) for jj, s, nn in zip(j, step, n))
        gs = g[sl]
        ga += gs * w[(slice(None),) + j].reshape((B,) + ones)
        gw[(slice(None),) + j] = np.einsum("bi,bi->b", gs.reshape(B, -1), a.reshape(B, -1))
    return ga, gw


class LCN(Model):
    """Linear convolutional network; filters and strides per layer, D axes (see module doc)."""

    name = "lcn"
    symmetry_group = "rescaling"
    gram_name = "patch Gram matrix"

    @dataclass(frozen=True)
    class Options:
        filters: tuple = option(kind="shape_list",
                                doc="filter size per layer: [4, 3, 2] (1-D) or [[3, 3], [2, 2]] (D-dim)")
        strides: tuple | None = option(None, kind="shape_list", nullable=True,
                                       doc="stride per layer (and axis); default all 1")

    @classmethod
    def check_options(cls, options) -> None:
        filters = _as_shape_list(options.filters, "filters")
        if not filters:
            raise OptionError("filters", "needs at least one layer")
        D = len(filters[0])
        for i, f in enumerate(filters):
            if len(f) != D:
                raise OptionError(f"filters[{i}]", f"has {len(f)} axes but filters[0] has {D}")
        if options.strides is not None:
            if len(options.strides) != len(filters):
                raise OptionError("strides", f"has {len(options.strides)} entries but there are "
                                             f"{len(filters)} filters")
            for i, s in enumerate(options.strides):
                if isinstance(s, (list, tuple)) and len(s) != D:
                    raise OptionError(f"strides[{i}]", f"has {len(s)} axes but the filters have {D}")
            _as_shape_list(options.strides, "strides")

    @classmethod
    def resolve_options(cls, options):
        """The one written form of checked options, so that equal networks have equal run ids:
        filters as ints (D = 1) or tuples (D >= 2); strides filled in (default 1) and each layer's
        an int when equal on every axis (``[1, 1, 1]`` written or omitted, ``[[2, 2], [1, 1]]``
        or ``[2, 1]`` in 2-D: the same network)."""
        filters = _as_shape_list(options.filters, "filters")
        D = len(filters[0])
        raw = options.strides if options.strides is not None else [1] * len(filters)
        strides = tuple(s[0] if len(set(s)) == 1 else s
                        for s in (s if len(s) == D else s * D for s in _as_shape_list(raw, "strides")))
        return replace(options, filters=tuple(f[0] for f in filters) if D == 1 else tuple(filters),
                       strides=strides)

    def __init__(self, options):
        self.check_options(options)
        self.filters = _as_shape_list(options.filters, "filters")
        self.ndim = len(self.filters[0])
        L = len(self.filters)
        raw = options.strides if options.strides is not None else [1] * L
        self.strides = [s if len(s) == self.ndim else s * self.ndim
                        for s in _as_shape_list(raw, "strides")]
        # S_{l-1} per axis: the spacing of layer l's taps in the end-to-end filter
        cum = [(1,) * self.ndim]
        for s in self.strides:
            cum.append(tuple(c * si for c, si in zip(cum[-1], s)))
        self.cumulative_strides = cum  # S_0 .. S_L
        super().__init__(options)

    # -- shapes ----------------------------------------------------------------------------------
    def _param_shapes(self):
        return list(self.filters)

    @property
    def end_to_end_shape(self) -> tuple[int, ...]:
        return tuple(1 + sum((f[a] - 1) * S[a] for f, S in zip(self.filters, self.cumulative_strides))
                     for a in range(self.ndim))

    @property
    def end_to_end_stride(self) -> tuple[int, ...]:
        return self.cumulative_strides[-1]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.ndim:
            raise OptionError("input_size", f"has {len(input_shape)} axes but the filters have {self.ndim}")
        d = input_shape
        for l, (k, s) in enumerate(zip(self.filters, self.strides)):
            if any(kk > dd for kk, dd in zip(k, d)):
                raise OptionError(f"filters[{l}]", f"size {list(k) if self.ndim > 1 else k[0]} is larger "
                                  f"than its input {list(d) if self.ndim > 1 else d[0]} "
                                  f"(input size {list(input_shape) if self.ndim > 1 else input_shape[0]})")
            d = tuple((dd - kk) // ss + 1 for dd, kk, ss in zip(d, k, s))
        return d

    # -- end-to-end map ----------------------------------------------------------------------------
    def _prefixes(self, layers):
        """Partial end-to-end filters ``a_l = u_1 * ... * u_l`` for l = 1..L."""
        a = [layers[0]]
        for l in range(1, self.n_layers):
            a.append(_tap_conv(a[-1], layers[l], self.cumulative_strides[l]))
        return a

    def _pullback(self, layers, prefixes, g):
        grads = [None] * self.n_layers
        for l in range(self.n_layers - 1, 0, -1):
            g, grads[l] = _tap_conv_vjp(g, prefixes[l - 1], layers[l], self.cumulative_strides[l])
        grads[0] = g
        return self.join(grads)

    def chain_program(self):
        """The prefix chain as index triples for the compiled kernels (:mod:`lcnrun.core.kernels`).

        ``a_l[o] += a_{l-1}[i] * w_l[j]`` with ``o = i + j S_{l-1}`` per axis (flattened in C
        order), taps ``j`` outermost: the order of :func:`_tap_conv`, so that the compiled forward
        pass performs the same floating-point operations.
        """
        from ..kernels import chain_program  # noqa: PLC0415

        D = self.ndim
        shape = self.filters[0]
        sizes, triples = [int(np.prod(shape))], []
        for l in range(1, self.n_layers):
            m, step = self.filters[l], self.cumulative_strides[l]
            out_shape = tuple(nn + (mm - 1) * s for nn, mm, s in zip(shape, m, step))
            idx = np.indices(shape).reshape(D, -1)
            n_in = idx.shape[1]
            outs, inps, taps = [], [], []
            for c, j in enumerate(np.ndindex(*m)):
                outs.append(np.ravel_multi_index(tuple(idx[a] + j[a] * step[a] for a in range(D)), out_shape))
                inps.append(np.arange(n_in))
                taps.append(np.full(n_in, c))
            triples.append((np.concatenate(outs), np.concatenate(inps), np.concatenate(taps)))
            shape = out_shape
            sizes.append(int(np.prod(shape)))
        return chain_program(self.offsets, sizes, triples)

    def jacobian(self, theta):
        layers = self.split(np.asarray(theta, dtype=float))
        B = layers[0].shape[0]
        prefixes = self._prefixes(layers)
        e_shape = self.end_to_end_shape
        J = np.zeros((B,) + e_shape + (self.n_params,))
        for l in range(self.n_layers):
            # R_l = product of all upsampled filters but u_l
            R = prefixes[l - 1] if l > 0 else np.ones((B,) + (1,) * self.ndim)
            for m in range(l + 1, self.n_layers):
                R = _tap_conv(R, layers[m], self.cumulative_strides[m])
            S = self.cumulative_strides[l]
            for c, j in enumerate(np.ndindex(*self.filters[l])):
                sl = (slice(None),) + tuple(slice(jj * s, jj * s + r)
                                            for jj, s, r in zip(j, S, R.shape[1:]))
                J[sl + (self.offsets[l] + c,)] = R
        return J.reshape(B, -1, self.n_params)

    # -- the network and the data ----------------------------------------------------------------
    def forward(self, theta, x):
        layers = self.split(np.asarray(theta, dtype=float))
        B = layers[0].shape[0]
        D = self.ndim
        h = np.broadcast_to(np.asarray(x, dtype=float), (B,) + np.shape(x))
        for w, k, s in zip(layers, self.filters, self.strides):
            win = sliding_window_view(h, k, axis=tuple(range(2, 2 + D)))
            win = win[(slice(None), slice(None)) + tuple(slice(None, None, ss) for ss in s)]
            out_shape = win.shape[: 2 + D]
            h = np.einsum("bmk,bk->bm", win.reshape(B, -1, int(np.prod(k))), w.reshape(B, -1))
            h = h.reshape(out_shape)
        return h

    def features(self, x):
        """Patches of every sample: ``(N, *out, *k)``, windows of the end-to-end size at stride S_L."""
        x = np.asarray(x, dtype=float)
        D = self.ndim
        self.output_shape(x.shape[1:])  # raises if impossible
        win = sliding_window_view(x, self.end_to_end_shape, axis=tuple(range(1, 1 + D)))
        return win[(slice(None),) + tuple(slice(None, None, s) for s in self.end_to_end_stride)]

    def _patch_matrix(self, features):
        N = features.shape[0]
        return features.reshape(N, -1, self.end_to_end_size)  # (N, n_out, E)

    def predict(self, e, features):
        N = features.shape[0]
        out_shape = features.shape[1: 1 + self.ndim]
        P = self._patch_matrix(features)
        B = e.shape[0]
        return np.einsum("nme,be->bnm", P, e.reshape(B, -1)).reshape((B, N) + out_shape)

    def predict_vjp(self, features, r):
        P = self._patch_matrix(features)
        B, N = r.shape[0], r.shape[1]
        return np.einsum("nme,bnm->be", P, r.reshape(B, N, -1)).reshape((B,) + self.end_to_end_shape)

    def sample_layout(self, x, y, block: int = 512):
        """The samples for the compiled pass of a separable loss (:class:`~lcnrun.core.kernels.SampleForms`).

        Polyphase order: with ``S = S_L``, ``A = ceil(k / S)`` coarse taps and ``Q = n_out + A - 1``
        coarse positions per axis (the last one rounded up to a multiple of 8),
        ``Z[j, n, q] = x[n, S q + j]`` (``j``, ``q`` multi-indices; zero beyond the input). The
        end-to-end tap ``k = j + S a`` of output ``m`` reads ``x[n, S m + k] = Z[j, n, m + a]``: with
        ``(n, q)`` flattened, every tap reads one contiguous run. A block is ``spb`` whole samples
        (about ``block`` positions), stored as one contiguous piece ``Z[blk, j, r]``; of a sample's
        ``prod(Q)`` positions those with ``q < n_out`` on every axis are outputs. ``Z`` has about the
        size of the (padded) inputs.
        """
        x = np.asarray(x, dtype=float)
        N, D = x.shape[0], self.ndim
        n_out = self.output_shape(x.shape[1:])
        k, S = self.end_to_end_shape, self.end_to_end_stride
        A = [(kk - 1) // ss + 1 for kk, ss in zip(k, S)]
        Q = [n + a - 1 for n, a in zip(n_out, A)]
        Q[-1] = -(-Q[-1] // 8) * 8
        period = int(np.prod(Q))
        spb = max(1, block // period)
        fold = int(np.gcd(spb * period, 64))
        nblk = -(-N // spb)
        n_pad = nblk * spb
        padded = np.zeros((n_pad,) + tuple(s * q for s, q in zip(S, Q)))
        used = tuple(slice(0, min(d, s * q)) for d, s, q in zip(x.shape[1:], S, Q))
        padded[(slice(0, N),) + used] = x[(slice(None),) + used]
        # (n, q_0, j_0, ..., q_{D-1}, j_{D-1}) -> (j_0 .. j_{D-1}, n, q_0 .. q_{D-1})
        split = padded.reshape((n_pad,) + tuple(v for q, s in zip(Q, S) for v in (q, s)))
        order = tuple(2 + 2 * a for a in range(D)) + (0,) + tuple(1 + 2 * a for a in range(D))
        rows = split.transpose(order).reshape(int(np.prod(S)), n_pad * period)
        q_strides = [int(np.prod(Q[a + 1:])) for a in range(D)]
        reach = sum((a - 1) * st for a, st in zip(A, q_strides))  # the farthest a tap reads past m
        R = spb * period
        # block-major, each block's rows with the next ``reach`` positions copied after them, so
        # that a block is one contiguous piece of memory (prefetched as one stream)
        rows = np.concatenate([rows, np.zeros((rows.shape[0], reach))], axis=1)
        width = R + reach
        idx = np.arange(nblk)[:, None] * R + np.arange(width)[None]
        Z = np.ascontiguousarray(rows[:, idx].transpose(1, 0, 2))  # (nblk, prod S, width)
        off = []
        for t in np.ndindex(*k):
            j = tuple(tt % s for tt, s in zip(t, S))
            a = [tt // s for tt, s in zip(t, S)]
            off.append(int(np.ravel_multi_index(j, S)) * width + sum(ai * st for ai, st in zip(a, q_strides)))
        Y = np.zeros((n_pad,) + tuple(Q))
        Y[(slice(0, N),) + tuple(slice(0, n) for n in n_out)] = np.asarray(y, dtype=float).reshape(N, *n_out)
        starts = [sum(mi * st for mi, st in zip(mo, q_strides)) for mo in np.ndindex(*n_out[:-1])]
        return {"Z": Z, "base": np.arange(nblk) * (Z.shape[1] * width), "off": np.asarray(off), "Y": Y,
                "c": 1, "R": R, "period": period, "run_start": np.asarray(starts), "run_len": np.full(len(starts), n_out[-1]),
                "fold": fold}

    def square_loss_statistics(self, x, y):
        """Patch Gram ``G = (1/N) sum_n P_n^T P_n`` and the least-squares filter, in chunks of samples."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        N = x.shape[0]
        E = self.end_to_end_size
        G = np.zeros((E, E))
        Pty = np.zeros(E)
        chunk = max(1, int(2_000_000 // max(1, E * int(np.prod(self.output_shape(x.shape[1:]))))))
        for lo in range(0, N, chunk):
            P = self._patch_matrix(self.features(x[lo: lo + chunk])).reshape(-1, E)
            G += P.T @ P
            Pty += P.T @ y[lo: lo + chunk].reshape(-1)
        G /= N
        # Minimiser from the normal equations (pseudo-inverse of G: the minimum-norm least-squares
        # filter), then one step of iterative refinement with the residual taken against the data
        # (corrected semi-normal equations). Without it, the rounding in forming G and P^T y leaves
        # e_min off by ~ eps |y| / sigma_min(P), a spurious floor l_min ~ 1e-28 |y|^2 on realizable
        # data; with it e_min is as accurate as a QR solve of P e = y, and l_min is then computed
        # exactly from the data at e_min.
        lam, Q = np.linalg.eigh(G)
        keep = lam > E * np.finfo(float).eps * max(float(lam[-1]), 0.0)
        Qk, lk = Q[:, keep], lam[keep]

        def solve(rhs):
            return Qk @ ((Qk.T @ rhs) / lk)

        e_min = solve(Pty / N)
        Ptr = np.zeros(E)
        for lo in range(0, N, chunk):
            P = self._patch_matrix(self.features(x[lo: lo + chunk])).reshape(-1, E)
            Ptr += P.T @ (P @ e_min - y[lo: lo + chunk].reshape(-1))
        e_min = e_min - solve(Ptr / N)
        l_min = 0.0
        for lo in range(0, N, chunk):
            P = self._patch_matrix(self.features(x[lo: lo + chunk])).reshape(-1, E)
            r = P @ e_min - y[lo: lo + chunk].reshape(-1)
            l_min += 0.5 * float(r @ r)
        return QuadraticForm(G, e_min.reshape(self.end_to_end_shape), l_min / N, self.end_to_end_shape)

    # -- what differs between families ---------------------------------------------------------------
    def whitened_inputs(self):
        """``x_n = sqrt(E) e_n`` of the end-to-end shape, ``n = 1..E``: one patch each, ``G = I``."""
        E = self.end_to_end_size
        return np.sqrt(E) * np.eye(E).reshape((E,) + self.end_to_end_shape)

    def balanced_point(self, rng, scale):
        """A ``scale * N(0,1)`` draw whose filters are rescaled to their geometric mean norm: every
        ``delta_l = 0`` and ``v`` unchanged."""
        return balance_filters(self, scale * rng.standard_normal((1, self.n_params)))

    def expected_rank(self):
        """``sum_l |k_l| - (L-1)`` capped by ``E``: generic fibers are the rescaling orbits."""
        return min(self.n_params - (self.n_layers - 1), self.end_to_end_size)

    def data_gram(self, features):
        """``G = (1/N) sum_n P_n^T P_n`` (``E x E``) from the patches ``(N, *out, *k)``."""
        F = np.asarray(features, dtype=float).reshape(-1, self.end_to_end_size)
        return F.T @ F / features.shape[0]

    def polynomial_spacings(self):
        """1-D: ``v(z) = prod_l W_l(z^{S_{l-1}})`` (module doc); D-dim: multivariate, ``None``."""
        return [S[0] for S in self.cumulative_strides[:-1]] if self.ndim == 1 else None

    def label(self):
        """``lcn filters [3,3] strides [1,1]`` (2-D filters as nested lists, the spec's strides)."""
        filters = self.options.filters
        strides = self.options.strides if self.options.strides is not None else [1] * len(filters)
        return f"lcn filters {compact(filters)} strides {compact(strides)}"

    # -- invariants ------------------------------------------------------------------------------
    def invariants(self, theta):
        """``delta_l = |w_l|^2 - |w_{l+1}|^2`` for l = 1..L-1, shape ``(B, L-1)``."""
        n2 = self.layer_norms_sq(np.asarray(theta, dtype=float))
        return {"invariants": n2[:, :-1] - n2[:, 1:]}

    def describe(self):
        d = super().describe()
        d.update(ndim=self.ndim, end_to_end_stride=list(self.end_to_end_stride))
        return d
