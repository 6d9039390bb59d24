"""The numba kernels of :mod:`lcnrun.core.kernels` (imported by it on first use, so that importing
``lcnrun.core`` does not import numba). See there for what they compute and why.

Module-level functions with ``cache=True``: numba compiles them once per machine and source
version and stores the machine code next to this file (or in its user cache folder if this folder
is read-only); a later process loads it in milliseconds.

No ``fastmath``: no reassociation and no contraction into fused multiply-adds, so every sum is
computed in the order written here whatever the vector width, and a member's numbers never
depend on the other members or on how the work is split. The one fused multiply-add is explicit
(:func:`fma`, in log-cosh's polynomials): IEEE's fusedMultiplyAdd, the same double everywhere.
Every inner loop is elementwise (an AXPY over contiguous memory), which LLVM vectorises without
reordering any sum; reductions are kept out of inner loops (or run over short vectors, sequentially).

Hot loops are written inline over views indexed from 0, not as calls: a call with array
arguments costs reference counting per call (measured: a 64-long product as a call ran 5x
slower than the same loop inline), and an index ``lo + i`` that LLVM cannot prove non-negative
keeps numba's wrap-around select in the loop, which stops vectorisation.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

jit = numba.njit(cache=True, nogil=True, error_model="numpy")
#: a scalar helper of a vectorised loop: inlined by numba itself, so that LLVM sees one loop body
inline_jit = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")

#: loss codes of :func:`samples_value_and_grad` (``lcnrun.core.losses``: ``Loss.kernel_code``)
LP, PSEUDO_HUBER, LOG_COSH = 1, 2, 3
#: log cosh r = s Q(s) and tanh r = r H(s), s = r^2, on |r| < 1: the Taylor series of both (through
#: the Bernoulli numbers, 90 terms, exact rationals) economized on s in [0, 1] by shifted Chebyshev
#: polynomials to degrees 15 and 16 (dropped part below 0.008 and 0.011 ulp of the smallest value)
#: and rounded to doubles; evaluated by Horner's rule in fused multiply-adds, the leading terms
#: added last. Measured against 80-digit values over 4,054 points in [0, 1), uniform and
#: log-uniform to 1e-160: within 1.00 and 1.00 ulp (separate multiplies and adds: 1.57 and 1.23;
#: the expm1/log1p form before: 2.96, 2.39). ``scripts/log_cosh_coefficients.py`` derives them again.
LOG_COSH_Q = (
    0.5, -0.083333333333333148, 0.022222222222205695, -0.0067460317454680523, 0.0021869488434961993,
    -0.0007386028506464852, 0.00025657978354470693, -9.0985710201842062e-05, 3.2765192931564661e-05,
    -1.191930264355821e-05, 4.3323310869218534e-06, -1.5291860273073962e-06, 4.9320597803497344e-07,
    -1.310552455068152e-07, 2.437845026299915e-08, -2.2911003035751757e-09,
)
TANH_H = (
    1.0, -0.33333333333333282, 0.13333333333328126, -0.053968253966246056, 0.02186948849531245,
    -0.0088632350244497986, 0.0035921238971461131, -0.0014558107127514827, 0.00058992942429763131,
    -0.00023882814782457968, 9.621904049812106e-05, -3.80526371754106e-05, 1.4269503012787581e-05,
    -4.7513067676108821e-06, 1.2684474901168273e-06, -2.3227658837407426e-07, 2.1219862519163609e-08,
)
#: members of an ensemble that pass over the data together (:func:`samples_value_and_grad`)
MEMBER_GROUP = 8
#: :func:`samples_value_and_grad` asks for the block this many blocks ahead while it works on one
#: from cache (measured on (ii): 2 a little better than 1)
PREFETCH_AHEAD = 2


@intrinsic
def prefetch(typingctx, arr, index):
    """Ask the memory system for the cache line of ``arr[index]`` (into L2: LLVM's
    ``llvm.prefetch``, read, locality 2, data; ``prefetcht1`` on x86). Only a hint: no value
    changes and an address outside ``arr`` never faults; the callers keep ``index`` in bounds."""
    def codegen(context, builder, signature, args):
        arr_type, index_type = signature.args
        data = context.make_array(arr_type)(context, builder, args[0]).data
        i = context.cast(builder, args[1], index_type, types.intp)
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte_ptr], ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]))
        builder.call(fn, [builder.bitcast(builder.gep(data, [i]), byte_ptr), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()
    return types.void(arr, index), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``a b + c`` rounded once (LLVM's ``llvm.fma``: IEEE fusedMultiplyAdd, so the same double on
    every machine, by the FMA instruction where there is one). For the Horner steps of the
    log-cosh polynomials: half the instructions of a multiply and an add (measured 1.98 -> 1.31 ns
    a residual for its two near polynomials) and one rounding fewer a step."""
    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)
    return types.float64(types.float64, types.float64, types.float64), codegen


