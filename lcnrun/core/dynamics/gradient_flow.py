"""Gradient flow ``d theta/dt = -grad L(theta)``, integrated by ``scipy.integrate.solve_ivp``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from ..options import option
from ..recording import record_times
from .base import COMPLETED, DIVERGED, FAILED, Dynamics, StoppingOptions, Trajectory, divergence_threshold, stop_reason

METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


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


class GradientFlow(Dynamics):
    name = "gradient_flow"

    @dataclass(frozen=True, kw_only=True)
    class Options(StoppingOptions):
        t_max: float = option(kind="float", check="positive", doc="integrate over [0, t_max]")
        method: str = option("DOP853", kind="str", choices=METHODS, doc="solve_ivp method")
        rtol: float = option(1.0e-10, kind="float", check="positive", doc="relative tolerance")
        atol: float = option(1.0e-12, kind="float", check="positive", doc="absolute tolerance")

    def run(self, problem, theta0, record):
        return [self._run_one(problem, np.asarray(th, dtype=float), record) for th in theta0]

    def _run_one(self, problem, theta0, record):
        opts = self.options
        f = _Cached(problem)
        t_eval = record_times(opts.t_max, record, 1e-4 * opts.t_max)
        loss0, _ = f(theta0)
        threshold = float(divergence_threshold(opts, np.array([loss0]))[0])

        def velocity(t, y):
            return -f(y)[1]

        def diverging(t, y):
            loss = f(y)[0]
            return threshold - loss if np.isfinite(loss) else -1.0
        diverging.terminal = True

        events = [diverging]
        names = ["diverged"]
        if opts.loss_below is not None:
            def loss_event(t, y):
                return f(y)[0] - opts.loss_below
            loss_event.terminal = True
            events.append(loss_event)
            names.append("loss_below")
        if opts.grad_norm_below is not None:
            def grad_event(t, y):
                return float(np.linalg.norm(f(y)[1])) - opts.grad_norm_below
            grad_event.terminal = True
            events.append(grad_event)
            names.append("grad_norm_below")

        status, message, reason = COMPLETED, "", ""
        early = stop_reason(opts, loss0, float(np.linalg.norm(f(theta0)[1])))
        if early is not None:  # the rule holds at t = 0: nothing to integrate
            t, Y = np.array([0.0]), theta0[None]
            reason, message = early, f"stopped by {early} at t = 0"
            sol = None
        else:
            with np.errstate(all="ignore"):
                sol = integrate_flow(velocity, theta0, opts.t_max, t_eval, opts, events=events,
                                     method=opts.method, rtol=opts.rtol, atol=opts.atol)
            t, Y = sol.t, sol.y.T
            if sol.status == 1:  # an event ended the run: store its state as the last point
                i = next(i for i, te in enumerate(sol.t_events) if len(te))
                te, ye = sol.t_events[i][0], sol.y_events[i][0]
                if not len(t) or te > t[-1]:
                    t, Y = np.append(t, te), np.vstack([Y, ye[None]])
                if names[i] == "diverged":
                    status = DIVERGED
                    message = f"loss exceeded {threshold:.6g} at t = {te:.6g}"
                else:
                    reason = names[i]
                    message = f"stopped by {reason} at t = {te:.6g}"
            elif sol.status == -1:
                # the integrator gave up; a blown-up state is divergence, anything else a failure
                y_last = sol.y[:, -1] if sol.y.shape[1] else theta0
                loss_last = f(y_last)[0]
                status = DIVERGED if not (np.isfinite(loss_last) and loss_last <= threshold) else FAILED
                message = f"solve_ivp: {sol.message}"
        loss = np.empty(len(t))
        gnorm = np.empty(len(t))
        for i, y in enumerate(Y):
            loss[i], g = f(y)
            gnorm[i] = np.linalg.norm(g)
        attrs = {"stop_reason": reason}
        if sol is not None:
            attrs.update(nfev=int(sol.nfev), njev=int(sol.njev), nlu=int(sol.nlu))
        return Trajectory(t=t, theta=Y, loss=loss, grad_norm=gnorm, status=status, message=message,
                          attrs=attrs)
