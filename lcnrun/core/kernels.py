"""Compiled kernels (numba) for the square loss: batched ``value_and_grad`` and fused gradient descent.

Why compiled code: for the square loss a step works on the end-to-end map only (a few hundred
flops for a small LCN), so a numpy implementation spends nearly all its time dispatching numpy
calls (~40 per step) and in the Python loop. Here a step is one pass of compiled loops, and
:func:`descend_kernel` runs many steps of many members in one call.

**The chain program.** Both model families are *bilinear chains*: the partial end-to-end maps
``a_0 = w_0``, ``a_l = bilinear_l(a_{l-1}, w_l)`` (the last one is ``e``), each ``bilinear_l`` a list
of index triples ``(o, i, j)``: ``a_l[o] += a_{l-1}[i] * w_l[j]`` (LCN: the tap convolution, ``o = i +
j S_l``; see :meth:`lcnrun.core.models.LCN.chain_program`). The pull-back of ``g = dl/da_l`` is
``dl/da_{l-1}[i] += g[o] w_l[j]`` and ``dl/dw_l[j] += g[o] a_{l-1}[i]`` over the same triples.

**The quadratic.** ``l(e) = l_min + 1/2 d^T G d`` with ``d = e - e_min`` and ``G = I_r kron S``
(``S`` of shape ``(c, c)``, ``E = r c``; an LCN has ``r = 1``), so ``grad_e l = (d reshaped (r, c)) S``.
Members may use different data: ``form[b]`` picks member b's ``(S, e_min, l_min)``. An L2 penalty
``l2 |theta|^2`` is added if ``l2 > 0`` (:class:`~lcnrun.core.regularization.RegularizedProblem`).

**Determinism.** Every kernel loops over members and computes each member with the same sequence of
floating-point operations whatever the other members are: a member's results are bitwise
independent of the ensemble it runs in (and of how the work is split into calls). No fast-math, so
no contraction into fused multiply-adds: the forward pass performs exactly the operations of the
numpy tap convolution (:func:`lcnrun.core.models.lcn._tap_conv`), in the same order.

Compiled once per machine (``cache=True``: numba stores the machine code next to this file, or in
its user cache folder if this one is read-only); numba is imported when a kernel is first needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: status codes of :func:`descend_kernel`
RUNNING, FINISHED, DIVERGED_CODE, LOSS_BELOW, GRAD_NORM_BELOW = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class ChainProgram:
    """The bilinear chain of a model (see the module docstring), as flat int64 arrays.

    ``param_offsets (L+1,)``: layer l is ``theta[param_offsets[l]:param_offsets[l+1]]``;
    ``prefix_offsets (L+1,)``: ``a_l`` is ``buffer[prefix_offsets[l]:prefix_offsets[l+1]]`` (``a_0``
    is layer 0, the last one is ``e``); ``triple_offsets (L+1,)``: the triples of ``bilinear_l`` are
    ``out/inp/tap[triple_offsets[l]:triple_offsets[l+1]]`` (none for ``l = 0``), indices relative
    to ``a_l``, ``a_{l-1}`` and layer ``l``. A layer may instead be a matrix product (a DLN):
    ``matmul[l] = (rows, inner, cols)``, ``a_l (rows, cols) = w_l (rows, inner) @ a_{l-1} (inner, cols)``
    (all zero for a layer given by triples), computed by loops over contiguous rows.
    """

    param_offsets: np.ndarray
    prefix_offsets: np.ndarray
    triple_offsets: np.ndarray
    out: np.ndarray
    inp: np.ndarray
    tap: np.ndarray
    matmul: np.ndarray

    @property
    def end_to_end_size(self) -> int:
        return int(self.prefix_offsets[-1] - self.prefix_offsets[-2])

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in program_arrays(self))


@dataclass(frozen=True)
class QuadraticForms:
    """``F`` square-loss forms ``l_f(e) = l_min[f] + 1/2 d^T (I_r kron S[f]) d``, ``d = e - e_min[f]``.

    ``S (F, c, c)``, ``e_min (F, r*c)``, ``l_min (F,)``; ``index (B,)``: the form of each member.
    """

    S: np.ndarray
    e_min: np.ndarray
    l_min: np.ndarray
    index: np.ndarray
    l2: float = 0.0

    def select(self, members) -> "QuadraticForms":
        """The forms of a subset of members (the arrays are shared, only ``index`` is cut)."""
        return QuadraticForms(self.S, self.e_min, self.l_min,
                              np.ascontiguousarray(self.index[members], dtype=np.int64), self.l2)


@lru_cache(maxsize=None)
def _compiled():
    """Compile (or load from numba's cache) the kernels; imported lazily so that ``import
    lcnrun.core`` does not pay for numba."""
    import numba  # noqa: PLC0415

    jit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @jit
    def member_value_grad(theta, po, xo, to, out, inp, tap, mm, S, e_min, l_min, f, l2, buf, gbuf, gnext, d, grad):
        """Loss and ``grad`` (written) of one member ``theta (P,)``; returns ``(loss, |grad|^2)``.
        ``buf`` holds the prefixes, ``gbuf``/``gnext`` pull-back vectors, ``d`` the residual."""
        L = po.shape[0] - 1
        # forward: prefixes a_0 .. a_{L-1}
        for p in range(po[1] - po[0]):
            buf[xo[0] + p] = theta[po[0] + p]
        for l in range(1, L):
            bo, ba, bw = xo[l], xo[l - 1], po[l]
            for p in range(xo[l + 1] - xo[l]):
                buf[bo + p] = 0.0
            rows, inner, cols = mm[l, 0], mm[l, 1], mm[l, 2]
            if rows > 0:
                for i in range(rows):
                    for k in range(inner):
                        wik = theta[bw + i * inner + k]
                        for j in range(cols):
                            buf[bo + i * cols + j] += buf[ba + k * cols + j] * wik
            for t in range(to[l], to[l + 1]):
                buf[bo + out[t]] += buf[ba + inp[t]] * theta[bw + tap[t]]
        # the quadratic: d = e - e_min, g = (I kron S) d
        E = xo[L] - xo[L - 1]
        c = S.shape[1]
        r = E // c
        be = xo[L - 1]
        for p in range(E):
            d[p] = buf[be + p] - e_min[f, p]
        # g[i, j] = sum_k d[i, k] S[k, j], k ascending (rows of S are contiguous: the j loop
        # vectorises without reordering any sum)
        for p in range(E):
            gbuf[p] = 0.0
        for i in range(r):
            for k in range(c):
                dk = d[i * c + k]
                for j in range(c):
                    gbuf[i * c + j] += dk * S[f, k, j]
        quad = 0.0
        for p in range(E):
            quad += d[p] * gbuf[p]
        loss = l_min[f] + 0.5 * quad
        # pull-back through the chain
        for p in range(grad.shape[0]):
            grad[p] = 0.0
        n = E
        for l in range(L - 1, 0, -1):
            ba, bw = xo[l - 1], po[l]
            na = xo[l] - xo[l - 1]
            for p in range(na):
                gnext[p] = 0.0
            rows, inner, cols = mm[l, 0], mm[l, 1], mm[l, 2]
            if rows > 0:
                for i in range(rows):
                    for k in range(inner):
                        wik = theta[bw + i * inner + k]
                        acc = 0.0
                        for j in range(cols):
                            go = gbuf[i * cols + j]
                            gnext[k * cols + j] += go * wik
                            acc += go * buf[ba + k * cols + j]
                        grad[bw + i * inner + k] = acc
            for t in range(to[l], to[l + 1]):
                go = gbuf[out[t]]
                gnext[inp[t]] += go * theta[bw + tap[t]]
                grad[bw + tap[t]] += go * buf[ba + inp[t]]
            for p in range(na):
                gbuf[p] = gnext[p]
            n = na
        for p in range(n):
            grad[po[0] + p] = gbuf[p]
        if l2 > 0.0:
            sq = 0.0
            for p in range(grad.shape[0]):
                sq += theta[p] * theta[p]
                grad[p] += (2.0 * l2) * theta[p]
            loss += l2 * sq
        g2 = 0.0
        for p in range(grad.shape[0]):
            g2 += grad[p] * grad[p]
        return loss, g2

    @jit
    def value_and_grad(theta, po, xo, to, out, inp, tap, mm, S, e_min, l_min, index, l2, loss, grad):
        B, P = theta.shape
        nbuf = xo[-1]
        buf = np.empty(nbuf)
        gbuf = np.empty(nbuf)
        gnext = np.empty(nbuf)
        d = np.empty(nbuf)
        for b in range(B):
            loss[b], _ = member_value_grad(theta[b], po, xo, to, out, inp, tap, mm, S, e_min, l_min,
                                           index[b], l2, buf, gbuf, gnext, d, grad[b])

    @jit
    def descend(theta, lr, steps, loss_below, gnorm_below, factor, rec, n_rec,
                po, xo, to, out, inp, tap, mm, S, e_min, l_min, index, l2,
                k_next, rec_pos, threshold, status, k_limit,
                out_theta, out_loss, out_gnorm, out_k, n_out):
        """Gradient descent of every member from its step ``k_next[b]`` up to step
        ``min(steps[b], k_limit)`` (see :func:`lcnrun.core.dynamics.gradient_descent.descend`)."""
        B, P = theta.shape
        nbuf = xo[-1]
        buf = np.empty(nbuf)
        gbuf = np.empty(nbuf)
        gnext = np.empty(nbuf)
        d = np.empty(nbuf)
        grad = np.empty(P)
        th = np.empty(P)
        for b in range(B):
            if status[b] != 0:
                continue
            for p in range(P):
                th[p] = theta[b, p]
            k = k_next[b]
            last = min(steps[b], k_limit)
            step_lr = lr[b]
            while k <= last:
                loss, g2 = member_value_grad(th, po, xo, to, out, inp, tap, mm, S, e_min, l_min, index[b],
                                             l2, buf, gbuf, gnext, d, grad)
                gnorm = np.sqrt(g2)
                if k == 0:
                    threshold[b] = factor[b] * max(loss, 1.0)
                why = 0
                if not loss <= threshold[b]:
                    why = 2
                elif loss <= loss_below[b]:
                    why = 3
                elif gnorm <= gnorm_below[b]:
                    why = 4
                if rec_pos[b] < n_rec[b] and rec[b, rec_pos[b]] == k:
                    rec_pos[b] += 1
                    store = True
                else:
                    store = why != 0
                if store:
                    m = n_out[b]
                    for p in range(P):
                        out_theta[b, m, p] = th[p]
                    out_loss[b, m] = loss
                    out_gnorm[b, m] = gnorm
                    out_k[b, m] = k
                    n_out[b] = m + 1
                if why != 0:
                    status[b] = why
                    break
                if k == steps[b]:
                    status[b] = 1
                    break
                for p in range(P):
                    th[p] -= step_lr * grad[p]
                k += 1
            k_next[b] = k
            for p in range(P):
                theta[b, p] = th[p]

    return value_and_grad, descend


def compiled_value_and_grad():
    return _compiled()[0]


def compiled_descend():
    return _compiled()[1]


def value_and_grad(program: ChainProgram, forms: QuadraticForms, theta: np.ndarray):
    """``L (B,)`` and ``grad L (B, P)`` of ``theta (B, P)``, member ``b`` with form ``forms.index[b]``."""
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    B = theta.shape[0]
    loss = np.empty(B)
    grad = np.empty_like(theta)
    if B:
        compiled_value_and_grad()(theta, *program_arrays(program), *form_arrays(forms), loss, grad)
    return loss, grad


def program_arrays(p: ChainProgram) -> tuple:
    return (p.param_offsets, p.prefix_offsets, p.triple_offsets, p.out, p.inp, p.tap, p.matmul)


def form_arrays(f: QuadraticForms) -> tuple:
    return (f.S, f.e_min, f.l_min, f.index, float(f.l2))


def chain_program(param_offsets, prefix_sizes, triples, matmul=None) -> ChainProgram:
    """Assemble a :class:`ChainProgram` from the prefix sizes and one ``(out, inp, tap)`` triple of
    index arrays per layer ``l >= 1`` (empty for a matrix-product layer, whose ``(rows, inner,
    cols)`` are ``matmul[l]``)."""
    xo = np.concatenate([[0], np.cumsum(prefix_sizes)]).astype(np.int64)
    counts = [0] + [len(t[0]) for t in triples]
    to = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def cat(i):
        parts = [np.asarray(t[i], dtype=np.int64) for t in triples]
        return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    L = len(prefix_sizes)
    mm = np.zeros((L, 3), dtype=np.int64) if matmul is None else np.ascontiguousarray(matmul, dtype=np.int64)
    return ChainProgram(np.ascontiguousarray(param_offsets, dtype=np.int64), xo, to, cat(0), cat(1), cat(2), mm)
