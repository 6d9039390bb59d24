"""``solve_ivp``'s loop, with its state in the open: one member's integration that can be saved
between two steps and continued.

:class:`SolverRun` drives a public ``scipy.integrate`` solver class (``RK23, RK45, DOP853, Radau,
BDF, LSODA``) step by step exactly as ``solve_ivp`` (scipy 1.17) does with ``t_eval`` and events:
after each accepted step the events are evaluated, the active ones (a sign change in their
direction) located by ``brentq`` on the step's dense output (``xtol = rtol = 4 eps``), a terminal
one ends the run at its root, and the stored times the step passed are read from the dense
output. Its numbers are therefore ``solve_ivp``'s, bit for bit.

:meth:`SolverRun.state` is everything the loop needs to go on: time, state, the stored points so
far, the events' last values, counts and first roots, and the solver's own state. An explicit
Runge-Kutta solver (RK23/RK45/DOP853) is continued with its step size and last derivative, so that
the resumed run is bitwise the uninterrupted one; an implicit or multistep solver (Radau, BDF,
LSODA) keeps Jacobians, LU factors and a history that are not restored: it restarts fresh from
the saved time and state (equal to the uninterrupted run within the tolerances, and the state
says so in ``resume_note``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.integrate
from scipy.optimize import brentq

EPS = np.finfo(float).eps
EXPLICIT = ("RK23", "RK45", "DOP853")
#: solve_ivp's messages for its statuses 0 and 1
MESSAGES = {0: "The solver successfully reached the end of the integration interval.",
            1: "A termination event occurred."}


class SolverRun:
    """Integrate ``dy/dt = fun(t, y)`` from ``(t0, y0)`` to ``t_bound`` with ``method``, storing the
    states at ``t_eval`` (increasing, ``>= t0``), with ``events``: functions ``g(t, y)`` with the
    attributes ``terminal`` (bool) and ``direction`` (-1, 0, +1), as ``solve_ivp`` takes them.

    After the run (``status`` not None: 0 reached the end, 1 a terminal event, -1 the solver
    failed with ``message``): ``ts (T,)``, ``ys (T, n)``, ``t_events[i]`` (roots of event ``i``, in
    order), ``y_events[i]``, ``terminated_by`` (the terminal event's index, or None), and the
    solver's counts ``nfev, njev, nlu``.
    """

    def __init__(self, fun, y0: np.ndarray, t_bound: float, t_eval: np.ndarray, events: Sequence[Callable],
                 *, method: str, rtol: float, atol: float):
        self.fun, self.t_bound, self.method = fun, float(t_bound), method
        self.options = dict(rtol=rtol, atol=atol)
        self.t_eval = np.asarray(t_eval, dtype=float)
        self.events = list(events)
        self.terminal = np.array([bool(getattr(e, "terminal", False)) for e in self.events])
        self.direction = np.array([float(getattr(e, "direction", 0.0)) for e in self.events])
        self._directions = [float(d) for d in self.direction]
        self.solver = self._solver(0.0, np.asarray(y0, dtype=float))
        self.ts: list[float] = []
        self.ys: list[np.ndarray] = []
        self.t_eval_i = 0
        self.g = [e(0.0, self.solver.y) for e in self.events]
        self.event_count = np.zeros(len(self.events))
        self.t_events: list[list[float]] = [[] for _ in self.events]
        self.y_events: list[list[np.ndarray]] = [[] for _ in self.events]
        self.status: int | None = None
        self.message = ""
        self.terminated_by: int | None = None
        self.count_offset = np.zeros(3, dtype=np.int64)  # counts of the solvers before a fresh restart

    def _solver(self, t0: float, y0: np.ndarray):
        return getattr(scipy.integrate, self.method)(self.fun, t0, y0, self.t_bound, **self.options)

    @property
    def counts(self) -> np.ndarray:
        s = self.solver
        return self.count_offset + np.array([s.nfev, s.njev, s.nlu], dtype=np.int64)

    def step(self) -> None:
        """One accepted step (or the solver's failure): events, stored times, the end."""
        solver = self.solver
        message = solver.step()
        if solver.status == "finished":
            self.status = 0
        elif solver.status == "failed":
            self.status, self.message = -1, message
            return
        t_old, t, sol = solver.t_old, solver.t, None
        if self.events:
            g_new = [e(t, solver.y) for e in self.events]
            # solve_ivp's find_active_events: a sign change in the event's direction (0: either);
            # on the few floats of one member, without building arrays at every step
            active = [i for i, (g, gn, d) in enumerate(zip(self.g, g_new, self._directions))
                      if (d >= 0 and g <= 0 <= gn) or (d <= 0 and g >= 0 >= gn)]
            if active:
                active = np.asarray(active, dtype=np.int64)
                sol = solver.dense_output()
                self.event_count[active] += 1
                for e, te in zip(*self._roots(sol, active, t_old, t)):
                    self.t_events[e].append(float(te))
                    self.y_events[e].append(sol(te))
                if self.status == 1:
                    t = self.t_events[self.terminated_by][-1]
            self.g = g_new
        # the next stored time first (most steps pass none): the same index as a search would give
        i_new = self.t_eval_i
        if i_new < len(self.t_eval) and self.t_eval[i_new] <= t:
            i_new = int(np.searchsorted(self.t_eval, t, side="right"))
        if i_new > self.t_eval_i:
            sol = sol if sol is not None else solver.dense_output()
            step_t = self.t_eval[self.t_eval_i:i_new]
            self.ts.extend(float(v) for v in step_t)
            self.ys.extend(sol(step_t).T)
            self.t_eval_i = i_new
        if self.status is not None:
            self.message = MESSAGES.get(self.status, message)

    def _roots(self, sol, active, t_old, t):
        """scipy's ``handle_events``: the roots of the active events, up to a terminal one."""
        roots = np.asarray([brentq(lambda tt, e=e: self.events[e](tt, sol(tt)), t_old, t,
                                   xtol=4 * EPS, rtol=4 * EPS) for e in active])
        max_events = np.where(self.terminal, 1.0, np.inf)
        if np.any(self.event_count[active] >= max_events[active]):
            order = np.argsort(roots)
            active, roots = active[order], roots[order]
            first = np.nonzero(self.event_count[active] >= max_events[active])[0][0]
            active, roots = active[: first + 1], roots[: first + 1]
            self.status, self.terminated_by = 1, int(active[-1])
        return active, roots

    def state(self, extra: dict | None = None) -> dict:
        """Everything to continue this run (see the module docstring), plus ``extra``."""
        s = self.solver
        n = len(s.y)
        out = {"t": float(s.t), "y": s.y.copy(), "method": self.method, "t_eval_i": self.t_eval_i,
               "ts": np.asarray(self.ts, dtype=float), "ys": np.asarray(self.ys, dtype=float).reshape(-1, n),
               "g": [float(v) for v in self.g], "event_count": self.event_count.copy(),
               "t_events": [np.asarray(v, dtype=float) for v in self.t_events],
               "y_events": [np.asarray(v, dtype=float).reshape(-1, n) for v in self.y_events],
               "counts": self.counts}
        if self.method in EXPLICIT:
            out.update(f=s.f.copy(), h_abs=float(s.h_abs))
        else:
            out["resume_note"] = (f"{self.method} resumed with a fresh solver from the saved state "
                                  "(equal to an uninterrupted run within the tolerances, not bitwise)")
        out.update(extra or {})
        return out

    def resume(self, state: dict) -> None:
        """Continue from ``state`` (of a run with the same fun, method, t_eval and events)."""
        if state["method"] != self.method:
            raise ValueError(f"a {state['method']} state cannot resume a {self.method} run")
        self.solver = self._solver(float(state["t"]), np.array(state["y"], dtype=float))
        if self.method in EXPLICIT:  # the step size and last derivative: bitwise the same next step
            self.solver.f = np.array(state["f"], dtype=float)
            self.solver.h_abs = float(state["h_abs"])
            self.solver.nfev = self.solver.njev = self.solver.nlu = 0
        # a fresh implicit solver's own start-up evaluations count on top of the saved ones
        self.count_offset = np.asarray(state["counts"], dtype=np.int64).copy()
        self.ts = [float(v) for v in state["ts"]]
        self.ys = list(np.asarray(state["ys"], dtype=float))
        self.t_eval_i = int(state["t_eval_i"])
        self.g = list(state["g"])
        self.event_count = np.asarray(state["event_count"], dtype=float).copy()
        self.t_events = [[float(v) for v in te] for te in state["t_events"]]
        self.y_events = [list(ye) for ye in state["y_events"]]
