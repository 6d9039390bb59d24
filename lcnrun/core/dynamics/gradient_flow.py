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
from .base import COMPLETED, DIVERGED, FAILED, Dynamics, Event, StoppingOptions, Trajectory
from .stopping import RULES, StopRules, stall_message

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
        # a compiled problem (square loss): its kernel called directly, the same numbers as
        # ``problem.value_and_grad(y[None])`` without the per-call packing (most of a call here)
        compiled = problem.compiled(1) if hasattr(problem, "compiled") else None
        if compiled is not None:
            from ..kernels import one_member_value_and_grad  # noqa: PLC0415  (numba on use)
            self.evaluate = one_member_value_and_grad(*compiled)

    def evaluate(self, y):
        with np.errstate(all="ignore"):
            loss, grad = self.problem.value_and_grad(y[None])
        return float(loss[0]), grad[0]

    def __call__(self, y):
        key = y.tobytes()
        if key != self.key:
            self.key, self.value = key, self.evaluate(y)
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
                     store_last: bool = False, loss=None) -> FlowResult:
    """Integrate ``dy/dt = velocity(y)`` over ``[0, options.t_max]`` and store it at the record times.

    ``measure(y) -> (loss, grad_norm)`` drives the shared rules (:class:`~.stopping.StopRules`;
    memoise it: events re-evaluate it; ``loss(y)``, if given, is its first value alone): divergence (terminal, ``diverged``), ``loss_below`` /
    ``grad_norm_below`` (terminal, ``completed`` with a stop reason), then each :class:`Event`
    (see there). A rule or terminal event that already holds at ``t = 0`` gives a one-point run.
    A run that stalls (``STALL_WINDOW`` steps advancing less than ``STALL_FRACTION`` of the time to
    go) ends ``failed`` at the stall. When the integrator gives up, the run is ``diverged`` if the
    loss blew up and ``failed`` otherwise; with ``store_last`` the last accepted state is then
    stored as the last point (gradient flow does not, to keep its stored times on the grid).

    The loop is ``solve_ivp``'s (:class:`~.solver_loop.SolverRun`, the same numbers); it polls
    :func:`lcnrun.core.control.poll` before every step with its state, and continues from a start
    state (:func:`lcnrun.core.control.start_states`).
    """
    opts = options
    y0 = np.asarray(y0, dtype=float)
    loss0, gnorm0 = measure(y0)
    rules = StopRules.of([opts], [loss0])
    at_start, first_times = _at_start(y0, loss0, gnorm0, rules, events)
    if at_start is not None:
        return at_start
    # an event that already holds at t = 0 has happened: it is not watched
    from .solver_loop import SolverRun  # noqa: PLC0415  (scipy on use: see _tableaux)

    flow = _FlowEvents(rules, measure, [ev for ev in events if first_times[ev.name] != 0.0], opts.t_max,
                       loss=loss)
    run = SolverRun(lambda t, y: velocity(y), y0, opts.t_max, record_times(opts.t_max, record, 1e-4 * opts.t_max),
                    flow.fns, method=opts.method, rtol=opts.rtol, atol=opts.atol)
    start = control.start_states(1)[0]
    if start is not None:
        run.resume(start)
        flow.window.clear()
        flow.window.extend(start["stall_window"])
        flow.stall_at = float(start["stall_at"])

    def state():
        return {0: run.state({"stall_window": list(flow.window), "stall_at": flow.stall_at})}

    with np.errstate(all="ignore"):
        while run.status is None:
            control.poll(state)
            run.step()
    return _flow_result(run, flow, rules, measure, y0, store_last, first_times)


