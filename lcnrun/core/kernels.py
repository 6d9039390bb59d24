"""Compiled kernels (numba): batched ``value_and_grad`` for the square loss and fused gradient
descent on it, and one pass over the samples for the separable losses (lp, pseudo-Huber, log-cosh).

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

**Separable losses** (:class:`SampleForms`). The outputs of all samples are linear in ``e``; every
model lays its samples out as *blocks* of ``R`` output positions: ``pred[blk, ch, m] = sum_k
e[ch, k] Z[base[blk] + off[k] + m]``, so that each tap is one long AXPY over contiguous memory.
An LCN stores its inputs in polyphase order (``Z[j, n, q] = x[n, S q + j]``, ``S = S_L``, ``j``
and ``q`` multi-indices): tap ``k = j + S a`` of output ``m`` reads ``q = m + a``, no patch is
ever copied and ``Z`` is the size of the inputs; a block holds a few whole samples, of whose
``Q`` coarse positions the first ``n_out`` (per axis) are outputs (``run_start/run_len``). A DLN
stores blocks of ``R`` samples transposed. One step reads the data once for all members: per
block, every member computes its outputs, residuals, loss and ``dl/de`` while the block is in
cache.

**Determinism.** Every kernel loops over members and computes each member with the same sequence of
floating-point operations whatever the other members are: a member's results are bitwise
independent of the ensemble it runs in (and of how the work is split into calls). No fast-math, so
no contraction into fused multiply-adds: the forward pass performs exactly the operations of the
numpy tap convolution (:func:`lcnrun.core.models.lcn._tap_conv`), in the same order.

Compiled once per machine (``cache=True``: numba stores the machine code next to this file, or in
its user cache folder if this one is read-only); numba is imported when a kernel is first needed.
"""
from __future__ import annotations

from contextlib import contextmanager
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
def _blas_controller():
    """threadpoolctl's view of the BLAS libraries (numpy's and scipy's, which the kernels' products
    use), looked up once per process."""
    import scipy.linalg  # noqa: F401, PLC0415  (loads scipy's BLAS, so that it is seen too)
    from threadpoolctl import ThreadpoolController  # noqa: PLC0415

    return ThreadpoolController()


@contextmanager
def one_blas_thread():
    """Every BLAS limited to one thread for the duration (the computation of a run).

    Why: a multi-threaded BLAS may split a product's sums differently for another thread count,
    so the same point run with 2 threads (``lcnrun run``) and with 1 (a sweep worker) would not
    give the same file. With one thread, and kernels whose per-member operations do not depend
    on the batch, a point's numbers are those of its run alone whatever the machine's thread
    settings.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@lru_cache(maxsize=None)
def _compiled():
    """The compiled kernels (numba imported, and the machine code loaded from its cache, on first use)."""
    from . import _numba_kernels as nk  # noqa: PLC0415

    return nk.value_and_grad, nk.descend, nk.samples_value_and_grad


def compiled_value_and_grad():
    return _compiled()[0]


def compiled_descend():
    return _compiled()[1]


def compiled_samples_value_and_grad():
    return _compiled()[2]


@dataclass(frozen=True)
class SampleForms:
    """A data set laid out for :func:`samples_value_and_grad` (see the module docstring).

    ``Z`` (flat float64): the features; ``base (n_blocks,)``, ``off (K,)``: ``pred[blk, ch, m] =
    sum_k e[ch, k] Z[base[blk] + off[k] + m]``, ``m < R``, ``e`` of shape ``(c, K)`` (C order);
    ``Y (n_blocks * c * R,)``: the targets at ``(blk, ch, m)``. Position ``m`` is an output iff
    ``m = s * period + run_start[u] + i`` with ``i < run_len[u]`` (other positions are computed
    and ignored; padding samples have zero features and targets: a residual 0, which adds nothing
    to any loss or gradient). ``dl/de`` is accumulated in ``fold`` lanes (``R % fold == 0``,
    ``R % period == 0``). ``kind``, ``param``: the loss (``Loss.kernel_code``); ``n_samples``:
    the ``N`` of the mean; ``l2``: a penalty ``l2 |theta|^2``.
    """

    Z: np.ndarray
    base: np.ndarray
    off: np.ndarray
    Y: np.ndarray
    c: int
    R: int
    period: int
    run_start: np.ndarray
    run_len: np.ndarray
    fold: int
    kind: int
    param: float
    n_samples: int
    l2: float = 0.0

    @classmethod
    def of(cls, layout: dict, loss_code: tuple[int, float], n_samples: int) -> "SampleForms":
        """From a model's ``sample_layout`` (a dict of the fields ``Z`` .. ``fold``) and a loss code."""
        def ints(a):
            return np.ascontiguousarray(a, dtype=np.int64)
        R, period, fold = int(layout["R"]), int(layout["period"]), int(layout["fold"])
        if R % period or R % fold:
            raise ValueError(f"block length {R} must be a multiple of period {period} and fold {fold}")
        return cls(np.ascontiguousarray(layout["Z"], dtype=np.float64).ravel(), ints(layout["base"]),
                   ints(layout["off"]), np.ascontiguousarray(layout["Y"], dtype=np.float64).ravel(),
                   int(layout["c"]), R, period, ints(layout["run_start"]), ints(layout["run_len"]), fold,
                   int(loss_code[0]), float(loss_code[1]), int(n_samples))

    def nbytes(self) -> int:
        return int(self.Z.nbytes + self.Y.nbytes + self.base.nbytes + self.off.nbytes)


def _batched(kernel, program: ChainProgram, form_args: tuple, theta: np.ndarray):
    """``kernel(theta, *program, *form_args, loss, grad)``: ``loss (B,)``, ``grad (B, P)``."""
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    B = theta.shape[0]
    loss = np.empty(B)
    grad = np.empty_like(theta)
    if B:
        kernel(theta, *program_arrays(program), *form_args, loss, grad)
    return loss, grad


def samples_value_and_grad(program: ChainProgram, forms: SampleForms, theta: np.ndarray):
    """``L (B,)`` and ``grad L (B, P)`` of a separable loss, all members in one pass over the data."""
    f = forms
    return _batched(compiled_samples_value_and_grad(), program,
                    (f.Z, f.base, f.off, f.Y, f.c, f.R, f.period, f.run_start, f.run_len, f.fold, f.kind,
                     f.param, float(f.n_samples), float(f.l2)), theta)


def value_and_grad(program: ChainProgram, forms: QuadraticForms, theta: np.ndarray):
    """``L (B,)`` and ``grad L (B, P)`` of ``theta (B, P)``, member ``b`` with form ``forms.index[b]``."""
    return _batched(compiled_value_and_grad(), program, form_arrays(forms), theta)


def one_member_value_and_grad(program: ChainProgram, forms: QuadraticForms):
    """``theta (P,) -> (L, grad L (P,))`` of one member (``forms`` of batch 1): the kernel of
    :func:`value_and_grad` with its arrays bound once. A one-member flow evaluates this thousands
    of times on 4-7 parameters, where packing the arguments per call cost ~10x the kernel."""
    kernel = compiled_value_and_grad()
    args = program_arrays(program) + form_arrays(forms)

    def evaluate(theta):
        theta = np.ascontiguousarray(theta, dtype=np.float64).reshape(1, -1)
        loss = np.empty(1)
        grad = np.empty_like(theta)
        kernel(theta, *args, loss, grad)
        return float(loss[0]), grad[0]
    return evaluate


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
