"""``invariants``: ``delta_l = |w_l|^2 - |w_{l+1}|^2`` is conserved by gradient flow and moves by
exactly ``lr^2 (|g_l|^2 - |g_{l+1}|^2)`` per gradient-descent step (Kohn, Merkh, Montufar, Trager,
arXiv 2108.01538; SPEC section 1), for 1-D and 2-D LCNs at stride 1 and 2.

Why the law is exact: with ``g_l = dL/dw_l``, the rescaling symmetry ``w_l -> c w_l``,
``w_{l+1} -> w_{l+1} / c`` gives ``<w_l, g_l> = <w_{l+1}, g_{l+1}>``, so
``|w_l - lr g_l|^2 - |w_{l+1} - lr g_{l+1}|^2 = delta_l - 2 lr (<w_l, g_l> - <w_{l+1}, g_{l+1}>)
+ lr^2 (|g_l|^2 - |g_{l+1}|^2)`` and the middle term vanishes. Under gradient flow the same
computation gives ``d delta_l / dt = 0``.

Runs ``lcnrun/figures/specs/invariants.yaml``: for each architecture one gradient flow (DOP853,
rtol 1e-10) and gradient descent at two step sizes on the same time axis ``t = step * lr``, every
descent step stored. Measured (all relative to ``s = max_l |w_l(0)|^2``, as ``final.invariant_drift``):

- ``drift = max_t |delta(t) - delta(0)|_inf / s``;
- the law's residual ``max_k |delta(k+1) - delta(k) - lr^2 (|g_l(k)|^2 - |g_{l+1}(k)|^2)|_inf / s``,
  with ``g(k)`` recomputed from the stored parameters of step ``k`` (the problem is rebuilt from the
  run's resolved spec);
- the drift at ``t_max`` under descent, which is ``lr * int (|g_l|^2 - |g_{l+1}|^2) dt + O(lr^2)``:
  halving ``lr`` halves it.
"""
from __future__ import annotations

import json

import numpy as np

from ..runner import build_problem
from .base import Claim, Figure, FigureResult

GF_TOL = 1e-8        # gradient flow: relative drift (integrator rtol 1e-10, accumulated)
LAW_TOL = 1e-12      # gradient descent: the per-step law, relative to max_l |w_l(0)|^2
RATIO_TOL = 0.1      # drift(lr) / drift(lr/2) = 2 (1 + O(lr))


def stored_thetas(model, run) -> np.ndarray:
    """The stored parameters ``(T, P)`` of a run file."""
    layers = [np.asarray(run.trajectory[f"params/layer_{l}"], dtype=float) for l in range(model.n_layers)]
    return model.join(layers)


def descent_law(problem, run, lr: float) -> dict:
    """Per-step residual of ``delta(k+1) - delta(k) = lr^2 (|g_l(k)|^2 - |g_{l+1}(k)|^2)``."""
    model = problem.model
    steps = np.asarray(run.trajectory["step"])
    if len(steps) < 2 or np.any(np.diff(steps) != 1):
        raise ValueError(f"run {run.run_id}: gradient descent must store every step "
                         "(record.points = steps + 1, spacing linear)")
    theta = stored_thetas(model, run)
    _, grad = problem.value_and_grad(theta)
    g2 = np.stack([np.sum(g.reshape(len(theta), -1) ** 2, axis=1) for g in model.split(grad)], axis=1)
    predicted = lr ** 2 * (g2[:, :-1] - g2[:, 1:])                 # (T, L-1), step k -> k+1
    delta = np.asarray(run.trajectory["invariants"], dtype=float)  # (T, L-1)
    actual = np.diff(delta, axis=0)
    return {"t": np.asarray(run.trajectory["t"], dtype=float), "delta": delta,
            "residual": np.max(np.abs(actual - predicted[:-1]), axis=1),
            "predicted_drift": np.vstack([np.zeros((1, delta.shape[1])), np.cumsum(predicted[:-1], axis=0)]),
            "step_term": np.max(np.abs(predicted[:-1]), axis=1)}