# -- the bilinear chain ----------------------------------------------------------------------------
@jit
def axpy(y, a, x):
    """``y += a x`` elementwise (views from 0: LLVM sees non-negative indices and vectorises)."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@jit
def chain_forward(theta, po, xo, to, out, inp, tap, mm, buf):
    """The prefixes ``a_0 .. a_{L-1}`` of ``theta (P,)`` into ``buf`` (the last one is ``e``)."""
    L = po.shape[0] - 1
    for p in range(po[1] - po[0]):
        buf[xo[0] + p] = theta[po[0] + p]
    for l in range(1, L):
        bo, ba, bw = xo[l], xo[l - 1], po[l]
        for p in range(xo[l + 1] - xo[l]):
            buf[bo + p] = 0.0
        rows, inner, cols = mm[l, 0], mm[l, 1], mm[l, 2]
        if rows > 0:
            # a_l[i, :] += w[i, k] a_{l-1}[k, :], k ascending
            # a_l = w_l @ a_{l-1}: one BLAS product (dgemm, single-threaded below its threading
            # threshold; each entry a sum over the inner index in the kernel's fixed order)
            np.dot(theta[bw: bw + rows * inner].reshape((rows, inner)),
                   buf[ba: ba + inner * cols].reshape((inner, cols)),
                   buf[bo: bo + rows * cols].reshape((rows, cols)))
        for t in range(to[l], to[l + 1]):
            buf[bo + out[t]] += buf[ba + inp[t]] * theta[bw + tap[t]]


@jit
def chain_backward(theta, po, xo, to, out, inp, tap, mm, buf, gbuf, gnext, grad):
    """``grad = J^T g`` (written) with ``g = dl/de`` in ``gbuf[:E]`` on entry and the prefixes of
    :func:`chain_forward` in ``buf``; ``gnext``: work space."""
    L = po.shape[0] - 1
    for p in range(grad.shape[0]):
        grad[p] = 0.0
    n = xo[L] - xo[L - 1]
    for l in range(L - 1, 0, -1):
        ba, bw = xo[l - 1], po[l]
        na = xo[l] - xo[l - 1]
        for p in range(na):
            gnext[p] = 0.0
        rows, inner, cols = mm[l, 0], mm[l, 1], mm[l, 2]
        if rows > 0:
            # dl/dw_l = g a_{l-1}^T, dl/da_{l-1} = w_l^T g: two BLAS products
            w = theta[bw: bw + rows * inner].reshape((rows, inner))
            g = gbuf[: rows * cols].reshape((rows, cols))
            np.dot(g, buf[ba: ba + inner * cols].reshape((inner, cols)).T,
                   grad[bw: bw + rows * inner].reshape((rows, inner)))
            np.dot(w.T, g, gnext[: inner * cols].reshape((inner, cols)))
        for t in range(to[l], to[l + 1]):
            go = gbuf[out[t]]
            gnext[inp[t]] += go * theta[bw + tap[t]]
            grad[bw + tap[t]] += go * buf[ba + inp[t]]
        for p in range(na):
            gbuf[p] = gnext[p]
        n = na
    for p in range(n):
        grad[po[0] + p] = gbuf[p]


@jit
def add_penalty_and_norm(theta, grad, loss, l2):
    """``loss + l2 |theta|^2`` with ``grad += 2 l2 theta`` (if ``l2 > 0``); returns it and ``|grad|^2``."""
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


# -- the square loss: a quadratic in e -------------------------------------------------------------
@jit
def member_value_grad(theta, po, xo, to, out, inp, tap, mm, S, e_min, l_min, f, l2, buf, gbuf, gnext, d,
                      grad):
    """Loss and ``grad`` (written) of one member ``theta (P,)``; returns ``(loss, |grad|^2)``.
    ``buf`` holds the prefixes, ``gbuf``/``gnext`` pull-back work space, ``d`` the residual."""
    L = po.shape[0] - 1
    chain_forward(theta, po, xo, to, out, inp, tap, mm, buf)
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
    if r > 1:  # a DLN: g = d @ S, one BLAS product
        np.dot(d[:E].reshape((r, c)), S[f], gbuf[:E].reshape((r, c)))
    else:
        for k in range(c):
            axpy(gbuf[:c], d[k], S[f, k])
    quad = 0.0
    for p in range(E):
        quad += d[p] * gbuf[p]
    # d^T G d >= 0 exactly; clamp the rounding (-1e-17 where G is singular) like QuadraticForm,
    # so the loss never reads below its minimum (NaN passes through: divergence is still seen)
    if quad < 0.0:
        quad = 0.0
    loss = l_min[f] + 0.5 * quad
    chain_backward(theta, po, xo, to, out, inp, tap, mm, buf, gbuf, gnext, grad)
    return add_penalty_and_norm(theta, grad, loss, l2)


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


# -- separable losses: the pass over the samples ---------------------------------------------------
@intrinsic
def two_to_the_shifted(typingctx, shifted):
    """``2**n`` for ``shifted = n + 1.5 * 2**52`` (``n`` an integer in [-1022, 1023]): the low bits of
    ``shifted`` hold ``n``, moved into the exponent field (``(bits + 1023) << 52``). Exact; integer
    operations that LLVM vectorises (a library ``ldexp`` it would not)."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        bits = builder.add(builder.bitcast(args[0], i64), i64(1023))
        return builder.bitcast(builder.shl(bits, i64(52)), ir.DoubleType())
    return types.float64(types.float64), codegen


