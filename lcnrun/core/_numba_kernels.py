"""The numba kernels of :mod:`lcnrun.core.kernels` (imported by it on first use, so that importing
``lcnrun.core`` does not import numba). See there for what they compute and why.

Module-level functions with ``cache=True``: numba compiles them once per machine and source
version and stores the machine code next to this file (or in its user cache folder if this folder
is read-only); a later process loads it in milliseconds.
"""
import numba
import numpy as np

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
    # d^T G d >= 0 exactly; clamp the rounding (-1e-17 where G is singular) like QuadraticForm,
    # so the loss never reads below its minimum (NaN passes through: divergence is still seen)
    if quad < 0.0:
        quad = 0.0
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

