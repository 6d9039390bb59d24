"""Gradient descent ``theta <- theta - lr grad L(theta)`` on the time axis ``t = step * lr``.

This module also holds what every descent dynamics shares: :class:`DescentOptions` (``lr, steps``)
and :func:`descend`, the loop ``theta <- theta - lr T(theta, grad L(theta))`` for a gradient
transform ``T`` (identity: gradient descent) with the common stopping, divergence and event rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import control
from ..options import option
from ..recording import record_steps
from .base import COMPLETED, Dynamics, Event, StoppingOptions, Trajectory
from .stopping import StopRules


@dataclass(frozen=True, kw_only=True)
class DescentOptions(StoppingOptions):
    """Keys of every descent dynamics."""

    lr: float = option(kind="float", check="positive", doc="step size")
    steps: int = option(kind="int", check="at_least_one", doc="number of steps")


#: member-steps per call of the compiled kernel: between two calls Python regains control (a
#: SIGTERM or Ctrl-C is handled, :func:`lcnrun.core.control.poll` runs) within about 0.1 s
KERNEL_CHUNK = 200_000


def _per_member(value, B: int, what: str) -> list:
    """``value`` repeated ``B`` times, or a list of ``B`` per-member values."""
    if isinstance(value, (list, tuple)):
        if len(value) != B:
            raise ValueError(f"{len(value)} {what} for {B} members")
        return list(value)
    return [value] * B


def descend(problem, theta0, record, options, *, transform=None,
            events: tuple[Event, ...] | list[Event] = ()) -> list[Trajectory]:
    """``theta_{k+1} = theta_k - lr T(theta_k, grad L(theta_k))`` for a batch ``theta0 (B, P)``.

    ``record`` and ``options`` (:class:`DescentOptions`) are one for all members or a list with one
    per member (an ensemble may mix step sizes, numbers of steps, stopping rules and record grids).
    ``transform(theta (P,), grad (P,)) -> (P,)`` (``None``: the identity, i.e. gradient descent).
    At each step ``k`` and for each active member, in this order: divergence (``diverged``), the
    stopping rules (``completed``), the events (non-terminal ones at every step, terminal ones
    before a step is taken, i.e. not at the last step). ``first_times`` of the
    events go to ``attrs[<event name>]`` as times ``k * lr`` (NaN if never).

    Plain gradient descent on a problem with a compiled form (the square loss) runs in the fused
    kernel :func:`lcnrun.core.kernels` ``descend``: every step of every member in compiled loops,
    the stored states written into preallocated arrays ``(B, T, P)``; each member's numbers are
    bitwise those of its run alone. Anything else runs the same rules step by step in numpy.
    """
    theta0 = np.array(theta0, dtype=float)
    B = theta0.shape[0]
    opts = _per_member(options, B, "options")
    records = _per_member(record, B, "record sections")
    compiled = problem.compiled(B) if (transform is None and not events and B) else None
    if compiled is not None:
        return _descend_compiled(compiled, theta0, records, opts)
    return _descend_numpy(problem, theta0, records, opts, transform, events)


def _stored_steps(records, opts) -> list[np.ndarray]:
    cache: dict = {}
    out = []
    for rec, o in zip(records, opts):
        key = (o.steps, o.lr, rec)
        if key not in cache:
            cache[key] = record_steps(o.steps, o.lr, rec)
        out.append(cache[key])
    return out


#: the compiled kernel's status codes of a stopped member, by rule
def _kernel_rules(kernels) -> dict[int, str]:
    return {kernels.DIVERGED_CODE: "diverged", kernels.LOSS_BELOW: "loss_below",
            kernels.GRAD_NORM_BELOW: "grad_norm_below"}


class _KernelRun:
    """The compiled descent's arrays of ``B`` members (``theta (B, P)``, stored states ``(B, R, ...)``,
    per member the next step, the position in its record grid, its divergence threshold and its
    status): everything a member needs to continue, so that a member's :meth:`state` taken between
    two kernel calls and given back to :meth:`resume` continues bitwise where it was."""

    KEYS = ("k_next", "rec_pos", "threshold", "status")

    def __init__(self, theta0, lr, R: int):
        B, P = theta0.shape
        self.lr = lr
        self.theta = np.ascontiguousarray(theta0)
        self.out_theta = np.empty((B, R, P))
        self.out_loss = np.empty((B, R))
        self.out_gnorm = np.empty((B, R))
        self.out_k = np.empty((B, R), dtype=np.int64)
        self.n_out = np.zeros(B, dtype=np.int64)
        self.k_next = np.zeros(B, dtype=np.int64)
        self.rec_pos = np.zeros(B, dtype=np.int64)
        self.threshold = np.full(B, float("nan"))
        self.status = np.zeros(B, dtype=np.int64)

    def state(self) -> dict[int, dict]:
        out = {}
        for b in range(len(self.theta)):
            m = int(self.n_out[b])
            out[b] = {"t": float(self.k_next[b] * self.lr[b]), "step": int(self.k_next[b]),
                      "theta": self.theta[b].copy(), "out_theta": self.out_theta[b, :m].copy(),
                      "out_loss": self.out_loss[b, :m].copy(), "out_gnorm": self.out_gnorm[b, :m].copy(),
                      "out_k": self.out_k[b, :m].copy(), **{k: getattr(self, k)[b].item() for k in self.KEYS}}
        return out

    def resume(self, starts) -> None:
        for b, s in enumerate(starts):
            if s is None:
                continue
            m = len(s["out_k"])
            self.theta[b] = s["theta"]
            for name in ("out_theta", "out_loss", "out_gnorm", "out_k"):
                getattr(self, name)[b, :m] = s[name]
            self.n_out[b] = m
            for k in self.KEYS:
                getattr(self, k)[b] = s[k]


def _descend_compiled(compiled, theta0, records, opts) -> list[Trajectory]:
    from .. import kernels  # noqa: PLC0415

    program, forms = compiled
    B, P = theta0.shape
    lr = np.array([o.lr for o in opts], dtype=float)
    steps = np.array([o.steps for o in opts], dtype=np.int64)
    loss_below, gnorm_below, factor = StopRules.levels(opts)
    grids = _stored_steps(records, opts)
    R = max(len(g) for g in grids)
    rec = np.full((B, R), -1, dtype=np.int64)
    n_rec = np.empty(B, dtype=np.int64)
    for b, g in enumerate(grids):
        rec[b, : len(g)] = g
        n_rec[b] = len(g)
    run = _KernelRun(theta0, lr, R)
    run.resume(control.start_states(B))
    kernel = kernels.compiled_descend()
    prog = kernels.program_arrays(program)
    S, e_min, l_min, index, l2 = kernels.form_arrays(forms)
    # members in blocks, steps in windows: each call does at most about KERNEL_CHUNK member-steps
    block = max(1, min(B, KERNEL_CHUNK // max(1, min(int(steps.max()) + 1, KERNEL_CHUNK))))
    for lo in range(0, B, block):
        sl = slice(lo, min(B, lo + block))
        window = max(1, KERNEL_CHUNK // (sl.stop - sl.start))
        running = run.status[sl] == kernels.RUNNING
        # a resumed block goes on where its running members were
        k_limit = (int(run.k_next[sl][running].min()) if running.any() else 0) + window - 1
        while np.any(run.status[sl] == kernels.RUNNING):
            control.poll(run.state)
            kernel(run.theta[sl], lr[sl], steps[sl], loss_below[sl], gnorm_below[sl], factor[sl], rec[sl],
                   n_rec[sl], *prog, S, e_min, l_min, index[sl], l2, run.k_next[sl], run.rec_pos[sl],
                   run.threshold[sl], run.status[sl], k_limit, run.out_theta[sl], run.out_loss[sl],
                   run.out_gnorm[sl], run.out_k[sl], run.n_out[sl])
            k_limit += window
    rules = StopRules(run.threshold, loss_below, gnorm_below)
    by_code = _kernel_rules(kernels)
    trajectories = []
    for b in range(B):
        m = int(run.n_out[b])
        kk = run.out_k[b, :m]
        rule = by_code.get(int(run.status[b]))
        k = int(run.k_next[b])
        state, message, reason = COMPLETED, "", ""
        if rule is not None:
            state, reason, message = rules.outcome(rule, b, t=k * float(lr[b]), step=k,
                                                   loss=float(run.out_loss[b, m - 1]))
        trajectories.append(Trajectory(
            t=kk * lr[b], theta=run.out_theta[b, :m], loss=run.out_loss[b, :m],
            grad_norm=run.out_gnorm[b, :m], status=state, message=message, series={"step": kk},
            attrs={"n_steps": k, "stop_reason": reason}))
    return trajectories


class _NumpyRun:
    """The step-by-step descent's state of ``B`` members: ``theta (B, P)``, per member the next
    step ``k[b]`` (``k[b] > k`` of the loop: a member resumed further on waits), its stored
    records, status, message, stop reason, event times, whether it is still active."""

    def __init__(self, theta0, lr, events):
        B = theta0.shape[0]
        self.lr = lr
        self.theta = theta0.copy()
        self.k = np.zeros(B, dtype=np.int64)
        self.out = [dict(k=[], theta=[], loss=[], grad_norm=[]) for _ in range(B)]
        self.status = [COMPLETED] * B
        self.message = [""] * B
        self.reason = [""] * B
        self.first = [{ev.name: float("nan") for ev in events} for _ in range(B)]
        self.active = np.ones(B, dtype=bool)
        self.loss0 = np.full(B, float("nan"))  # L(0): the divergence threshold's base

    def state(self) -> dict[int, dict]:
        return {b: {"t": float(self.k[b] * self.lr[b]), "step": int(self.k[b]),
                    "theta": self.theta[b].copy(), "active": bool(self.active[b]),
                    "loss0": float(self.loss0[b]), "status": self.status[b], "message": self.message[b],
                    "reason": self.reason[b], "first": dict(self.first[b]),
                    "out": {"k": np.asarray(self.out[b]["k"], dtype=np.int64),
                            "theta": np.asarray(self.out[b]["theta"], dtype=float).reshape(
                                len(self.out[b]["k"]), self.theta.shape[1]),
                            "loss": np.asarray(self.out[b]["loss"], dtype=float),
                            "grad_norm": np.asarray(self.out[b]["grad_norm"], dtype=float)}}
                for b in range(len(self.theta))}

    def resume(self, starts) -> None:
        for b, s in enumerate(starts):
            if s is None:
                continue
            self.theta[b], self.k[b], self.active[b] = s["theta"], s["step"], s["active"]
            self.loss0[b], self.status[b], self.message[b] = s["loss0"], s["status"], s["message"]
            self.reason[b] = s["reason"]
            self.first[b].update(s["first"])
            self.out[b] = {"k": [int(v) for v in s["out"]["k"]], "theta": list(s["out"]["theta"]),
                           "loss": list(s["out"]["loss"]), "grad_norm": list(s["out"]["grad_norm"])}

    def store(self, b, k, loss, gnorm) -> None:
        rec = self.out[b]
        rec["k"].append(k)
        rec["theta"].append(self.theta[b].copy())
        rec["loss"].append(loss)
        rec["grad_norm"].append(gnorm)

    def stop(self, b, status, reason, message) -> None:
        self.active[b] = False
        self.status[b], self.reason[b], self.message[b] = status, reason, message


def _descend_numpy(problem, theta0, records, opts, transform, events) -> list[Trajectory]:
    B = theta0.shape[0]
    lr = np.array([o.lr for o in opts], dtype=float)
    steps = np.array([o.steps for o in opts], dtype=np.int64)
    grids = _stored_steps(records, opts)
    run = _NumpyRun(theta0, lr, events)
    run.resume(control.start_states(B))
    rules = None
    for k in range(int(run.k[run.active].min()) if run.active.any() else 0, int(steps.max()) + 1):
        control.poll(run.state)
        live = run.active & (run.k == k)
        if not live.any():
            break
        loss, grad = problem.value_and_grad(run.theta)
        gnorm = np.sqrt(np.einsum("bp,bp->b", grad, grad))
        if k == 0:
            run.loss0[live] = loss[live]
        if rules is None:
            rules = StopRules.of(opts, run.loss0)
        for b, why in zip(np.flatnonzero(live), rules.check(loss[live], gnorm[live], live)):
            _step_rules(run, rules, b, k, float(lr[b]), int(steps[b]), grids[b], why, float(loss[b]),
                        float(gnorm[b]), events)
        live &= run.active
        run.k[live] += 1
        if transform is None:
            run.theta[live] -= lr[live, None] * grad[live]
        else:
            idx = np.flatnonzero(live)
            if len(idx):
                run.theta[idx] -= lr[idx, None] * np.stack([transform(run.theta[b], grad[b]) for b in idx])
    trajectories = []
    for b in range(B):
        rec = run.out[b]
        kk = np.asarray(rec["k"], dtype=np.int64)
        attrs = {"n_steps": int(run.k[b]), "stop_reason": run.reason[b]}
        attrs.update(run.first[b])
        trajectories.append(Trajectory(
            t=kk * lr[b], theta=np.asarray(rec["theta"]), loss=np.asarray(rec["loss"]),
            grad_norm=np.asarray(rec["grad_norm"]), status=run.status[b], message=run.message[b],
            series={"step": kk}, attrs=attrs))
    return trajectories


def _step_rules(run, rules, b, k, lr_b, steps_b, stored, why, loss, gnorm, events) -> None:
    """Member ``b`` at step ``k``: its events, its record, and whether it ends here (see :func:`descend`)."""
    failed = None
    if why != "diverged":
        for ev in events:
            if np.isnan(run.first[b][ev.name]) and (k < steps_b or not ev.terminal):
                with np.errstate(all="ignore"):
                    holds = not ev.fun(run.theta[b], loss) > 0
                if holds:
                    run.first[b][ev.name] = k * lr_b
                    if ev.terminal and why is None and failed is None:
                        failed = ev
    pos = np.searchsorted(stored, k)
    if (pos < len(stored) and stored[pos] == k) or why is not None or failed is not None:
        run.store(b, k, loss, gnorm)
    if why is not None:
        run.stop(b, *rules.outcome(why, b, t=k * lr_b, step=k, loss=loss))
    elif failed is not None:
        run.stop(b, failed.status, failed.name if failed.status == COMPLETED else "",
                 f"{failed.message} at step {k} (t = {k * lr_b:.6g})")
    elif k == steps_b:
        run.active[b] = False


class GradientDescent(Dynamics):
    name = "gradient_descent"
    batches_members = True
    ensemble_options = ("lr", "steps", "loss_below", "grad_norm_below", "divergence_factor")

    @dataclass(frozen=True, kw_only=True)
    class Options(DescentOptions):
        """``theta <- theta - lr grad L(theta)``, ``steps`` times."""

    def run(self, problem, theta0, record):
        return descend(problem, theta0, record, self.options)

    @classmethod
    def run_members(cls, problem, theta0, records, options):
        """An ensemble: member ``b`` with its own ``records[b]`` and ``options[b]`` (see :func:`descend`)."""
        return descend(problem, theta0, list(records), list(options))
