"""The stopping and divergence rules every dynamics shares, in one object: :class:`StopRules`.

For member ``b`` with options :class:`~.base.StoppingOptions` and initial loss ``L_b(0)``, in
this order of precedence:

1. ``diverged``: not ``L <= threshold_b``, ``threshold_b = divergence_factor * max(L_b(0), 1)``
   (a non-finite loss included) -- status ``diverged``;
2. ``loss_below``: ``L <= loss_below`` -- status ``completed``, stop reason ``loss_below``;
3. ``grad_norm_below``: ``|grad L| <= grad_norm_below`` -- ``completed``, ``grad_norm_below``.

A descent tests them at every step (:meth:`StopRules.check`, a vector over members; the compiled
kernel tests the same three with the arrays :meth:`StopRules.levels` and ``threshold``); a flow
gives them to its integrator as terminal events (:meth:`StopRules.events` for ``solve_ivp``,
:meth:`StopRules.values` for the vectorised ensemble integrator: each rule happens when its value
falls to zero). Whichever fired, :meth:`StopRules.outcome` gives the status, the stop reason and
the message.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .base import COMPLETED, DIVERGED, StoppingOptions

#: the rules, in order of precedence (also the columns of :meth:`StopRules.values`)
RULES = ("diverged", "loss_below", "grad_norm_below")


@dataclass(frozen=True)
class StopRules:
    """The rules of ``B`` members: ``threshold (B,)``, ``loss_below (B,)``, ``grad_norm_below (B,)``
    (NaN: the rule is not set)."""

    threshold: np.ndarray
    loss_below: np.ndarray
    grad_norm_below: np.ndarray

    @staticmethod
    def levels(options: Sequence[StoppingOptions]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(loss_below (B,), grad_norm_below (B,), divergence_factor (B,))``, NaN for a rule not set."""
        nan = float("nan")
        return (np.array([nan if o.loss_below is None else o.loss_below for o in options], dtype=float),
                np.array([nan if o.grad_norm_below is None else o.grad_norm_below for o in options],
                         dtype=float),
                np.array([o.divergence_factor for o in options], dtype=float))

    @classmethod
    def of(cls, options: Sequence[StoppingOptions], loss0) -> "StopRules":
        """The rules of members with ``options[b]`` and initial losses ``loss0 (B,)``."""
        loss_below, grad_norm_below, factor = cls.levels(options)
        loss0 = np.asarray(loss0, dtype=float).reshape(len(options))
        with np.errstate(invalid="ignore"):
            threshold = factor * np.maximum(loss0, 1.0)
        return cls(threshold, loss_below, grad_norm_below)

    def values(self, loss, gnorm, rows=slice(None)) -> np.ndarray:
        """``(m, 3)`` for members ``rows``: ``threshold - L`` (-1 if ``L`` is not finite),
        ``L - loss_below``, ``|grad| - grad_norm_below``; a rule holds where its value is <= 0
        (NaN, never holding, for a rule not set)."""
        with np.errstate(invalid="ignore"):
            div = np.where(np.isfinite(loss), self.threshold[rows] - loss, -1.0)
            return np.stack([div, loss - self.loss_below[rows], gnorm - self.grad_norm_below[rows]],
                            axis=1)

    def check(self, loss, gnorm, rows=slice(None), *, divergence: bool = True) -> list[str | None]:
        """For members ``rows``: the first rule (in order of precedence) their ``loss (m,)`` and
        ``gnorm (m,)`` satisfy, or None (``divergence=False``: the completion rules only)."""
        with np.errstate(invalid="ignore"):
            holds = self.values(np.asarray(loss, float), np.asarray(gnorm, float), rows) <= 0
            holds[:, 0] = ~(np.asarray(loss, float) <= self.threshold[rows]) if divergence else False
        return [RULES[int(np.argmax(h))] if h.any() else None for h in holds]

    def events(self, measure: Callable[[np.ndarray], tuple[float, float]], b: int = 0, *,
               loss: Callable[[np.ndarray], float] | None = None) -> list:
        """``solve_ivp`` terminal events ``fn(t, y)`` of member ``b`` (its set rules, each with the
        attribute ``rule``), ``measure(y) -> (L, |grad L|)``; ``loss(y)``, if given, is
        ``measure(y)[0]`` without the gradient norm (the divergence and ``loss_below`` rules read
        only the loss, at every accepted step)."""
        if loss is None:
            def loss(y):
                return measure(y)[0]
        fns = []
        for e, rule in enumerate(RULES):
            if e > 0 and np.isnan((self.loss_below, self.grad_norm_below)[e - 1][b]):
                continue

            level = float((self.threshold, self.loss_below, self.grad_norm_below)[e][b])

            # :meth:`values` of one member on floats (the same IEEE operations, without arrays:
            # an integrator evaluates this at every step)
            def fn(t, y, e=e, level=level):
                if e == 0:
                    value = loss(y)
                    return level - value if math.isfinite(value) else -1.0
                return (loss(y) if e == 1 else measure(y)[1]) - level
            fn.terminal = True
            fn.rule = rule
            fns.append(fn)
        return fns

    def outcome(self, rule: str, b: int, *, t: float, step: int | None = None,
                loss: float | None = None) -> tuple[str, str, str]:
        """``(status, stop reason, message)`` of member ``b`` stopped by ``rule`` at time ``t``
        (descents: at ``step``), with loss ``loss`` there if known."""
        where = f"at step {step} (t = {t:.6g})" if step is not None else f"at t = {t:.6g}"
        if rule != "diverged":
            return COMPLETED, rule, f"stopped by {rule} {where}"
        if loss is not None and not np.isfinite(loss):
            return DIVERGED, "", f"loss became non-finite {where}"
        shown = f"loss {loss:.6g}" if loss is not None else "loss"
        return DIVERGED, "", f"{shown} exceeded {float(self.threshold[b]):.6g} {where}"


def stall_message(solver: str, window: int, advanced: float, t: float) -> str:
    """The message of a flow that stalled (its last ``window`` steps advanced t by ``advanced``)."""
    return (f"{solver} stalled: its last {window} steps advanced t by {advanced:.3g} in all, at "
            f"t = {t:.6g} (a velocity that is singular or discontinuous there)")
