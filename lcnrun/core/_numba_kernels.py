"""The numba kernels of :mod:`lcnrun.core.kernels` (imported by it on first use, so that importing
``lcnrun.core`` does not import numba). See there for what they compute and why.

Module-level functions with ``cache=True``: numba compiles them once per machine and source
version and stores the machine code next to this file (or in its user cache folder if this folder
is read-only); a later process loads it in milliseconds.

No ``fastmath``: no reassociation and no contraction into fused multiply-adds, so every sum is
computed in the order written here whatever the vector width, and a member's numbers never
depend on the other members or on how the work is split. Every inner loop is elementwise (an
AXPY over contiguous memory), which LLVM vectorises without reordering any sum; reductions are
kept out of inner loops (or run over short vectors, sequentially).
"""
import math

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, error_model="numpy")

#: loss codes of :func:`samples_value_and_grad` (``lcnrun.core.losses``: ``Loss.kernel_code``)
LP, PSEUDO_HUBER, LOG_COSH = 1, 2, 3
#: members of an ensemble that pass over the data together (:func:`samples_value_and_grad`)
MEMBER_GROUP = 8


# -- the bilinear chain ----------------------------------------------------------------------------
@jit
def axpy(y, a, x):
    """``y += a x`` elementwise (views from 0: LLVM sees non-negative indices and vectorises)."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@jit
def add_product(y, u, v):
    """``y += u v`` elementwise."""
    for i in range(y.shape[0]):
        y[i] += u[i] * v[i]


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
@jit
def residual_loss(kind, param, pred, Y, yo, lo, n, lacc, g):
    """At positions ``lo .. lo+n-1``: ``r = pred - Y[yo + .]``, ``lacc += loss(r)`` and ``g = loss'(r)``
    elementwise (see :mod:`lcnrun.core.losses` for the formulas)."""
    if kind == PSEUDO_HUBER:
        dd = param * param
        for m in range(lo, lo + n):
            r = pred[m] - Y[yo + m]
            s = r / param
            s2 = s * s
            q = np.sqrt(1.0 + s2)
            lacc[m] += dd * s2 / (q + 1.0)
            g[m] = r / q
    elif kind == LOG_COSH:
        log2 = math.log(2.0)
        for m in range(lo, lo + n):
            r = pred[m] - Y[yo + m]
            a = abs(r)
            if a < 1.0:
                # E = e^a - 1: cosh a - 1 = E^2 / (2 (1 + E)), tanh a = E (E + 2) / (E (E + 2) + 2)
                em = math.expm1(a)
                u = em * (em + 2.0)
                lacc[m] += math.log1p(em * em / (2.0 * (1.0 + em)))
                t = u / (u + 2.0)
            else:
                # E = e^{-2a} - 1: log cosh a = a + log1p(E + 1) - log 2, tanh a = -E / (2 + E)
                em = math.expm1(-2.0 * a)
                lacc[m] += a + math.log1p(em + 1.0) - log2
                t = -em / (2.0 + em)
            g[m] = t if r >= 0.0 else -t
    else:  # LP
        p = param
        ip = int(p)
        integer = p == ip and ip <= 8
        for m in range(lo, lo + n):
            r = pred[m] - Y[yo + m]
            a = abs(r)
            if integer:
                q = 1.0
                for _ in range(ip - 1):
                    q *= a
            else:
                q = a ** (p - 1.0)
            lacc[m] += q * a / p
            g[m] = q if r > 0.0 else (-q if r < 0.0 else 0.0)


@jit
def samples_value_and_grad(theta, po, xo, to, out, inp, tap, mm, Z, base, off, Y, c, R, period, run_start,
                           run_len, fold, kind, param, n_samples, l2, loss, grad):
    """Loss ``(B,)`` and gradient ``(B, P)`` of a separable loss, every member in one pass over the
    data (see :class:`lcnrun.core.kernels.SampleForms` for the layout).

    Per block and member: ``pred[ch, m] = sum_k e[ch, k] Z[base + off[k] + m]`` (k ascending, an
    AXPY of length ``R`` per tap), ``r = pred - Y`` at the valid positions (``run_start/run_len``
    within each ``period``; ``g = 0`` elsewhere); ``dl/de[ch, k]`` is accumulated elementwise into
    ``fold`` lanes and summed over the lanes once at the end, so that each member's sums run in
    one fixed order.
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
    acc = np.zeros((B, E * fold))
    lacc = np.zeros((B, c * R))
    pred = np.empty(c * R)
    g = np.empty(c * R)
    n_periods = R // period
    n_folds = R // fold
    # members in groups of MEMBER_GROUP: a group's accumulators stay in cache while it passes over
    # the data (all members per block would push them out of L2 for large ensembles)
    for g0 in range(0, B, MEMBER_GROUP):
        for blk in range(base.shape[0]):
            zb = base[blk]
            yo = blk * c * R
            for b in range(g0, min(B, g0 + MEMBER_GROUP)):
                buf = bufs[b]
                accb = acc[b]
                laccb = lacc[b]
                for p in range(c * R):
                    pred[p] = 0.0
                    g[p] = 0.0
                for ch in range(c):
                    o = ch * R
                    pch = pred[o: o + R]
                    for k in range(K):
                        zo = zb + off[k]
                        axpy(pch, buf[be + ch * K + k], Z[zo: zo + R])
                for ch in range(c):
                    for s in range(n_periods):
                        for u in range(run_start.shape[0]):
                            lo = ch * R + s * period + run_start[u]
                            residual_loss(kind, param, pred, Y, yo, lo, run_len[u], laccb, g)
                for ch in range(c):
                    o = ch * R
                    for k in range(K):
                        zo = zb + off[k]
                        ao = (ch * K + k) * fold
                        ak = accb[ao: ao + fold]
                        for f in range(n_folds):
                            fo = f * fold
                            add_product(ak, g[o + fo: o + fo + fold], Z[zo + fo: zo + fo + fold])
    gbuf = np.empty(nbuf)
    gnext = np.empty(nbuf)
    for b in range(B):
        s = 0.0
        for p in range(c * R):
            s += lacc[b, p]
        for q in range(E):
            t = 0.0
            for m in range(fold):
                t += acc[b, q * fold + m]
            gbuf[q] = t / n_samples
        chain_backward(theta[b], po, xo, to, out, inp, tap, mm, bufs[b], gbuf, gnext, grad[b])
        loss[b], _ = add_penalty_and_norm(theta[b], grad[b], s / n_samples, l2)