def _at_start(y0, loss0, gnorm0, rules: StopRules, events) -> tuple[FlowResult | None, dict]:
    """The one-point result of a run whose terminal event or stopping rule holds at t = 0 (else
    None), and each event's first time so far (0: it holds at t = 0; NaN)."""
    first_times = {}
    failed = None
    for ev in events:
        with np.errstate(all="ignore"):
            holds = not ev.fun(y0, loss0) > 0  # NaN counts as holding
        first_times[ev.name] = 0.0 if holds else float("nan")
        if holds and ev.terminal and failed is None:
            failed = ev
    status, message, reason = COMPLETED, "", ""
    if failed is not None:  # the dynamics is not defined at the initial point
        status, message = failed.status, f"{failed.message} at t = 0"
    else:
        rule = rules.check([loss0], [gnorm0], divergence=False)[0]
        if rule is None:
            return None, first_times
        status, reason, message = rules.outcome(rule, 0, t=0.0)
    return FlowResult(t=np.array([0.0]), states=y0[None], loss=np.array([loss0]), grad_norm=np.array([gnorm0]),
                      status=status, message=message, attrs={"stop_reason": reason},
                      first_times=first_times, t_reached=0.0, y_reached=y0), first_times


class _FlowEvents:
    """The events of a flow, in the solver's order: divergence, the stall, the stopping rules,
    then the :class:`Event` s (``user[i]``: the Event behind event ``i``, None for a shared rule)."""

    def __init__(self, rules: StopRules, measure, events, t_max: float, loss=None):
        self.window: deque = deque(maxlen=STALL_WINDOW)  # times of the last accepted steps
        self.stall_at = float("inf")
        self.t_max = t_max
        diverging, *completing = rules.events(measure, loss=loss)
        self.fns = [diverging, self.stalled, *completing]
        self.names = ["diverged", "stalled", *(fn.rule for fn in completing)]
        self.user: list[Event | None] = [None] * len(self.fns)
        for ev in events:
            def fun(t, y, ev=ev):
                return ev.fun(y, loss(y) if loss is not None else measure(y)[0])
            fun.terminal = ev.terminal
            fun.direction = -1.0
            self.fns.append(fun)
            self.names.append(ev.name)
            self.user.append(ev)

    def stalled(self, t, y):
        # events are evaluated at each accepted step (t increasing) and, to locate a crossing, at
        # earlier times: only the former move the window; a function of t alone for the latter
        window = self.window
        if not window or t > window[-1]:
            window.append(t)
            if (len(window) == STALL_WINDOW
                    and window[-1] - window[0] < STALL_FRACTION * (self.t_max - window[0])):
                self.stall_at = min(self.stall_at, t)
        return -1.0 if t >= self.stall_at else 1.0
    stalled.terminal = True


