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
    """The compiled kernels (numba imported, and the machine code loaded from its cache, on first use)."""
    from . import _numba_kernels as nk  # noqa: PLC0415

    return nk.value_and_grad, nk.descend


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