#: 1 / k!, k = 0..13 (each correctly rounded: k! is exact in a double)
EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))
#: 1 / (2k + 1), k = 1..6 (the series of atanh)
ATANH_TAYLOR = tuple(1.0 / (2 * k + 1) for k in range(1, 7))
#: ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 significant bits (n LN2_HI is exact for |n| < 2^21)
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
SHIFT = 1.5 * 2.0 ** 52


@inline_jit
def exp_small(x):
    """``e^x`` for ``x`` in [-80, 0]: ``x = n ln 2 + f`` (n the nearest integer to ``x / ln 2``, by the
    ``SHIFT`` rounding; ``f`` by Cody and Waite's two-part ln 2, ``|f| <= ln 2 / 2``), ``e^f`` by its
    Taylor polynomial of degree 13 (remainder below 0.08 ulp there), times ``2^n``. Within ~1 ulp.
    Inline, branch-free, vectorisable."""
    shifted = x * 1.4426950408889634 + SHIFT
    nf = shifted - SHIFT
    f = (x - nf * LN2_HI) - nf * LN2_LO
    E = EXP_TAYLOR
    p = fma(fma(fma(fma(fma(fma(E[13], f, E[12]), f, E[11]), f, E[10]), f, E[9]), f, E[8]), f, E[7])
    p = fma(fma(fma(fma(fma(fma(fma(p, f, E[6]), f, E[5]), f, E[4]), f, E[3]), f, E[2]), f, E[1]), f, E[0])
    return p * two_to_the_shifted(shifted)


@inline_jit
def log1p_small(u):
    """``log(1 + u)`` for ``u`` in [0, e^-2]: ``2 atanh(w)``, ``w = u / (2 + u) <= 0.064``, by the
    series ``2w + 2w w^2 (1/3 + w^2/5 + .. + w^10/13)`` (remainder below 1.2e-18 relative). Within 2 ulp
    (measured over 20,000 points; in log cosh its error is scaled by at most 0.3)."""
    w = u / (2.0 + u)
    w2 = w * w
    A = ATANH_TAYLOR
    p = fma(fma(fma(fma(fma(A[5], w2, A[4]), w2, A[3]), w2, A[2]), w2, A[1]), w2, A[0])
    w_2 = 2.0 * w
    return w_2 + (w_2 * w2) * p


