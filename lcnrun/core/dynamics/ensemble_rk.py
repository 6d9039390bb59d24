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
from .stopping import RULES, StopRules

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


class _EnsembleRun:
    """Every member's integrator state between two steps: ``t (B,)``, ``y (B, n)``, the last
    derivative ``f (B, n)``, the next step size ``h_abs (B,)``, whether the last attempt was
    rejected (the controller's state), the rules' values at the last accepted step ``g_prev (B, 3)``,
    the next stored time ``next_eval``, the stall reference time ``stall_t``, the counts, whether
    it runs, and its :class:`MemberOutcome` so far. A member's :meth:`state` given back to
    :meth:`resume` continues bitwise where it was."""

    ARRAYS = ("t", "y", "f", "h_abs", "rejected", "g_prev", "next_eval", "stall_t", "nfev", "n_steps",
              "running")

    def __init__(self, y0, f0, h_abs, g0, t_evals):
        B = len(y0)
        self.t_evals = t_evals
        self.t, self.y, self.f, self.h_abs, self.g_prev = np.zeros(B), y0, f0, h_abs, g0
        self.rejected = np.zeros(B, dtype=bool)
        self.next_eval = np.zeros(B, dtype=np.int64)  # index into t_evals[b] of the next time to store
        self.stall_t = np.zeros(B)
        self.nfev = np.full(B, 2, dtype=np.int64)
        self.n_steps = np.zeros(B, dtype=np.int64)
        self.running = np.ones(B, dtype=bool)
        self.out = [MemberOutcome() for _ in range(B)]
        for b in range(B):  # t = 0 is stored as it is (dense output at x = 0 is y_old exactly)
            if len(t_evals[b]) and t_evals[b][0] == 0.0:
                self.out[b].t.append(0.0)
                self.out[b].y.append(y0[b].copy())
                self.next_eval[b] = 1
        self.next_time = np.array([self._next(b) for b in range(B)])

    def _next(self, b) -> float:
        te, i = self.t_evals[b], self.next_eval[b]
        return float(te[i]) if i < len(te) else np.inf

    def state(self) -> dict[int, dict]:
        out = {}
        for b, o in enumerate(self.out):
            s = {name: getattr(self, name)[b].copy() for name in self.ARRAYS}
            s["t"] = float(self.t[b])
            s["out"] = {"t": np.asarray(o.t, dtype=float),
                        "y": np.asarray(o.y, dtype=float).reshape(len(o.t), self.y.shape[1]),
                        "status": o.status, "t_stop": o.t_stop, "message": o.message}
            out[b] = s
        return out

    def resume(self, starts) -> None:
        for b, s in enumerate(starts):
            if s is None:
                continue
            for name in self.ARRAYS:
                getattr(self, name)[b] = s[name]
            o = s["out"]
            self.out[b] = MemberOutcome(t=[float(v) for v in o["t"]], y=list(o["y"]), status=o["status"],
                                        t_stop=float(o["t_stop"]), message=o["message"])
            self.next_time[b] = self._next(b)

    def fail(self, b, status, message="") -> None:
        self.out[b].status, self.out[b].t_stop, self.out[b].message = status, float(self.t[b]), message
        self.running[b] = False


def integrate_ensemble(evaluate, y0, t_end, t_evals, rtol, atol, tab: Tableau, *, rules: StopRules,
                       stall_window: int, stall_fraction: float):
    """Integrate ``dy/dt = -grad L(y)`` for every member (rows of ``y0 (B, n)``).

    ``evaluate(y (m, n), members (m,)) -> (L (m,), grad (m, n))`` evaluates members ``members``.
    Per member: ``t_end[b]``, stored times ``t_evals[b]`` (increasing, in ``[0, t_end[b]]``,
    starting at 0), ``rtol[b]``, ``atol[b]`` and its stopping ``rules`` (member ``b`` of a
    :class:`~.stopping.StopRules`). Returns one :class:`MemberOutcome` per member with its stored
    ``t`` and ``y`` (the stop state appended after a terminal event). Members given a start
    state (:func:`lcnrun.core.control.start_states`) continue where it was taken.
    """
    y = np.array(y0, dtype=float)
    B = len(y)
    rtol, atol, t_end = np.asarray(rtol, float), np.asarray(atol, float), np.asarray(t_end, float)
    loss, grad = evaluate(y, np.arange(B))
    gnorm = np.sqrt(np.einsum("bn,bn->b", grad, grad))
    h_abs = _initial_step(evaluate, y, -grad, t_end, rtol, atol, tab)
    run = _EnsembleRun(y, -grad, h_abs, rules.values(loss, gnorm), t_evals)
    run.resume(control.start_states(B))
    tol = (rtol, atol, t_end)
    while run.running.any():
        control.poll(run.state)
        attempt = _attempt(evaluate, run, tab, tol)
        if attempt is not None:
            _accept(evaluate, run, tab, rules, t_end, attempt)
            _check_stall(run, attempt[0][attempt[1]], t_end, stall_window, stall_fraction)
    for b in range(B):
        run.out[b].nfev, run.out[b].n_steps = int(run.nfev[b]), int(run.n_steps[b])
    return run.out


