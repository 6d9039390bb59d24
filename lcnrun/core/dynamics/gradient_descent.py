"""Gradient descent ``theta <- theta - lr grad L(theta)`` on the time axis ``t = step * lr``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from ..recording import record_steps
from .base import COMPLETED, DIVERGED, Dynamics, StoppingOptions, Trajectory, divergence_threshold, stop_reason


class GradientDescent(Dynamics):
    name = "gradient_descent"

    @dataclass(frozen=True, kw_only=True)
    class Options(StoppingOptions):
        lr: float = option(kind="float", check="positive", doc="step size")
        steps: int = option(kind="int", check="at_least_one", doc="number of steps")

    def run(self, problem, theta0, record):
        opts = self.options
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
                why = "diverged" if bad[b] else (stop_reason(opts, loss[b], gnorm[b]) if k < steps else None)
                if is_stored[k] or why is not None:
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
            if k == steps or not active.any():
                break
            theta[active] -= lr * grad[active]
        trajectories = []
        for b in range(B):
            rec = out[b]
            kk = np.asarray(rec["k"], dtype=np.int64)
            trajectories.append(Trajectory(
                t=kk * lr, theta=np.asarray(rec["theta"]), loss=np.asarray(rec["loss"]),
                grad_norm=np.asarray(rec["grad_norm"]), status=status[b], message=message[b],
                series={"step": kk},
                attrs={"n_steps": int(last_step[b]), "stop_reason": reason[b] or ""}))
        return trajectories