def _plain(x):
    return [_plain(a) for a in x] if isinstance(x, (list, tuple)) else x


def _arch_label(spec) -> str:
    """``D=2 filters [[3,3],[2,2]] strides [1,1]`` (strides as written, default all 1)."""
    o = spec.model.options
    filters = _plain(o.filters)
    strides = _plain(o.strides) if o.strides is not None else [1] * len(filters)
    D = len(filters[0]) if isinstance(filters[0], list) else 1
    compact = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    return f"D={D} filters {compact(filters)} strides {compact(strides)}"


class Invariants(Figure):
    name = "invariants"
    title = "delta conserved by gradient flow, lr^2 law under gradient descent (1-D/2-D, stride 1/2)"
    paper = "Kohn, Merkh, Montufar, Trager (arXiv 2108.01538)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        archs: dict[str, dict] = {}
        rows = []
        for p, r in zip(pr.points, pr.runs):
            spec = p.run_spec
            label = _arch_label(spec)
            entry = archs.setdefault(label, {"gf": [], "gd": []})
            traj = r.trajectory
            delta = np.asarray(traj["invariants"], dtype=float)
            scale = float(np.max(traj["layer_norms_sq"][0]))
            drift = np.max(np.abs(delta - delta[:1]), axis=1) / scale
            row = {"architecture": label, "dynamics": spec.dynamics.kind, "lr": "-",
                   "status": r.status, "t_end": float(traj["t"][-1]),
                   "max drift / s": float(drift.max()),
                   "law residual / s": "-", "law residual / max step term": "-"}
            if spec.dynamics.kind == "gradient_flow":
                entry["gf"].append({"t": traj["t"], "drift": drift, "run": r})
            else:
                lr = float(spec.dynamics.options.lr)
                law = descent_law(build_problem(spec), r, lr)
                pred = np.max(np.abs(law["predicted_drift"]), axis=1) / scale
                entry["gd"].append({"t": traj["t"], "drift": drift, "lr": lr, "law": law,
                                    "pred": pred, "scale": scale, "final": drift[-1],
                                    "signed_final": (delta[-1] - delta[0]) / scale})
                row.update({"lr": lr, "law residual / s": float(law["residual"].max() / scale),
                            "law residual / max step term": float(law["residual"].max() / law["step_term"].max())})
            rows.append(row)

        claims = []
        for label, e in archs.items():
            gf = max((float(x["drift"].max()) for x in e["gf"]), default=float("nan"))
            claims.append(Claim(f"{label}: gradient flow conserves delta",
                                f"max |delta(t) - delta(0)| / s = {gf:.2e}", f"0 (<= {GF_TOL:g}, rtol 1e-10)",
                                bool(gf <= GF_TOL)))
            if e["gd"]:
                res = max(float(x["law"]["residual"].max() / x["scale"]) for x in e["gd"])
                drift = max(float(x["drift"].max()) for x in e["gd"])
                claims.append(Claim(
                    f"{label}: gradient descent moves delta by lr^2 (|g_l|^2 - |g_l+1|^2) per step",
                    f"max residual / s = {res:.2e} over {sum(len(x['law']['residual']) for x in e['gd'])} "
                    f"steps (drift itself up to {drift:.2e})",
                    f"exact (<= {LAW_TOL:g}), drift >> 0",
                    bool(res <= LAW_TOL and drift > 1e3 * LAW_TOL)))
        ratios = []
        for label, e in archs.items():
            by_lr = {x["lr"]: x for x in e["gd"]}
            lrs = sorted(by_lr)
            for a, b in zip(lrs, lrs[1:]):
                if np.isclose(b, 2 * a) and np.isclose(by_lr[a]["t"][-1], by_lr[b]["t"][-1]):
                    num = np.max(np.abs(by_lr[b]["signed_final"]))
                    den = np.max(np.abs(by_lr[a]["signed_final"]))
                    ratios.append(float(num / den))
        if ratios:
            claims.append(Claim(
                "gradient descent: the drift at t_max is O(lr) (halving lr halves it)",
                "ratios " + ", ".join(f"{x:.3f}" for x in ratios), f"2 (within {RATIO_TOL:.0%})",
                bool(all(abs(x / 2 - 1) <= RATIO_TOL for x in ratios))))

        fig = self._draw(plt, archs, small)
        notes = ["s = max_l |w_l(0)|^2 (the normalisation of final.invariant_drift); drift = |delta(t) "
                 "- delta(0)|_inf / s; the law residual uses gradients recomputed from the stored "
                 "parameters of every step.",
                 "the gradient-flow drift is integration error (rtol 1e-10), accumulated over the run."]
        return FigureResult(fig, rows, claims, notes)

    def _draw(self, plt, archs, small):
        n = len(archs)
        fig, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
        flat = axes.ravel()
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        tiny = 1e-18
        for ax, (label, e) in zip(flat[:4], archs.items()):
            for x in e["gf"]:
                ax.loglog(x["t"][1:], np.maximum(x["drift"][1:], tiny), color="k", lw=2,
                          label="gradient flow (DOP853, rtol 1e-10)")
            for i, x in enumerate(sorted(e["gd"], key=lambda x: -x["lr"])):
                c = colors[i % len(colors)]
                ax.loglog(x["t"][1:], np.maximum(x["drift"][1:], tiny), color=c, lw=2.5, alpha=0.6,
                          label=f"gradient descent, lr = {x['lr']:g}")
                ax.loglog(x["t"][1:], np.maximum(x["pred"][1:], tiny), color="k", ls="--", lw=0.9,
                          label="sum of lr^2 (|g_l|^2 - |g_l+1|^2)" if i == 0 else None)
            ax.axhline(GF_TOL, color="grey", ls=":", lw=1)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("t  (= step * lr for descent)")
            ax.set_ylabel("|delta(t) - delta(0)|_inf / max_l |w_l(0)|^2")
            ax.set_ylim(1e-18, 1)
            ax.legend(fontsize=7, loc="lower right")
        for ax in flat[n:4]:
            ax.axis("off")
        ax = flat[4]
        for i, (label, e) in enumerate(archs.items()):
            for j, x in enumerate(e["gd"]):
                res = np.maximum(x["law"]["residual"] / x["scale"], tiny)
                ax.semilogy(x["t"][1:], res, ".", ms=1.5, color=colors[i % len(colors)],
                            label=label if j == 0 else None)
        ax.axhline(LAW_TOL, color="grey", ls=":", lw=1)
        ax.set_title("gradient descent: residual of the lr^2 law, every step", fontsize=10)
        ax.set_xlabel("t = step * lr")
        ax.set_ylabel("|Δdelta - lr^2 (|g_l|^2 - |g_l+1|^2)|_inf / max_l |w_l(0)|^2")
        ax.set_ylim(1e-20, 1e-8)
        ax.legend(fontsize=6, markerscale=6)
        ax = flat[5]
        for i, (label, e) in enumerate(archs.items()):
            gd = sorted(e["gd"], key=lambda x: x["lr"])
            if gd:
                ax.loglog([x["lr"] for x in gd], [np.max(np.abs(x["signed_final"])) for x in gd], "o-",
                          color=colors[i % len(colors)], label=label)
        ax.set_title("gradient descent: drift at t_max vs lr (slope 1)", fontsize=10)
        ax.set_xlabel("lr")
        ax.set_ylabel("|delta(t_max) - delta(0)|_inf / max_l |w_l(0)|^2")
        ax.legend(fontsize=6)
        fig.suptitle("Invariants delta_l = |w_l|^2 - |w_l+1|^2: conserved by gradient flow, moved by "
                     f"exactly lr^2 (|g_l|^2 - |g_l+1|^2) per descent step{' (small version)' if small else ''}\n"
                     "Kohn, Merkh, Montufar, Trager, Geometry of Linear Convolutional Networks (arXiv 2108.01538)")
        return fig