def _initial_step(evaluate, y, f, t_end, rtol, atol, tab):
    """scipy's ``select_initial_step`` (Hairer, Norsett & Wanner II.4), per member: ``h_abs (B,)``."""
    scale = atol[:, None] + np.abs(y) * rtol[:, None]
    d0, d1 = _rms(y / scale), _rms(f / scale)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
        h0 = np.where(h0 < t_end, h0, t_end)
        f1 = -evaluate(y + h0[:, None] * f, np.arange(len(y)))[1]
        d2 = _rms((f1 - f) / scale) / h0
        dmax = np.where(d2 > d1, d2, d1)
        h1 = np.where((d1 <= 1e-15) & (d2 <= 1e-15), np.where(h0 * 1e-3 > 1e-6, h0 * 1e-3, 1e-6),
                      (0.01 / dmax) ** (1.0 / (tab.error_estimator_order + 1)))
    h_abs = 100 * h0
    h_abs = np.where(h1 < h_abs, h1, h_abs)
    return np.where(t_end < h_abs, t_end, h_abs)


def _attempt(evaluate, run: _EnsembleRun, tab: Tableau, tol):
    """One step attempt of every running member: the stages, the error norm, the controller's
    next step size. Returns ``(idx, a, K, tb, yb, fb, h, t_new, y_new, loss_new, grad_new)``
    (members ``idx``, of which ``a`` were accepted) or None if none was."""
    rtol, atol, t_end = tol
    idx = np.flatnonzero(run.running)
    tb, hb = run.t[idx], run.h_abs[idx]
    min_step = 10 * np.abs(np.nextafter(tb, np.inf) - tb)
    fresh = ~run.rejected[idx]
    hb = np.where(fresh & (hb < min_step), min_step, hb)
    too_small = ~fresh & (hb < min_step)
    if too_small.any():
        for b in idx[too_small]:
            run.fail(b, "failed", "Required step size is less than spacing between numbers.")
        keep = ~too_small
        idx, tb, hb = idx[keep], tb[keep], hb[keep]
        if not len(idx):
            return None
    S, n = tab.n_stages, run.y.shape[1]
    yb, fb = run.y[idx], run.f[idx]
    t_new = tb + hb
    t_new = np.where(t_new > t_end[idx], t_end[idx], t_new)
    h = t_new - tb
    K = np.empty((S + 1, len(idx), n))
    K[0] = fb
    for s in range(1, S):
        K[s] = -evaluate(yb + _combine(K, tab.A[s], s, h), idx)[1]
    y_new = yb + _combine(K, tab.B, S, h)
    loss_new, grad_new = evaluate(y_new, idx)
    K[S] = -grad_new
    run.nfev[idx] += S
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
        grow = SAFETY * err ** (-1.0 / (tab.error_estimator_order + 1))
    accept = err < 1
    factor_ok = np.where(err == 0, MAX_FACTOR, np.where(grow < MAX_FACTOR, grow, MAX_FACTOR))
    factor_ok = np.where(run.rejected[idx] & (factor_ok > 1), 1.0, factor_ok)
    factor_bad = np.where(grow > MIN_FACTOR, grow, MIN_FACTOR)  # a NaN error gives MIN_FACTOR
    run.h_abs[idx] = np.where(accept, h * factor_ok, h * factor_bad)
    run.rejected[idx] = ~accept
    if not accept.any():
        return None
    return idx, np.flatnonzero(accept), K, tb, yb, fb, h, t_new, y_new, loss_new, grad_new


