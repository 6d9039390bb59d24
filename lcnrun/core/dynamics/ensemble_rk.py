"""Explicit adaptive Runge-Kutta for an ensemble: one step size and one error control per member.

Integrates ``dy/dt = -grad L(y)`` for ``B`` members at once: every stage is one batched gradient
evaluation of all members still running, every other operation is elementwise over members (or a
sum over one member's components). Each member has its own step size ``h_b``, its own error norm
and its own accept/reject decision, so it takes exactly the steps it would take alone: a member's
accuracy, its step sequence and its numbers do not depend on its neighbours (with the compiled
square-loss evaluation they are bitwise those of its run alone; a stiff member only makes the
ensemble take more iterations, in which the others are idle).

The algorithm is scipy's ``solve_ivp`` with ``RK23``, ``RK45`` or ``DOP853``, member by member:
the Butcher tableaux are scipy's (class attributes of the public ``scipy.integrate.RK23``, ``RK45``,
``DOP853``), and so are the initial step
selection (Hairer, Norsett & Wanner II.4), the error norms (DOP853's combined 5th/3rd order
estimate), the step size controller (``SAFETY``, ``MIN_FACTOR``, ``MAX_FACTOR``), the dense output
used for the stored times and the event location (``brentq`` on the dense output, ``xtol = rtol =
4 eps``). Results therefore agree with ``solve_ivp`` to rounding, and always to the tolerance.

Events (all terminal, either direction, checked after every accepted step): divergence
(``threshold - L``, ``-1`` if ``L`` is not finite), ``loss_below`` (``L - value``) and
``grad_norm_below`` (``|grad L| - value``). A member *stalls* if ``STALL_WINDOW`` consecutive
accepted steps advance it by less than ``STALL_FRACTION`` of the time it has left (checked once
every ``STALL_WINDOW`` steps) and fails like a step size below the spacing of floating-point
numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import DOP853, RK23, RK45
from scipy.optimize import brentq

from .. import control

EPS = np.finfo(float).eps
# scipy's step size controller constants (scipy/integrate/_ivp/rk.py, unchanged since scipy 1.0): a
# step's size is multiplied by SAFETY * err^(-1/(q+1)), clipped to [MIN_FACTOR, MAX_FACTOR]. Copied
# rather than imported from the private module; tests/test_ensemble.py compares with solve_ivp.
SAFETY = 0.9       # fraction of the optimal step size
MIN_FACTOR = 0.2   # smallest factor of a step size decrease
MAX_FACTOR = 10    # largest factor of a step size increase


@dataclass(frozen=True)
class Tableau:
    """An embedded explicit Runge-Kutta pair with dense output (scipy's coefficients).

    ``C (S,)``, ``A (S, S)``, ``B (S,)``; error estimate ``E (S+1,)`` (RK23, RK45) or ``E3, E5``
    (DOP853); dense output ``P (S+1, order)`` (RK23, RK45) or the extra stages ``A_extra, C_extra``
    and ``D`` (DOP853).
    """

    name: str
    order: int
    error_estimator_order: int
    C: np.ndarray
    A: np.ndarray
    B: np.ndarray
    E: np.ndarray | None = None
    P: np.ndarray | None = None
    E3: np.ndarray | None = None
    E5: np.ndarray | None = None
    A_extra: np.ndarray | None = None
    C_extra: np.ndarray | None = None
    D: np.ndarray | None = None

    def __post_init__(self):
        S = len(self.C)
        if self.A.shape != (S, S) or self.B.shape != (S,):
            raise ValueError(f"{self.name}: A must be ({S}, {S}) and B ({S},)")
        if not np.allclose(self.A.sum(axis=1), self.C, atol=1e-12):
            raise ValueError(f"{self.name}: the rows of A must sum to C")
        if not abs(self.B.sum() - 1) < 1e-12:
            raise ValueError(f"{self.name}: the weights B must sum to 1")
        if np.any(np.triu(self.A) != 0):
            raise ValueError(f"{self.name}: A must be strictly lower triangular (explicit)")

    @property
    def n_stages(self) -> int:
        return len(self.C)

    @classmethod
    def from_scipy(cls, solver) -> "Tableau":
        C = np.asarray(solver.C, float)
        A = np.zeros((len(C), len(C)))
        A[:, : np.shape(solver.A)[1]] = solver.A  # scipy stores RK23/RK45's A without its zero last column
        base = dict(name=solver.__name__, order=solver.order, error_estimator_order=solver.error_estimator_order,
                    C=C, A=A, B=np.asarray(solver.B, float))
        if solver is DOP853:
            return cls(**base, E3=np.asarray(solver.E3, float), E5=np.asarray(solver.E5, float),
                       A_extra=np.asarray(solver.A_EXTRA, float), C_extra=np.asarray(solver.C_EXTRA, float),
                       D=np.asarray(solver.D, float))
        return cls(**base, E=np.asarray(solver.E, float), P=np.asarray(solver.P, float))


TABLEAUX: dict[str, Tableau] = {solver.__name__: Tableau.from_scipy(solver) for solver in (RK23, RK45, DOP853)}


def _combine(K, coefficients, upto: int, h=None):
    """``sum_{j < upto} coefficients[j] K[j]`` (``K (S, m, n)``), over the non-zero coefficients in
    order, then times ``h (m,)``: elementwise, so each member's sum is the same in any ensemble."""
    acc = None
    for j in range(upto):
        a = coefficients[j]
        if a == 0.0:
            continue
        acc = K[j] * a if acc is None else acc + K[j] * a
    if acc is None:
        acc = np.zeros_like(K[0])
    return acc if h is None else acc * h[:, None]


def _rms(x):
    """Root mean square of each row of ``x (m, n)``."""
    return np.sqrt(np.einsum("bn,bn->b", x, x)) / np.sqrt(x.shape[1])


@dataclass
class MemberOutcome:
    """One member's integration: stored times and states, how it ended, solver counts."""

    t: list = field(default_factory=list)
    y: list = field(default_factory=list)
    status: str = "running"   # completed | diverged | failed | loss_below | grad_norm_below | stalled
    t_stop: float = 0.0
    nfev: int = 0
    n_steps: int = 0
    message: str = ""


class _Dense:
    """Dense output of the last accepted step of a subset of members (rows)."""

    def __init__(self, tab: Tableau, t_old, h, y_old, y_new, f_old, f_new, K, extra_stages):
        self.t_old, self.h, self.y_old = t_old, h, y_old
        if tab.P is not None:
            S = tab.n_stages + 1
            # Q[b] = K[:, b]^T P, shape (m, n, order)
            self.Q = np.einsum("smn,sk->mnk", K[:S], tab.P)
            self.F = None
        else:
            Kx = extra_stages
            delta = y_new - y_old
            F = [delta, h[:, None] * f_old - delta, 2 * delta - h[:, None] * (f_new + f_old)]
            for row in tab.D:
                F.append(_combine(Kx, row, len(row), h))
            self.F = F
            self.Q = None

    def __call__(self, rows, t):
        """States of members ``rows`` (indices into this subset) at their times ``t (len(rows),)``."""
        x = (t - self.t_old[rows]) / self.h[rows]
        if self.Q is not None:
            order = self.Q.shape[2]
            p = np.cumprod(np.repeat(x[:, None], order, axis=1), axis=1)  # x, x^2, ...
            y = self.h[rows, None] * np.einsum("mnk,mk->mn", self.Q[rows], p)
            return y + self.y_old[rows]
        y = np.zeros_like(self.y_old[rows])
        for i, f in enumerate(reversed(self.F)):
            y += f[rows]
            y *= x[:, None] if i % 2 == 0 else (1 - x)[:, None]
        return y + self.y_old[rows]


def integrate_ensemble(evaluate, y0, t_end, t_evals, rtol, atol, tab: Tableau, *, threshold,
                       loss_below, grad_norm_below, stall_window: int, stall_fraction: float):
    """Integrate ``dy/dt = -grad L(y)`` for every member (rows of ``y0 (B, n)``).

    ``evaluate(y (m, n), members (m,)) -> (L (m,), grad (m, n))`` evaluates members ``members``.
    Per member: ``t_end[b]``, stored times ``t_evals[b]`` (increasing, in ``[0, t_end[b]]``,
    starting at 0), ``rtol[b]``, ``atol[b]``, divergence ``threshold[b]``, ``loss_below[b]`` and
    ``grad_norm_below[b]`` (NaN: no rule). Returns one :class:`MemberOutcome` per member with its
    stored ``t`` and ``y`` (the stop state appended after a terminal event).
    """
    y = np.array(y0, dtype=float)
    B, n = y.shape
    out = [MemberOutcome() for _ in range(B)]
    everyone = np.arange(B)
    rtol, atol = np.asarray(rtol, float), np.asarray(atol, float)
    t_end = np.asarray(t_end, float)
    threshold = np.asarray(threshold, float)
    loss_below, grad_norm_below = np.asarray(loss_below, float), np.asarray(grad_norm_below, float)
    loss, grad = evaluate(y, everyone)
    f = -grad
    gnorm = np.sqrt(np.einsum("bn,bn->b", grad, grad))

    # initial step: scipy's select_initial_step, per member
    scale = atol[:, None] + np.abs(y) * rtol[:, None]
    d0, d1 = _rms(y / scale), _rms(f / scale)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
        h0 = np.where(h0 < t_end, h0, t_end)
        f1 = -evaluate(y + h0[:, None] * f, everyone)[1]
        d2 = _rms((f1 - f) / scale) / h0
        dmax = np.where(d2 > d1, d2, d1)
        h1 = np.where((d1 <= 1e-15) & (d2 <= 1e-15), np.where(h0 * 1e-3 > 1e-6, h0 * 1e-3, 1e-6),
                      (0.01 / dmax) ** (1.0 / (tab.error_estimator_order + 1)))
    h_abs = 100 * h0
    h_abs = np.where(h1 < h_abs, h1, h_abs)
    h_abs = np.where(t_end < h_abs, t_end, h_abs)
    nfev = np.full(B, 2, dtype=np.int64)
    n_steps = np.zeros(B, dtype=np.int64)

    S = tab.n_stages
    exponent = -1.0 / (tab.error_estimator_order + 1)
    t = np.zeros(B)
    g_prev = _event_values(loss, gnorm, threshold, loss_below, grad_norm_below)
    next_eval = np.zeros(B, dtype=np.int64)  # index into t_evals[b] of the next time to store
    for b in range(B):  # t = 0 is stored as it is (dense output at x = 0 is y_old exactly)
        if len(t_evals[b]) and t_evals[b][0] == 0.0:
            out[b].t.append(0.0)
            out[b].y.append(y[b].copy())
            next_eval[b] = 1
    next_time = np.array([te[i] if i < len(te) else np.inf for te, i in zip(t_evals, next_eval)])
    rejected = np.zeros(B, dtype=bool)
    checkpoint_t = np.zeros(B)
    running = np.ones(B, dtype=bool)
    while running.any():
        control.poll()
        idx = np.flatnonzero(running)
        tb, hb = t[idx], h_abs[idx]
        min_step = 10 * np.abs(np.nextafter(tb, np.inf) - tb)
        fresh = ~rejected[idx]
        hb = np.where(fresh & (hb < min_step), min_step, hb)
        too_small = ~fresh & (hb < min_step)
        if too_small.any():
            for b in idx[too_small]:
                out[b].status, out[b].t_stop = "failed", float(t[b])
                out[b].message = "Required step size is less than spacing between numbers."
            running[idx[too_small]] = False
            keep = ~too_small
            idx, tb, hb = idx[keep], tb[keep], hb[keep]
            if not len(idx):
                continue
        m = len(idx)
        yb, fb = y[idx], f[idx]
        t_new = tb + hb
        t_new = np.where(t_new > t_end[idx], t_end[idx], t_new)
        h = t_new - tb
        K = np.empty((S + 1, m, n))
        K[0] = fb
        for s in range(1, S):
            K[s] = -evaluate(yb + _combine(K, tab.A[s], s, h), idx)[1]
        y_new = yb + _combine(K, tab.B, S, h)
        loss_new, grad_new = evaluate(y_new, idx)
        f_new = -grad_new
        K[S] = f_new
        nfev[idx] += S
        sc = atol[idx, None] + np.maximum(np.abs(yb), np.abs(y_new)) * rtol[idx, None]
        with np.errstate(all="ignore"):
            if tab.E is not None:
                err = _rms(_combine(K, tab.E, S + 1, h) / sc)
            else:
                e5 = _combine(K, tab.E5, S + 1) / sc
                e3 = _combine(K, tab.E3, S + 1) / sc
                n5 = np.einsum("bn,bn->b", e5, e5)
                n3 = np.einsum("bn,bn->b", e3, e3)
                err = np.where((n5 == 0) & (n3 == 0), 0.0, np.abs(h) * n5 / np.sqrt((n5 + 0.01 * n3) * n))
            grow = SAFETY * err ** exponent
        accept = err < 1
        factor_ok = np.where(err == 0, MAX_FACTOR, np.where(grow < MAX_FACTOR, grow, MAX_FACTOR))
        factor_ok = np.where(rejected[idx] & (factor_ok > 1), 1.0, factor_ok)
        factor_bad = np.where(grow > MIN_FACTOR, grow, MIN_FACTOR)  # a NaN error gives MIN_FACTOR
        h_abs[idx] = np.where(accept, h * factor_ok, h * factor_bad)
        rejected[idx] = ~accept
        if not accept.any():
            continue
        # -- accepted steps --------------------------------------------------------------------
        a = np.flatnonzero(accept)
        ia = idx[a]
        t_old_a, y_old_a, f_old_a, h_a = tb[a], yb[a], fb[a], h[a]
        t_new_a = t_new[a]
        t[ia], y[ia], f[ia] = t_new_a, y_new[a], f_new[a]
        n_steps[ia] += 1
        gnorm_a = np.sqrt(np.einsum("bn,bn->b", grad_new[a], grad_new[a]))
        g_new = _event_values(loss_new[a], gnorm_a, threshold[ia], loss_below[ia], grad_norm_below[ia])
        g_old = g_prev[ia]
        fired = ((g_old <= 0) & (g_new >= 0)) | ((g_old >= 0) & (g_new <= 0))
        g_prev[ia] = g_new
        any_fired = fired.any(axis=1)
        need_dense = any_fired | (next_time[ia] <= t_new_a)
        if need_dense.any():
            rows = np.flatnonzero(need_dense)
            Kd = K[:, a[rows]]
            extra = None
            if tab.P is None:  # DOP853: three more stages for its 7th order interpolant
                extra = np.empty((S + 1 + len(tab.C_extra), len(rows), n))
                extra[: S + 1] = Kd
                for s, arow in enumerate(tab.A_extra, start=S + 1):
                    extra[s] = -evaluate(y_old_a[rows] + _combine(extra, arow, s, h_a[rows]), ia[rows])[1]
                nfev[ia[rows]] += len(tab.C_extra)
            dense = _Dense(tab, t_old_a[rows], h_a[rows], y_old_a[rows], y_new[a[rows]], f_old_a[rows],
                           f_new[a[rows]], Kd, extra)
            for k, j in enumerate(rows):
                b = int(ia[j])
                cut, kind = float(t_new_a[j]), None
                if any_fired[j]:
                    roots = [(_locate(evaluate, dense, k, b, e, t_old_a[j], t_new_a[j], threshold[b],
                                      loss_below[b], grad_norm_below[b]), int(e))
                             for e in np.flatnonzero(fired[j])]
                    cut, e = min(roots)
                    kind = ("diverged", "loss_below", "grad_norm_below")[e]
                te = t_evals[b]
                while next_eval[b] < len(te) and te[next_eval[b]] <= cut:
                    tt = float(te[next_eval[b]])
                    out[b].t.append(tt)
                    out[b].y.append(dense(np.array([k]), np.array([tt]))[0])
                    next_eval[b] += 1
                next_time[b] = te[next_eval[b]] if next_eval[b] < len(te) else np.inf
                if kind is not None:
                    if not out[b].t or cut > out[b].t[-1]:
                        out[b].t.append(cut)
                        out[b].y.append(dense(np.array([k]), np.array([cut]))[0])
                    out[b].status, out[b].t_stop = kind, cut
                    running[b] = False
        done = running[ia] & (t_new_a >= t_end[ia])
        for b in ia[done]:
            out[b].status, out[b].t_stop = "completed", float(t[b])
        running[ia[done]] = False
        check = running[ia] & (n_steps[ia] % stall_window == 0)
        for b in ia[check]:
            if t[b] - checkpoint_t[b] < stall_fraction * (t_end[b] - checkpoint_t[b]):
                out[b].status, out[b].t_stop = "stalled", float(t[b])
                out[b].message = f"its last {stall_window} steps advanced t by {t[b] - checkpoint_t[b]:.3g} in all"
                running[b] = False
            checkpoint_t[b] = t[b]
    for b in range(B):
        out[b].nfev, out[b].n_steps = int(nfev[b]), int(n_steps[b])
    return out


def _event_values(loss, gnorm, threshold, loss_below, grad_norm_below):
    """``(m, 3)``: divergence ``threshold - L`` (-1 if not finite), ``L - loss_below``,
    ``|grad| - grad_norm_below`` (NaN, i.e. never active, for a rule that is not set)."""
    with np.errstate(invalid="ignore"):
        div = np.where(np.isfinite(loss), threshold - loss, -1.0)
        return np.stack([div, loss - loss_below, gnorm - grad_norm_below], axis=1)


def _locate(evaluate, dense, k, b, e, t_old, t_new, threshold, loss_below, grad_norm_below):
    """Time of event ``e`` of member ``b`` in ``[t_old, t_new]`` (brentq on the dense output)."""
    member = np.array([b])

    def g(tt):
        yy = dense(np.array([k]), np.array([tt]))
        with np.errstate(all="ignore"):
            loss, grad = evaluate(yy, member)
            gn = np.sqrt(np.einsum("bn,bn->b", grad, grad))
        return float(_event_values(loss, gn, np.array([threshold]), np.array([loss_below]),
                                   np.array([grad_norm_below]))[0, e])
    return brentq(g, t_old, t_new, xtol=4 * EPS, rtol=4 * EPS)