@jit
def residual_loss(kind, param, pred, Y, lacc, g, t):
    """``r = pred - Y``, ``lacc += loss(r)`` and ``g = loss'(r)`` elementwise over views of one
    length (see :mod:`lcnrun.core.losses` for the formulas); ``t``: work space of that length.
    Views indexed from 0 and loop bodies without branches where there is no library call, so that
    LLVM vectorises them (without reordering any operation)."""
    n = pred.shape[0]
    if kind == PSEUDO_HUBER:
        dd = param * param
        for i in range(n):
            r = pred[i] - Y[i]
            s = r / param
            s2 = s * s
            q = np.sqrt(1.0 + s2)
            lacc[i] += dd * s2 / (q + 1.0)
            g[i] = r / q
    elif kind == LOG_COSH:
        # |r| < 1 (most residuals near a fit): log cosh r = s Q(s), tanh r = r H(s), s = r^2, by
        # Horner's rule in fused multiply-adds written out with constant indices (a loop over the
        # tuple is not vectorised: measured). |r| >= 1: with u = exp(-2|r|), log cosh r =
        # |r| - log 2 + log1p(u) with log 2 in two parts (the double nearest log 2 is 0.42 ulp off
        # the result just above |r| = 1: 2 ulp there in one case of 300, measured) and
        # tanh |r| = (1 - u) / (1 + u), by exp_small (|r| clamped at 40: beyond, log1p(u) < 1e-34
        # is far below half an ulp of |r| and tanh rounds to 1 alike) and log1p_small. Both forms
        # are computed for every residual and one is selected: no branch, no library call, so
        # that LLVM vectorises the whole loop. NaN stays NaN (the second form, and its slope's
        # last select); +-inf gives inf and +-1.
        Q, H = LOG_COSH_Q, TANH_H
        for i in range(n):
            r = pred[i] - Y[i]
            s = r * r
            q = fma(fma(fma(fma(fma(fma(fma(fma(Q[15], s, Q[14]), s, Q[13]), s, Q[12]), s, Q[11]), s, Q[10]),
                                s, Q[9]), s, Q[8]), s, Q[7])
            q = fma(fma(fma(fma(fma(fma(q, s, Q[6]), s, Q[5]), s, Q[4]), s, Q[3]), s, Q[2]), s, Q[1])
            h = fma(fma(fma(fma(fma(fma(fma(fma(H[16], s, H[15]), s, H[14]), s, H[13]), s, H[12]), s, H[11]),
                                s, H[10]), s, H[9]), s, H[8])
            h = fma(fma(fma(fma(fma(fma(fma(h, s, H[7]), s, H[6]), s, H[5]), s, H[4]), s, H[3]), s, H[2]), s, H[1])
            # the leading terms added last, at full precision: s Q(s) = Q0 s + s^2 (Q1 + ..), r H(s) =
            # H0 r + r s (H1 + ..) (Q0 s and H0 r are exact: Q0 = 1/2, H0 = 1)
            near_value = fma(s * s, q, Q[0] * s)
            near_slope = fma(r * s, h, H[0] * r)
            a = abs(r)
            u = exp_small(-2.0 * (a if a < 40.0 else 40.0))
            far = (a - LN2_HI) + (log1p_small(u) - LN2_LO)
            tt = (1.0 - u) / (1.0 + u)
            near = a < 1.0
            lacc[i] += near_value if near else far
            g[i] = near_slope if near else (tt if r >= 0.0 else (-tt if r < 0.0 else r))
    else:  # LP
        p = param
        ip = int(p)
        for i in range(n):
            t[i] = abs(pred[i] - Y[i])
        if p == ip and ip <= 8:
            # |r|^{p-1} by repeated products, one pass per factor
            for i in range(n):
                g[i] = 1.0
            for _ in range(ip - 1):
                for i in range(n):
                    g[i] *= t[i]
        else:
            for i in range(n):
                g[i] = t[i] ** (p - 1.0)
        for i in range(n):
            r = pred[i] - Y[i]
            q = g[i]
            lacc[i] += q * t[i] / p
            g[i] = q if r > 0.0 else (-q if r < 0.0 else 0.0)