def _accept(evaluate, run: _EnsembleRun, tab: Tableau, rules: StopRules, t_end, attempt) -> None:
    """The accepted steps: new states, the rules (located on the dense output where one fired),
    the stored times they passed, the members that reached their end."""
    idx, a, K, tb, yb, fb, h, t_new, y_new, loss_new, grad_new = attempt
    S, n = tab.n_stages, run.y.shape[1]
    ia = idx[a]
    t_old_a, y_old_a, f_old_a, h_a = tb[a], yb[a], fb[a], h[a]
    t_new_a = t_new[a]
    run.t[ia], run.y[ia], run.f[ia] = t_new_a, y_new[a], -grad_new[a]
    run.n_steps[ia] += 1
    gnorm_a = np.sqrt(np.einsum("bn,bn->b", grad_new[a], grad_new[a]))
    g_new = rules.values(loss_new[a], gnorm_a, ia)
    g_old = run.g_prev[ia]
    fired = ((g_old <= 0) & (g_new >= 0)) | ((g_old >= 0) & (g_new <= 0))
    run.g_prev[ia] = g_new
    any_fired = fired.any(axis=1)
    need_dense = any_fired | (run.next_time[ia] <= t_new_a)
    if need_dense.any():
        rows = np.flatnonzero(need_dense)
        extra = None
        if tab.P is None:  # DOP853: three more stages for its 7th order interpolant
            extra = np.empty((S + 1 + len(tab.C_extra), len(rows), n))
            extra[: S + 1] = K[:, a[rows]]
            for s, arow in enumerate(tab.A_extra, start=S + 1):
                extra[s] = -evaluate(y_old_a[rows] + _combine(extra, arow, s, h_a[rows]), ia[rows])[1]
            run.nfev[ia[rows]] += len(tab.C_extra)
        dense = _Dense(tab, t_old_a[rows], h_a[rows], y_old_a[rows], y_new[a[rows]], f_old_a[rows],
                       -grad_new[a[rows]], K[:, a[rows]], extra)
        for k, j in enumerate(rows):
            b = int(ia[j])
            cut, kind = float(t_new_a[j]), None
            if any_fired[j]:
                cut, e = min((_locate(evaluate, dense, k, b, e, t_old_a[j], t_new_a[j], rules), int(e))
                             for e in np.flatnonzero(fired[j]))
                kind = RULES[e]
            _store_passed(run, dense, k, b, cut)
            if kind is not None:
                out = run.out[b]
                if not out.t or cut > out.t[-1]:
                    out.t.append(cut)
                    out.y.append(dense(np.array([k]), np.array([cut]))[0])
                out.status, out.t_stop = kind, cut
                run.running[b] = False
    done = run.running[ia] & (t_new_a >= t_end[ia])
    for b in ia[done]:
        run.fail(b, "completed")


def _store_passed(run: _EnsembleRun, dense, k, b, cut) -> None:
    """Store member ``b``'s times up to ``cut`` from the dense output (row ``k``)."""
    te, out = run.t_evals[b], run.out[b]
    while run.next_eval[b] < len(te) and te[run.next_eval[b]] <= cut:
        tt = float(te[run.next_eval[b]])
        out.t.append(tt)
        out.y.append(dense(np.array([k]), np.array([tt]))[0])
        run.next_eval[b] += 1
    run.next_time[b] = run._next(b)


def _check_stall(run: _EnsembleRun, idx, t_end, stall_window, stall_fraction) -> None:
    """Members ``idx`` (those that just took a step), every ``stall_window`` accepted steps of
    each: stalled if they advanced it by less
    than ``stall_fraction`` of the time it had left."""
    check = run.running[idx] & (run.n_steps[idx] % stall_window == 0)
    for b in idx[check]:
        advanced = run.t[b] - run.stall_t[b]
        if advanced < stall_fraction * (t_end[b] - run.stall_t[b]):
            run.fail(b, "stalled", f"its last {stall_window} steps advanced t by {advanced:.3g} in all")
        run.stall_t[b] = run.t[b]


def _locate(evaluate, dense, k, b, e, t_old, t_new, rules: StopRules):
    """Time of rule ``e`` of member ``b`` in ``[t_old, t_new]`` (brentq on the dense output)."""
    member = np.array([b])

    def g(tt):
        yy = dense(np.array([k]), np.array([tt]))
        with np.errstate(all="ignore"):
            loss, grad = evaluate(yy, member)
            gn = np.sqrt(np.einsum("bn,bn->b", grad, grad))
        return float(rules.values(loss, gn, member)[0, e])
    return brentq(g, t_old, t_new, xtol=4 * EPS, rtol=4 * EPS)
