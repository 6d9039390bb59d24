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
from .base import COMPLETED, DIVERGED, Dynamics, Event, StoppingOptions, Trajectory, divergence_threshold, stop_reason


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


def _stop_message(code: str, k: int, lr: float, loss: float, threshold: float) -> str:
    if code == "diverged":
        return (f"loss {loss:.6g} exceeded {threshold:.6g} at step {k} (t = {k * lr:.6g})"
                if np.isfinite(loss) else f"loss became non-finite at step {k} (t = {k * lr:.6g})")
    return f"stopped by {code} at step {k} (t = {k * lr:.6g})"


def _descend_compiled(compiled, theta0, records, opts) -> list[Trajectory]:
    from .. import kernels  # noqa: PLC0415

    program, forms = compiled
    B, P = theta0.shape
    lr = np.array([o.lr for o in opts], dtype=float)
    steps = np.array([o.steps for o in opts], dtype=np.int64)
    nan = float("nan")
    loss_below = np.array([nan if o.loss_below is None else o.loss_below for o in opts], dtype=float)
    gnorm_below = np.array([nan if o.grad_norm_below is None else o.grad_norm_below for o in opts], dtype=float)
    factor = np.array([o.divergence_factor for o in opts], dtype=float)
    grids = _stored_steps(records, opts)
    R = max(len(g) for g in grids)
    rec = np.full((B, R), -1, dtype=np.int64)
    n_rec = np.empty(B, dtype=np.int64)
    for b, g in enumerate(grids):
        rec[b, : len(g)] = g
        n_rec[b] = len(g)
    theta = np.ascontiguousarray(theta0)
    out_theta = np.empty((B, R, P))
    out_loss = np.empty((B, R))
    out_gnorm = np.empty((B, R))
    out_k = np.empty((B, R), dtype=np.int64)
    n_out = np.zeros(B, dtype=np.int64)
    k_next = np.zeros(B, dtype=np.int64)
    rec_pos = np.zeros(B, dtype=np.int64)
    threshold = np.full(B, nan)
    status = np.zeros(B, dtype=np.int64)
    kernel = kernels.compiled_descend()
    prog = kernels.program_arrays(program)
    S, e_min, l_min, index, l2 = kernels.form_arrays(forms)
    # members in blocks, steps in windows: each call does at most about KERNEL_CHUNK member-steps
    block = max(1, min(B, KERNEL_CHUNK // max(1, min(int(steps.max()) + 1, KERNEL_CHUNK))))
    for lo in range(0, B, block):
        sl = slice(lo, min(B, lo + block))
        window = max(1, KERNEL_CHUNK // (sl.stop - sl.start))
        k_limit = window - 1
        while np.any(status[sl] == kernels.RUNNING):
            control.poll()
            kernel(theta[sl], lr[sl], steps[sl], loss_below[sl], gnorm_below[sl], factor[sl], rec[sl],
                   n_rec[sl], *prog, S, e_min, l_min, index[sl], l2, k_next[sl], rec_pos[sl],
                   threshold[sl], status[sl], k_limit, out_theta[sl], out_loss[sl], out_gnorm[sl],
                   out_k[sl], n_out[sl])
            k_limit += window
    codes = {kernels.DIVERGED_CODE: "diverged", kernels.LOSS_BELOW: "loss_below",
             kernels.GRAD_NORM_BELOW: "grad_norm_below"}
    trajectories = []
    for b in range(B):
        m = int(n_out[b])
        kk = out_k[b, :m]
        code = codes.get(int(status[b]))
        k = int(k_next[b])
        state, message, reason = COMPLETED, "", ""
        if code is not None:
            message = _stop_message(code, k, float(lr[b]), float(out_loss[b, m - 1]), float(threshold[b]))
            if code == "diverged":
                state = DIVERGED
            else:
                reason = code
        trajectories.append(Trajectory(
            t=kk * lr[b], theta=out_theta[b, :m], loss=out_loss[b, :m], grad_norm=out_gnorm[b, :m],
            status=state, message=message, series={"step": kk},
            attrs={"n_steps": k, "stop_reason": reason}))
    return trajectories


def _descend_numpy(problem, theta0, records, opts, transform, events) -> list[Trajectory]:
    theta = theta0.copy()
    B = theta.shape[0]
    lr = np.array([o.lr for o in opts], dtype=float)
    steps = np.array([o.steps for o in opts], dtype=np.int64)
    grids = _stored_steps(records, opts)
    out = [dict(k=[], theta=[], loss=[], grad_norm=[]) for _ in range(B)]
    status = [COMPLETED] * B
    message = [""] * B
    reason = [None] * B
    first = [{ev.name: float("nan") for ev in events} for _ in range(B)]
    active = np.ones(B, dtype=bool)
    threshold = None
    last_step = steps.copy()
    for k in range(int(steps.max()) + 1 if B else 0):
        control.poll()
        loss, grad = problem.value_and_grad(theta)
        gnorm = np.sqrt(np.einsum("bp,bp->b", grad, grad))
        if threshold is None:
            threshold = np.array([divergence_threshold(o, loss[b]) for b, o in enumerate(opts)])
        bad = active & ~(loss <= threshold)  # catches nan too
        for b in np.flatnonzero(active):
            lr_b, steps_b = float(lr[b]), int(steps[b])
            why = "diverged" if bad[b] else stop_reason(opts[b], loss[b], gnorm[b])
            failed = None
            if not bad[b]:
                for ev in events:
                    if np.isnan(first[b][ev.name]) and (k < steps_b or not ev.terminal):
                        with np.errstate(all="ignore"):
                            holds = not ev.fun(theta[b], float(loss[b])) > 0
                        if holds:
                            first[b][ev.name] = k * lr_b
                            if ev.terminal and why is None and failed is None:
                                failed = ev
            stored = grids[b]
            pos = np.searchsorted(stored, k)
            if (pos < len(stored) and stored[pos] == k) or why is not None or failed is not None:
                rec = out[b]
                rec["k"].append(k)
                rec["theta"].append(theta[b].copy())
                rec["loss"].append(loss[b])
                rec["grad_norm"].append(gnorm[b])
            if why is not None:
                active[b] = False
                last_step[b] = k
                if bad[b]:
                    status[b] = DIVERGED
                else:
                    reason[b] = why
                message[b] = _stop_message(why, k, lr_b, float(loss[b]), float(threshold[b]))
            elif failed is not None:
                active[b] = False
                last_step[b] = k
                status[b] = failed.status
                message[b] = f"{failed.message} at step {k} (t = {k * lr_b:.6g})"
                if failed.status == COMPLETED:
                    reason[b] = failed.name
            elif k == steps_b:
                active[b] = False
        if not active.any():
            break
        if transform is None:
            theta[active] -= lr[active, None] * grad[active]
        else:
            idx = np.flatnonzero(active)
            theta[idx] -= lr[idx, None] * np.stack([transform(theta[b], grad[b]) for b in idx])
    trajectories = []
    for b in range(B):
        rec = out[b]
        kk = np.asarray(rec["k"], dtype=np.int64)
        attrs = {"n_steps": int(last_step[b]), "stop_reason": reason[b] or ""}
        attrs.update(first[b])
        trajectories.append(Trajectory(
            t=kk * lr[b], theta=np.asarray(rec["theta"]), loss=np.asarray(rec["loss"]),
            grad_norm=np.asarray(rec["grad_norm"]), status=status[b], message=message[b],
            series={"step": kk}, attrs=attrs))
    return trajectories


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