def _flow_result(run: SolverRun, flow: _FlowEvents, rules: StopRules, measure, y0, store_last,
                 first_times) -> FlowResult:
    """The :class:`FlowResult` of a finished :class:`SolverRun`."""
    t = np.asarray(run.ts, dtype=float)
    Y = np.asarray(run.ys, dtype=float).reshape(len(t), len(y0))
    first_times = dict(first_times)
    for i, ev in enumerate(flow.user):
        if ev is not None and run.t_events[i]:
            first_times[ev.name] = float(run.t_events[i][0])
    status, message, reason = COMPLETED, "", ""
    if run.status == 1:  # a terminal event ended the run: store its state as the last point
        i = run.terminated_by
        te, ye = run.t_events[i][0], run.y_events[i][0]
        if not len(t) or te > t[-1]:
            t, Y = np.append(t, te), np.vstack([Y, ye[None]])
        name = flow.names[i]
        if name == "stalled":
            w = flow.window
            status, message = FAILED, stall_message("solve_ivp", STALL_WINDOW, w[-1] - w[0], te)
        elif flow.user[i] is not None:
            status, message = flow.user[i].status, f"{flow.user[i].message} at t = {te:.6g}"
            reason = name if status == COMPLETED else ""
        else:
            status, reason, message = rules.outcome(name, 0, t=te, loss=measure(ye)[0])
    elif run.status == -1:
        # the integrator gave up; a blown-up state is divergence, anything else a failure
        loss_last = measure(Y[-1] if len(Y) else y0)[0]
        status = DIVERGED if not (np.isfinite(loss_last) and loss_last <= rules.threshold[0]) else FAILED
        message = f"solve_ivp: {run.message}"
        s = run.solver
        if store_last and (not len(t) or s.t > t[-1]):
            t, Y = np.append(t, s.t), np.vstack([Y, s.y[None]])
    loss = np.empty(len(t))
    gnorm = np.empty(len(t))
    for i, y in enumerate(Y):
        loss[i], gnorm[i] = measure(y)
    nfev, njev, nlu = (int(v) for v in run.counts)
    return FlowResult(t=t, states=Y, loss=loss, grad_norm=gnorm, status=status, message=message,
                      attrs={"stop_reason": reason, "nfev": nfev, "njev": njev, "nlu": nlu},
                      first_times=first_times, t_reached=float(run.solver.t), y_reached=run.solver.y.copy())


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
                           events=events, store_last=store_last, loss=lambda y: f(y)[0])
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
                with control.members([b]):
                    out[b] = flow_trajectory(problem.member(b), theta0[b], records[b], o)[0]
        for method, members in by_method.items():
            with control.members(members):
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
    rules = StopRules.of(options, loss0)
    out: list = [None] * m
    early = rules.check(loss0, gnorm0, divergence=False)
    for i, rule in enumerate(early):
        if rule is not None:  # the rule holds at t = 0: nothing to integrate
            _, reason, message = rules.outcome(rule, i, t=0.0)
            out[i] = Trajectory(t=np.array([0.0]), theta=theta0[i: i + 1].copy(), loss=loss0[i: i + 1].copy(),
                                grad_norm=gnorm0[i: i + 1].copy(), message=message,
                                attrs={"stop_reason": reason})
    run = [i for i, rule in enumerate(early) if rule is None]
    if not run:
        return out
    sub = np.asarray(run)
    opts = [options[i] for i in run]
    with control.members(sub):
        results = integrate_ensemble(
            lambda y, rows: evaluate(y, sub[rows]), theta0[sub], t_end=[o.t_max for o in opts],
            t_evals=[record_times(o.t_max, records[i], 1e-4 * o.t_max) for i, o in zip(run, opts)],
            rtol=[o.rtol for o in opts], atol=[o.atol for o in opts], tab=tableau,
            rules=StopRules.of(opts, loss0[sub]), stall_window=STALL_WINDOW, stall_fraction=STALL_FRACTION)
    # the losses and gradient norms of every stored state, in one evaluation
    counts = [len(r.t) for r in results]
    Y = np.concatenate([np.asarray(r.y).reshape(len(r.t), -1) for r in results])
    loss, grad = evaluate(Y, np.repeat(sub, counts))
    gnorm = np.sqrt(np.einsum("bp,bp->b", grad, grad))
    starts = np.concatenate([[0], np.cumsum(counts)])
    for k, (i, r) in enumerate(zip(run, results)):
        lo, hi = starts[k], starts[k + 1]
        status, message, reason = _ensemble_outcome(r, rules, i, tableau.name,
                                                    loss[hi - 1] if hi > lo else loss0[i])
        out[i] = Trajectory(t=np.asarray(r.t, dtype=float), theta=Y[lo:hi], loss=loss[lo:hi],
                            grad_norm=gnorm[lo:hi], status=status, message=message,
                            attrs={"stop_reason": reason, "nfev": r.nfev, "njev": 0, "nlu": 0,
                                   "n_steps": r.n_steps})
    return out


def _ensemble_outcome(r, rules: StopRules, i: int, solver: str, last_loss: float) -> tuple[str, str, str]:
    """``(status, message, stop reason)`` of member ``i`` whose integration ended as ``r``."""
    if r.status in RULES:
        status, reason, message = rules.outcome(r.status, i, t=r.t_stop, loss=float(last_loss))
        return status, message, reason
    if r.status == "stalled":
        return FAILED, f"{solver} stalled: {r.message}, at t = {r.t_stop:.6g} (a velocity that is " \
                       f"singular or discontinuous there)", ""
    if r.status == "failed":
        blown = not (np.isfinite(last_loss) and last_loss <= rules.threshold[i])
        return DIVERGED if blown else FAILED, f"{solver}: {r.message} (at t = {r.t_stop:.6g})", ""
    return COMPLETED, "", ""