@jit
def samples_value_and_grad(theta, po, xo, to, out, inp, tap, mm, Z, base, off, Y, c, R, period, run_start,
                           run_len, fold, kind, param, n_samples, l2, loss, grad):
    """Loss ``(B,)`` and gradient ``(B, P)`` of a separable loss, every member in one pass over the
    data (see :class:`lcnrun.core.kernels.SampleForms` for the layout).

    Per block and member: ``pred[ch, m] = sum_k e[ch, k] Z[base + off[k] + m]`` (k ascending, an
    AXPY of length ``R`` per tap), ``r = pred - Y`` at the valid positions (``run_start/run_len``
    within each ``period``; ``g = 0`` elsewhere); ``dl/de[ch, k]`` is accumulated elementwise into
    ``fold`` lanes (blocks, then pieces of ``fold`` positions, ascending) and summed over the lanes
    once at the end, so that each member's sums run in one fixed order whatever the group.
    The members of a group work through a block in turn while it is in cache (one read of the
    block from memory per group). While the first member's ``dl/de`` works from cache, the
    block ``PREFETCH_AHEAD`` ahead is asked for, a few lines per tap, so that memory is busy
    while the arithmetic runs (otherwise it idles then and the forward pass of the next block
    waits for it: ~1 of ~3 ms a step of (ii), measured).
    """
    B, P = theta.shape
    L = po.shape[0] - 1
    nbuf = xo[-1]
    E = xo[L] - xo[L - 1]
    be = xo[L - 1]
    K = E // c
    bufs = np.empty((B, nbuf))
    for b in range(B):
        chain_forward(theta[b], po, xo, to, out, inp, tap, mm, bufs[b])
    G = min(B, MEMBER_GROUP)
    acc = np.zeros((B, E * fold))
    cR = c * R  # a block's positions
    lacc = np.zeros((B, cR))
    pred = np.empty((G, cR))
    g = np.empty((G, cR))
    t = np.empty(cR)
    n_periods = R // period
    n_folds = R // fold
    # the output positions of a block; where they are most of it, the loss runs over the whole
    # block at once (loops of c R, not of run_len: measured 0.3-0.7 ms a step faster on (ii)) and
    # keeps the outputs only
    output = np.zeros(cR, dtype=np.bool_)
    for ch in range(c):
        for s in range(n_periods):
            for u in range(run_start.shape[0]):
                lo = ch * R + s * period + run_start[u]
                output[lo: lo + run_len[u]] = True
    whole_block = 2 * output.sum() >= cR
    lblock = np.empty(cR)
    # a block's features lie in Z[base + o_lo: base + o_lo + span]; its targets in Y[blk c R: + c R]
    n_blocks = base.shape[0]
    o_lo = off.min()
    z_lines = (off.max() + R - o_lo) // 8 + 2  # 8 doubles a 64-byte line; + 2: the ends unaligned
    y_lines = cR // 8 + 2
    z_per_tap = (z_lines + K - 1) // K
    y_per_tap = (y_lines + K - 1) // K
    z_last, y_last = Z.shape[0] - 1, Y.shape[0] - 1
    # members in groups of MEMBER_GROUP: a group's accumulators stay in cache while it passes over
    # the data (all members per block would push them out of L2 for large ensembles)
    for g0 in range(0, B, MEMBER_GROUP):
        nb = min(B, g0 + MEMBER_GROUP) - g0
        for blk in range(n_blocks):
            zb = base[blk]
            yo = blk * cR
            ahead = blk + PREFETCH_AHEAD
            pz = base[ahead] + o_lo if ahead < n_blocks else -1
            py = ahead * cR
            for j in range(nb):
                pj = pred[j]
                gj = g[j]
                for p in range(cR):
                    pj[p] = 0.0
                    gj[p] = 0.0
            # pred += e[k] Z[. + off[k]], k ascending, four taps per pass over pred (the same
            # additions in the same order as one AXPY per tap, a quarter of the loads and stores)
            for j in range(nb):
                ej = bufs[g0 + j]
                for ch in range(c):
                    pj = pred[j, ch * R: ch * R + R]
                    q0 = be + ch * K
                    k = 0
                    while k + 4 <= K:
                        z0 = Z[zb + off[k]: zb + off[k] + R]
                        z1 = Z[zb + off[k + 1]: zb + off[k + 1] + R]
                        z2 = Z[zb + off[k + 2]: zb + off[k + 2] + R]
                        z3 = Z[zb + off[k + 3]: zb + off[k + 3] + R]
                        w0, w1, w2, w3 = ej[q0 + k], ej[q0 + k + 1], ej[q0 + k + 2], ej[q0 + k + 3]
                        for i in range(R):
                            pj[i] = (((pj[i] + w0 * z0[i]) + w1 * z1[i]) + w2 * z2[i]) + w3 * z3[i]
                        k += 4
                    while k < K:
                        z0 = Z[zb + off[k]: zb + off[k] + R]
                        w0 = ej[q0 + k]
                        for i in range(R):
                            pj[i] += w0 * z0[i]
                        k += 1
            for j in range(nb):
                if whole_block:
                    # the other positions' values (finite or not) are computed and dropped by a
                    # select: lacc gets the very additions of the loop by runs below, g its zeros
                    for p in range(cR):
                        lblock[p] = 0.0
                    residual_loss(kind, param, pred[j], Y[yo: yo + cR], lblock, g[j], t)
                    lj = lacc[g0 + j]
                    gj = g[j]
                    for p in range(cR):
                        lj[p] += lblock[p] if output[p] else 0.0
                        gj[p] = gj[p] if output[p] else 0.0
                    continue
                for ch in range(c):
                    for s in range(n_periods):
                        for u in range(run_start.shape[0]):
                            lo = ch * R + s * period + run_start[u]
                            hi = lo + run_len[u]
                            residual_loss(kind, param, pred[j, lo: hi], Y[yo + lo: yo + hi],
                                          lacc[g0 + j, lo: hi], g[j, lo: hi], t)
            # acc[q, lane] += g[f fold + lane] Z[. + off[k] + f fold + lane], pieces f ascending,
            # four pieces per pass over the lanes (the order of one update per piece)
            for j in range(nb):
                for ch in range(c):
                    gj = g[j, ch * R: ch * R + R]
                    for k in range(K):
                        if j == 0 and ch == 0 and pz >= 0:
                            for q in range(k * z_per_tap, min(z_lines, (k + 1) * z_per_tap)):
                                prefetch(Z, min(pz + 8 * q, z_last))
                            for q in range(k * y_per_tap, min(y_lines, (k + 1) * y_per_tap)):
                                prefetch(Y, min(py + 8 * q, y_last))
                        zk = Z[zb + off[k]: zb + off[k] + R]
                        ao = (ch * K + k) * fold
                        ak = acc[g0 + j, ao: ao + fold]
                        f = 0
                        while f + 4 <= n_folds:
                            h0 = f * fold
                            h1, h2, h3 = h0 + fold, h0 + 2 * fold, h0 + 3 * fold
                            u0, v0 = gj[h0: h1], zk[h0: h1]
                            u1, v1 = gj[h1: h2], zk[h1: h2]
                            u2, v2 = gj[h2: h3], zk[h2: h3]
                            u3, v3 = gj[h3: h3 + fold], zk[h3: h3 + fold]
                            for i in range(fold):
                                ak[i] = (((ak[i] + u0[i] * v0[i]) + u1[i] * v1[i]) + u2[i] * v2[i]) + u3[i] * v3[i]
                            f += 4
                        while f < n_folds:
                            h0 = f * fold
                            u0, v0 = gj[h0: h0 + fold], zk[h0: h0 + fold]
                            for i in range(fold):
                                ak[i] += u0[i] * v0[i]
                            f += 1
    gbuf = np.empty(nbuf)
    gnext = np.empty(nbuf)
    for b in range(B):
        s = 0.0
        for p in range(c * R):
            s += lacc[b, p]
        for q in range(E):
            tq = 0.0
            for m in range(fold):
                tq += acc[b, q * fold + m]
            gbuf[q] = tq / n_samples
        chain_backward(theta[b], po, xo, to, out, inp, tap, mm, bufs[b], gbuf, gnext, grad[b])
        loss[b], _ = add_penalty_and_norm(theta[b], grad[b], s / n_samples, l2)
