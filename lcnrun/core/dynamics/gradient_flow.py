"""Gradient flow ``d theta/dt = -grad L(theta)``, integrated by ``scipy.integrate.solve_ivp``.

This module also holds what every flow dynamics shares (output-metric, balancing and balanced
learning flows reuse it rather than copy it):

- :class:`FlowOptions`: the keys ``t_max, method, rtol, atol`` (plus the stopping rules);
- :func:`integrate_states`: integrates any velocity field ``dy/dt = velocity(y)`` with the common
  stopping, divergence and event rules and returns the states at the stored times;
- :func:`flow_trajectory`: the parameter flow ``d theta/dt = -T(theta, grad L(theta))`` for a
  gradient transform ``T`` (identity: gradient flow), one :class:`Trajectory` per member.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import control
from ..options import option
from ..recording import record_times
from .base import (COMPLETED, DIVERGED, FAILED, Dynamics, Event, StoppingOptions, Trajectory,
                   divergence_threshold, stop_reason)

METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
#: a flow has *stalled* when its last STALL_WINDOW accepted steps together advanced less than
#: STALL_FRACTION of the time still to go (at that pace it would need > 1e9 steps): solve_ivp does
#: not give up on a velocity that is discontinuous on a surface the flow slides along (e.g. a rank
#: threshold), it takes ever more steps of ~1e-16
STALL_WINDOW = 1000
STALL_FRACTION = 1.0e-6


class _Cached:
    """``value_and_grad`` of one member, memoised on the last state (events re-evaluate it)."""

    def __init__(self, problem):
        self.problem = problem
        self.key = None
        self.value = None

    def __call__(self, y):
        key = y.tobytes()
        if key != self.key:
            with np.errstate(all="ignore"):
                loss, grad = self.problem.value_and_grad(y[None])
            self.key, self.value = key, (float(loss[0]), grad[0])
        return self.value


def _tableaux() -> dict:
    """The vectorised RK methods' tableaux (:data:`.ensemble_rk.TABLEAUX`). scipy is imported on
    the first flow, not when a spec is validated (``lcnrun validate`` start-up)."""
    from .ensemble_rk import TABLEAUX  # noqa: PLC0415
    return TABLEAUX


@dataclass(frozen=True, kw_only=True)
class FlowOptions(StoppingOptions):
    """Keys of every flow dynamics: the time span and the ``solve_ivp`` method and tolerances."""

    t_max: float = option(kind="float", check="positive", doc="integrate over [0, t_max]")
    method: str = option("DOP853", kind="str", choices=METHODS, doc="solve_ivp method")
    rtol: float = option(1.0e-10, kind="float", check="positive", doc="relative tolerance")
    atol: float = option(1.0e-12, kind="float", check="positive", doc="absolute tolerance")


@dataclass
class FlowResult:
    """What :func:`integrate_states` returns for one member.

    ``t (T,)``, ``states (T, n)``, ``loss (T,)``, ``grad_norm (T,)`` at the stored times (plus the
    state at a terminal event, or the last accepted one if asked); ``first_times[name]``: first time
    each :class:`Event` happened (0 if at t = 0, NaN if never); ``attrs``: ``stop_reason`` and the
    solver counts; ``t_reached``/``y_reached``: the last accepted time and state of the integrator
    (where it gave up, for a failed run).
    """

    t: np.ndarray
    states: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    status: str = COMPLETED
    message: str = ""
    attrs: dict = field(default_factory=dict)
    first_times: dict = field(default_factory=dict)
    t_reached: float = 0.0
    y_reached: np.ndarray | None = None

    def trajectory(self, theta: np.ndarray | None = None) -> Trajectory:
        """A :class:`Trajectory` with these times, losses and status (``theta`` defaults to the states)."""
        return Trajectory(t=self.t, theta=self.states if theta is None else theta, loss=self.loss,
                          grad_norm=self.grad_norm, status=self.status, message=self.message,
                          attrs=dict(self.attrs))


def integrate_states(velocity: Callable[[np.ndarray], np.ndarray],
                     measure: Callable[[np.ndarray], tuple[float, float]],
                     y0: np.ndarray, options: FlowOptions, record, *,
                     events: tuple[Event, ...] | list[Event] = (),
                     store_last: bool = False) -> FlowResult:
    """Integrate ``dy/dt = velocity(y)`` over ``[0, options.t_max]`` and store it at the record times.

    ``measure(y) -> (loss, grad_norm)`` drives the shared rules (memoise it: events re-evaluate
    it): divergence once ``loss > divergence_factor * max(L(0), 1)`` or not finite (terminal,
    ``diverged``), ``loss_below`` / ``grad_norm_below`` (terminal, ``completed`` with a stop
    reason), then each :class:`Event` (see there). A rule or terminal event that already holds at
    ``t = 0`` gives a one-point run. A run that stalls (``STALL_WINDOW`` steps advancing less than
    ``STALL_FRACTION`` of the time to go) ends ``failed`` at the stall. When the integrator gives up,
    the run is ``diverged`` if the loss blew up and ``failed`` otherwise; with ``store_last`` the last accepted state is then
    stored as the last point (gradient flow does not, to keep its stored times on the grid).
    """
    opts = options
    t_eval = record_times(opts.t_max, record, 1e-4 * opts.t_max)
    loss0, gnorm0 = measure(y0)
    threshold = float(divergence_threshold(opts, np.array([loss0]))[0])

    reached = [0.0, y0]  # last accepted (t, y): solve_ivp evaluates events after each accepted step

    def diverging(t, y):
        control.poll()  # after every accepted step (and while an event is located)
        if t >= reached[0]:
            reached[0], reached[1] = t, y.copy()
        loss = measure(y)[0]
        return threshold - loss if np.isfinite(loss) else -1.0
    diverging.terminal = True

    window: deque = deque(maxlen=STALL_WINDOW)  # times of the last accepted steps
    stall_at = [float("inf")]

    def stalled(t, y):
        # events are evaluated at each accepted step (t increasing) and, to locate a crossing, at
        # earlier times: only the former move the window; a function of t alone for the latter
        if not window or t > window[-1]:
            window.append(t)
            if (len(window) == STALL_WINDOW
                    and window[-1] - window[0] < STALL_FRACTION * (opts.t_max - window[0])):
                stall_at[0] = min(stall_at[0], t)
        return -1.0 if t >= stall_at[0] else 1.0
    stalled.terminal = True

    fns = [diverging, stalled]
    names = ["diverged", "stalled"]
    user: list[Event | None] = [None, None]  # the Event behind each solve_ivp event (None: a shared rule)
    # the stopping rules: measure(y) = (loss, |grad|), the rule on component `which`
    rules = (("loss_below", 0, opts.loss_below), ("grad_norm_below", 1, opts.grad_norm_below))
    for name, which, level in rules:
        if level is None:
            continue

        def rule(t, y, which=which, level=level):
            return measure(y)[which] - level
        rule.terminal = True
        fns.append(rule)
        names.append(name)
        user.append(None)

    first_times: dict[str, float] = {}
    failed_at_start = None
    for ev in events:
        with np.errstate(all="ignore"):
            v0 = ev.fun(y0, loss0)
        if not v0 > 0:  # holds at t = 0 (NaN counts as holding)
            first_times[ev.name] = 0.0
            if ev.terminal and failed_at_start is None:
                failed_at_start = ev
            continue
        first_times[ev.name] = float("nan")

        def fun(t, y, ev=ev):
            return ev.fun(y, measure(y)[0])
        fun.terminal = ev.terminal
        fun.direction = -1.0
        fns.append(fun)
        names.append(ev.name)
        user.append(ev)

    status, message, reason = COMPLETED, "", ""
    early = stop_reason(opts, loss0, gnorm0)
    sol = None
    if failed_at_start is not None:  # the dynamics is not defined at the initial point
        t, Y = np.array([0.0]), y0[None]
        status, message = failed_at_start.status, f"{failed_at_start.message} at t = 0"
    elif early is not None:  # the rule holds at t = 0: nothing to integrate
        t, Y = np.array([0.0]), y0[None]
        reason, message = early, f"stopped by {early} at t = 0"
    else:
        from scipy.integrate import solve_ivp  # noqa: PLC0415  (scipy on use: see _tableaux)

        with np.errstate(all="ignore"):
            sol = solve_ivp(lambda t, y: velocity(y), (0.0, opts.t_max), y0, method=opts.method,
                            t_eval=t_eval, rtol=opts.rtol, atol=opts.atol, events=list(fns) or None)
        t, Y = sol.t, sol.y.T
        for i, ev in enumerate(user):
            if ev is not None and len(sol.t_events[i]):
                first_times[ev.name] = float(sol.t_events[i][0])
        if sol.status == 1:  # a terminal event ended the run: store its state as the last point
            i = next(i for i, te in enumerate(sol.t_events)
                     if len(te) and getattr(fns[i], "terminal", False))
            te, ye = sol.t_events[i][0], sol.y_events[i][0]
            if not len(t) or te > t[-1]:
                t, Y = np.append(t, te), np.vstack([Y, ye[None]])
            if names[i] == "diverged":
                status = DIVERGED
                message = f"loss exceeded {threshold:.6g} at t = {te:.6g}"
            elif names[i] == "stalled":
                status = FAILED
                message = (f"solve_ivp stalled: its last {STALL_WINDOW} steps advanced t by "
                           f"{window[-1] - window[0]:.3g} in all, at t = {te:.6g} (a velocity that is "
                           f"singular or discontinuous there)")
            elif user[i] is not None:
                status = user[i].status
                message = f"{user[i].message} at t = {te:.6g}"
                if status == COMPLETED:
                    reason = names[i]
            else:
                reason = names[i]
                message = f"stopped by {reason} at t = {te:.6g}"
        elif sol.status == -1:
            # the integrator gave up; a blown-up state is divergence, anything else a failure
            y_last = sol.y[:, -1] if sol.y.shape[1] else y0
            loss_last = measure(y_last)[0]
            status = DIVERGED if not (np.isfinite(loss_last) and loss_last <= threshold) else FAILED
            message = f"solve_ivp: {sol.message}"
            if store_last and (not len(t) or reached[0] > t[-1]):
                t, Y = np.append(t, reached[0]), np.vstack([Y, reached[1][None]])
    loss = np.empty(len(t))
    gnorm = np.empty(len(t))
    for i, y in enumerate(Y):
        loss[i], gnorm[i] = measure(y)
    attrs = {"stop_reason": reason}
    if sol is not None:
        attrs.update(nfev=int(sol.nfev), njev=int(sol.njev), nlu=int(sol.nlu))
    return FlowResult(t=t, states=Y, loss=loss, grad_norm=gnorm, status=status, message=message,
                      attrs=attrs, first_times=first_times, t_reached=float(reached[0]),
                      y_reached=reached[1])


def flow_trajectory(problem, theta0: np.ndarray, record, options: FlowOptions, *,
                    transform=None, events=(), store_last: bool = False) -> tuple[Trajectory, FlowResult]:
    """The parameter flow ``d theta/dt = -T(theta, grad L(theta))`` of one member ``theta0 (P,)``.

    ``transform(theta (P,), grad (P,)) -> (P,)`` replaces the Euclidean gradient (``None``: the
    identity, i.e. gradient flow). ``loss`` and ``grad_norm`` of the trajectory are always ``L``
    and the Euclidean ``|grad L|``. ``events``, ``store_last``: see :func:`integrate_states`.
    Returns the trajectory and the raw :class:`FlowResult`.
    """
    f = _Cached(problem)

    def measure(y):
        loss, g = f(y)
        return loss, float(np.linalg.norm(g))

    if transform is None:
        def velocity(y):
            return -f(y)[1]
    else:
        def velocity(y):
            return -transform(y, f(y)[1])

    res = integrate_states(velocity, measure, np.asarray(theta0, dtype=float), options, record,
                           events=events, store_last=store_last)
    return res.trajectory(), res


class GradientFlow(Dynamics):
    """``d theta/dt = -grad L(theta)``. With ``method`` RK23, RK45 or DOP853 every run, alone or in an
    ensemble, is integrated by :mod:`.ensemble_rk` (scipy's algorithm, one step size and error
    control per member, all members' stages in one batched evaluation); Radau, BDF and LSODA go
    through ``solve_ivp`` member by member."""

    name = "gradient_flow"
    batches_members = True
    ensemble_options = ("t_max", "rtol", "atol", "loss_below", "grad_norm_below", "divergence_factor")

    @dataclass(frozen=True, kw_only=True)
    class Options(FlowOptions):
        """``d theta/dt = -grad L(theta)`` over ``[0, t_max]``."""

    @classmethod
    def can_batch(cls, options) -> bool:
        return options.method in _tableaux()

    def run(self, problem, theta0, record):
        theta0 = np.asarray(theta0, dtype=float)
        return self.run_members(problem, theta0, [record] * len(theta0), [self.options] * len(theta0))

    @classmethod
    def run_members(cls, problem, theta0, records, options):
        theta0 = np.asarray(theta0, dtype=float)
        out: list = [None] * len(theta0)
        by_method: dict[str, list[int]] = {}
        for b, o in enumerate(options):
            if o.method in _tableaux():
                by_method.setdefault(o.method, []).append(b)
            else:
                out[b] = flow_trajectory(problem.member(b), theta0[b], records[b], o)[0]
        for method, members in by_method.items():
            trajs = flow_ensemble(problem, theta0[members], members, [records[b] for b in members],
                                  [options[b] for b in members], _tableaux()[method])
            for b, traj in zip(members, trajs):
                out[b] = traj
        return out


def flow_ensemble(problem, theta0, members, records, options, tableau) -> list[Trajectory]:
    """Gradient flow of the ensemble members ``members`` (their rows ``theta0 (m, P)``), each with its
    own record grid, tolerances, ``t_max`` and rules, by :func:`.ensemble_rk.integrate_ensemble`."""
    from .ensemble_rk import integrate_ensemble  # noqa: PLC0415  (scipy on use: see _tableaux)

    members = np.asarray(members, dtype=np.int64)

    def evaluate(y, rows):
        with np.errstate(all="ignore"):
            return problem.value_and_grad_of(y, members[rows])

    m = len(members)
    loss0, grad0 = evaluate(theta0, np.arange(m))
    gnorm0 = np.sqrt(np.einsum("bp,bp->b", grad0, grad0))
    nan = float("nan")
    out: list = [None] * m
    run = []
    for i, o in enumerate(options):
        early = stop_reason(o, loss0[i], gnorm0[i])
        if early is not None:  # the rule holds at t = 0: nothing to integrate
            out[i] = Trajectory(t=np.array([0.0]), theta=theta0[i: i + 1].copy(), loss=loss0[i: i + 1].copy(),
                                grad_norm=gnorm0[i: i + 1].copy(), message=f"stopped by {early} at t = 0",
                                attrs={"stop_reason": early})
        else:
            run.append(i)
    if run:
        sub = np.asarray(run)
        opts = [options[i] for i in run]
        threshold = np.array([float(divergence_threshold(o, np.array([loss0[i]]))[0]) for i, o in zip(run, opts)])
        results = integrate_ensemble(
            lambda y, rows: evaluate(y, sub[rows]), theta0[sub],
            t_end=[o.t_max for o in opts],
            t_evals=[record_times(o.t_max, records[i], 1e-4 * o.t_max) for i, o in zip(run, opts)],
            rtol=[o.rtol for o in opts], atol=[o.atol for o in opts], tab=tableau, threshold=threshold,
            loss_below=[nan if o.loss_below is None else o.loss_below for o in opts],
            grad_norm_below=[nan if o.grad_norm_below is None else o.grad_norm_below for o in opts],
            stall_window=STALL_WINDOW, stall_fraction=STALL_FRACTION)
        # the losses and gradient norms of every stored state, in one evaluation
        counts = [len(r.t) for r in results]
        Y = np.concatenate([np.asarray(r.y).reshape(len(r.t), -1) for r in results])
        rows = np.repeat(sub, counts)
        loss, grad = evaluate(Y, rows)
        gnorm = np.sqrt(np.einsum("bp,bp->b", grad, grad))
        starts = np.concatenate([[0], np.cumsum(counts)])
        for k, (i, o, r) in enumerate(zip(run, opts, results)):
            lo, hi = starts[k], starts[k + 1]
            status, message, reason = COMPLETED, "", ""
            if r.status in ("loss_below", "grad_norm_below"):
                reason, message = r.status, f"stopped by {r.status} at t = {r.t_stop:.6g}"
            elif r.status == "diverged":
                status, message = DIVERGED, f"loss exceeded {threshold[k]:.6g} at t = {r.t_stop:.6g}"
            elif r.status == "stalled":
                status = FAILED
                message = (f"{tableau.name} stalled: {r.message}, at t = {r.t_stop:.6g} (a velocity that is "
                           f"singular or discontinuous there)")
            elif r.status == "failed":
                last = loss[hi - 1] if hi > lo else loss0[i]
                status = DIVERGED if not (np.isfinite(last) and last <= threshold[k]) else FAILED
                message = f"{tableau.name}: {r.message} (at t = {r.t_stop:.6g})"
            out[i] = Trajectory(t=np.asarray(r.t, dtype=float), theta=Y[lo:hi], loss=loss[lo:hi],
                                grad_norm=gnorm[lo:hi], status=status, message=message,
                                attrs={"stop_reason": reason, "nfev": r.nfev, "njev": 0, "nlu": 0,
                                       "n_steps": r.n_steps})
    return out
