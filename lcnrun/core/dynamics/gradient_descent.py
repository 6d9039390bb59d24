"""Gradient descent ``theta <- theta - lr grad L(theta)`` on the time axis ``t = step * lr``.

This module also holds what every descent dynamics shares: :class:`DescentOptions` (``lr, steps``)
and :func:`descend`, the loop ``theta <- theta - lr T(theta, grad L(theta))`` for a gradient
transform ``T`` (identity: gradient descent) with the common stopping, divergence and event rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from ..recording import record_steps
from .base import COMPLETED, DIVERGED, Dynamics, Event, StoppingOptions, Trajectory, divergence_threshold, stop_reason


@dataclass(frozen=True, kw_only=True)
class DescentOptions(StoppingOptions):
    """Keys of every descent dynamics."""

    lr: float = option(kind="float", check="positive", doc="step size")
    steps: int = option(kind="int", check="at_least_one", doc="number of steps")


def descend(problem, theta0, record, options: DescentOptions, *, transform=None,
            events: tuple[Event, ...] | list[Event] = ()) -> list[Trajectory]:
    """``theta_{k+1} = theta_k - lr T(theta_k, grad L(theta_k))`` for a batch ``theta0 (B, P)``.

    ``transform(theta (P,), grad (P,)) -> (P,)`` (``None``: the identity, i.e. gradient descent).
    At each step ``k`` and for each active member, in this order: divergence (``diverged``), the
    stopping rules (``completed``), the events (non-terminal ones at every step, terminal ones
    before a step is taken, i.e. not at the last step). ``first_times`` of the
    events go to ``attrs[<event name>]`` as times ``k * lr`` (NaN if never).
    """
    opts = options
    lr, steps = opts.lr, opts.steps
    theta = np.array(theta0, dtype=float)
    B = theta.shape[0]
    stored = record_steps(steps, lr, record)
    is_stored = np.zeros(steps + 1, dtype=bool)
    is_stored[stored] = True
    out = [dict(k=[], theta=[], loss=[], grad_norm=[]) for _ in range(B)]
    status = [COMPLETED] * B
    message = [""] * B
    reason = [None] * B
    first = [{ev.name: float("nan") for ev in events} for _ in range(B)]
    active = np.ones(B, dtype=bool)
    threshold = None
    last_step = np.full(B, steps)
    for k in range(steps + 1):
        loss, grad = problem.value_and_grad(theta)
        gnorm = np.sqrt(np.einsum("bp,bp->b", grad, grad))
        if threshold is None:
            threshold = divergence_threshold(opts, loss)
        bad = active & ~(loss <= threshold)  # catches nan too
        for b in np.flatnonzero(active):
            why = "diverged" if bad[b] else stop_reason(opts, loss[b], gnorm[b])
            failed = None
            if not bad[b]:
                for ev in events:
                    if np.isnan(first[b][ev.name]) and (k < steps or not ev.terminal):
                        with np.errstate(all="ignore"):
                            holds = not ev.fun(theta[b], float(loss[b])) > 0
                        if holds:
                            first[b][ev.name] = k * lr
                            if ev.terminal and why is None and failed is None:
                                failed = ev
            if is_stored[k] or why is not None or failed is not None:
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
                    message[b] = (f"loss {loss[b]:.6g} exceeded {threshold[b]:.6g} at step {k} "
                                  f"(t = {k * lr:.6g})" if np.isfinite(loss[b])
                                  else f"loss became non-finite at step {k} (t = {k * lr:.6g})")
                else:
                    reason[b] = why
                    message[b] = f"stopped by {why} at step {k} (t = {k * lr:.6g})"
            elif failed is not None:
                active[b] = False
                last_step[b] = k
                status[b] = failed.status
                message[b] = f"{failed.message} at step {k} (t = {k * lr:.6g})"
                if failed.status == COMPLETED:
                    reason[b] = failed.name
        if k == steps or not active.any():
            break
        if transform is None:
            theta[active] -= lr * grad[active]
        else:
            idx = np.flatnonzero(active)
            theta[idx] -= lr * np.stack([transform(theta[b], grad[b]) for b in idx])
    trajectories = []
    for b in range(B):
        rec = out[b]
        kk = np.asarray(rec["k"], dtype=np.int64)
        attrs = {"n_steps": int(last_step[b]), "stop_reason": reason[b] or ""}
        attrs.update(first[b])
        trajectories.append(Trajectory(
            t=kk * lr, theta=np.asarray(rec["theta"]), loss=np.asarray(rec["loss"]),
            grad_norm=np.asarray(rec["grad_norm"]), status=status[b], message=message[b],
            series={"step": kk}, attrs=attrs))
    return trajectories


class GradientDescent(Dynamics):
    name = "gradient_descent"

    @dataclass(frozen=True, kw_only=True)
    class Options(DescentOptions):
        """``theta <- theta - lr grad L(theta)``, ``steps`` times."""

    def run(self, problem, theta0, record):
        return descend(problem, theta0, record, self.options)
