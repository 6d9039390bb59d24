"""Gradient flow ``d theta/dt = -grad L(theta)``, integrated by ``scipy.integrate.solve_ivp``.

This module also holds what every flow dynamics shares (output-metric, balancing and balanced
learning flows reuse it rather than copy it):

- :class:`FlowOptions`: the keys ``t_max, method, rtol, atol`` (plus the stopping rules);
- :func:`integrate_states`: integrates any velocity field ``dy/dt = velocity(y)`` with the common
  stopping, divergence and event rules and returns the states at the stored times;
- :func:`flow_trajectories`: the parameter flow ``d theta/dt = -T(theta, grad L(theta))`` for a
  gradient transform ``T`` (identity: gradient flow), one :class:`Trajectory` per member.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.integrate import solve_ivp

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


def integrate_flow(velocity, y0, t_end, t_eval, options, *, events=(), method, rtol, atol):
    """``solve_ivp`` with the given events; returns the solution object (shared by flow dynamics)."""
    return solve_ivp(velocity, (0.0, t_end), y0, method=method, t_eval=t_eval, rtol=rtol, atol=atol,
                     events=list(events) or None)


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
    ``STALL_FRACTION`` of the time to go) ends ``failed`` at the stall. When the integrator gives up, the run is ``diverged`` if the
    loss blew up and ``failed`` otherwise; with ``store_last`` the last accepted state is then
    stored as the last point (gradient flow does not, to keep its stored times on the grid).
    """
    opts = options
    t_eval = record_times(opts.t_max, record, 1e-4 * opts.t_max)
    loss0, gnorm0 = measure(y0)
    threshold = float(divergence_threshold(opts, np.array([loss0]))[0])

    reached = [0.0, y0]  # last accepted (t, y): solve_ivp evaluates events after each accepted step

    def diverging(t, y):
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
    if opts.loss_below is not None:
        def loss_event(t, y):
            return measure(y)[0] - opts.loss_below
        loss_event.terminal = True
        fns.append(loss_event)
        names.append("loss_below")
        user.append(None)
    if opts.grad_norm_below is not None:
        def grad_event(t, y):
            return measure(y)[1] - opts.grad_norm_below
        grad_event.terminal = True
        fns.append(grad_event)
        names.append("grad_norm_below")
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
        with np.errstate(all="ignore"):
            sol = integrate_flow(lambda t, y: velocity(y), y0, opts.t_max, t_eval, opts, events=fns,
                                 method=opts.method, rtol=opts.rtol, atol=opts.atol)
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
    name = "gradient_flow"

    @dataclass(frozen=True, kw_only=True)
    class Options(FlowOptions):
        """``d theta/dt = -grad L(theta)`` over ``[0, t_max]``."""

    def run(self, problem, theta0, record):
        return [self._run_one(problem, np.asarray(th, dtype=float), record) for th in theta0]

    def _run_one(self, problem, theta0, record):
        return flow_trajectory(problem, theta0, record, self.options)[0]
