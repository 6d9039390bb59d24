"""``convergence``: gradient flow for LCNs converges to a critical point, for the square loss and
other analytic losses, under a condition on the data (Diederen, Rauhut, Terstiege, arXiv 2601.08547).

Runs ``lcnrun/figures/specs/convergence.yaml``: one LCN, many Gaussian inits, four losses (square,
``l_4``, pseudo-Huber, log-cosh), on a data set whose patch Gram matrix has full rank (the condition,
as checked by the ``data_condition`` diagnostic) and on one that violates it (fewer patches than
filter entries). Per run, over time: the loss, ``|grad L|``, ``|theta|`` and the arc length
``int_0^t |dtheta/dt| dt`` (polygonal over the stored points; the ``critical_points`` diagnostic),
and at the end the classification of the end point.

Measured claims (the theorem's, on the data that satisfy the condition):

- every run ends at a critical point: ``|grad L(theta(t_max))| <= GRAD_TOL`` (the integrator's rtol
  is 1e-10, so this is far above its noise and far below the initial gradient);
- the trajectory has finite length (the mechanism of the proof, a Lojasiewicz inequality): the arc
  length gained over the last decade ``[t_max/10, t_max]`` is at most ``TAIL_TOL`` of the total;
- the parameter norm stays bounded (reported, ``max_t |theta(t)| / |theta(0)|``);
- a consistency check of the stored trajectory: the polygonal length is a lower bound of
  ``int |grad L| dt`` (trapezoidal) and agrees with it to ``LENGTH_TOL``.

On the data that violate the condition nothing is claimed; what the runs do is reported.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .base import Claim, Figure, FigureResult

GRAD_TOL = 1e-8
TAIL_TOL = 1e-2
LENGTH_TOL = 1e-2
LOSS_NAMES = {"square": "square", "lp": "l_p", "pseudo_huber": "pseudo-Huber", "log_cosh": "log-cosh"}


def loss_label(section: dict) -> str:
    kind = section.get("kind", "square")
    extra = ", ".join(f"{k}={v:g}" for k, v in section.items() if k != "kind")
    if kind == "lp":
        return f"l_{section.get('p'):g}"
    return LOSS_NAMES.get(kind, kind) + (f" ({extra})" if extra else "")


def tail_fraction(t: np.ndarray, arc: np.ndarray) -> float:
    """``(arc(t_max) - arc(t_max / 10)) / arc(t_max)``: the share of the length in the last decade."""
    if len(t) < 2 or arc[-1] <= 0:
        return float("nan")
    i = int(np.searchsorted(t, t[-1] / 10))
    return float((arc[-1] - arc[i]) / arc[-1])


class Convergence(Figure):
    name = "convergence"
    title = "gradient flow converges to a critical point: four losses, with and without the data condition"
    paper = "Diederen, Rauhut, Terstiege (arXiv 2601.08547)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        groups: dict[tuple, list] = {}
        for p, r in zip(pr.points, pr.runs):
            spec = p.run_spec
            loss = {"kind": spec.loss.kind, **{k: getattr(spec.loss.options, k)
                                                for k in getattr(spec.loss.options, "__dataclass_fields__", {})}}
            full = bool(r.final_attrs.get("data_full_rank", False))
            key = (loss_label(loss), full)
            cp = r.diagnostics.get("critical_points", {})
            dc = r.diagnostics.get("data_condition", {}).get("scalars", {})
            traj = r.trajectory
            groups.setdefault(key, []).append({
                "run": r, "status": r.status, "t": np.asarray(traj["t"], dtype=float),
                "loss": np.asarray(traj["loss"], dtype=float),
                "grad": np.asarray(traj["grad_norm"], dtype=float),
                "norm": np.asarray(cp.get("arrays", {}).get("param_norm", []), dtype=float),
                "arc": np.asarray(cp.get("arrays", {}).get("arc_length", []), dtype=float),
                "s": cp.get("scalars", {}), "gram_rank": dc.get("gram_rank"), "gram_size": dc.get("gram_size"),
                "n_samples": spec.data.options.n_samples})

        rows = []
        for (label, full), runs in groups.items():
            s = [x["s"] for x in runs]
            tails = [tail_fraction(x["t"], x["arc"]) for x in runs]
            lengths = [x["s"]["trajectory_length"] / x["s"]["trajectory_length_grad_integral"] for x in runs]
            L = np.array([x["loss"][-1] for x in runs])
            rows.append({
                "loss": label, "data condition": "holds" if full else "violated",
                "patch Gram rank": f"{runs[0]['gram_rank']}/{runs[0]['gram_size']}",
                "runs": len(runs), "completed": sum(x["status"] == "completed" for x in runs),
                "final loss (min..max)": f"{L.min():.6g}..{L.max():.6g}",
                "max final |grad L|": float(max(x["grad"][-1] for x in runs)),
                "max tail length share": float(np.nanmax(tails)),
                "max |theta| / |theta(0)|": float(max(x["max_param_norm"] / x["initial_param_norm"] for x in s)),
                "length polygonal / int |grad|": f"{min(lengths):.4f}..{max(lengths):.4f}",
                "end point": "/".join(f"{k}:{n}" for k, n in Counter(x["critical_type"] for x in s).most_common()),
                "hessian": "/".join(f"{k}:{n}" for k, n in Counter(x["classification"] for x in s).most_common()),
            })
        claims = []
        for (label, full), runs in groups.items():
            if not full:
                continue
            g = float(max(x["grad"][-1] for x in runs))
            tail = float(np.nanmax([tail_fraction(x["t"], x["arc"]) for x in runs]))
            ok = all(x["status"] == "completed" for x in runs)
            claims.append(Claim(
                f"{label}, data condition holds: gradient flow converges to a critical point "
                f"({len(runs)} inits)",
                f"max |grad L(t_max)| = {g:.1e}; last-decade share of the length <= {tail:.1e}",
                f"|grad L| <= {GRAD_TOL:g}, share <= {TAIL_TOL:g}",
                bool(ok and g <= GRAD_TOL and tail <= TAIL_TOL)))
        lengths = [x["s"]["trajectory_length"] / x["s"]["trajectory_length_grad_integral"]
                   for runs in groups.values() for x in runs]
        if lengths:
            claims.append(Claim(
                "stored trajectories: polygonal length <= int |grad L| dt (= the length of the flow)",
                f"ratio {min(lengths):.4f}..{max(lengths):.4f}", f"in [1 - {LENGTH_TOL:g}, 1]",
                bool(min(lengths) >= 1 - LENGTH_TOL and max(lengths) <= 1 + 1e-9)))
        n_full = sum(len(r) for (_, f), r in groups.items() if f)
        n_viol = sum(len(r) for (_, f), r in groups.items() if not f)
        claims.append(Claim(
            "the two data sets: patch Gram matrix full rank / rank-deficient (data_condition)",
            f"{n_full} runs on full-rank data, {n_viol} on rank-deficient data",
            "both present", n_full > 0 and n_viol > 0))

        fig = self._draw(plt, groups, small)
        notes = [
            f"end point types (critical_points diagnostic, grad_tol 1e-6): function_space_critical = a "
            "minimum of the loss in v (global); rank_deficient = a critical point of L where dmu drops "
            "rank (v on the discriminant: two layers share a root), not a minimum of the loss in v. "
            "With the condition, most inits here end at such a spurious critical point, with a loss "
            "above the global minimum (see 'final loss'): the theorem promises a critical point, not "
            "the global minimum.",
            "violated condition: nothing is claimed. Square, pseudo-Huber and log-cosh runs still "
            "converge here, to zero loss (interpolation, exponentially; losses of order +-1e-17 are "
            "rounding of the exactly computed minimum of the quadratic). l_4 at zero residual is "
            "quartic: its runs are still moving at t_max (tail share and |grad L| in the table), "
            "converging at best algebraically; the Hessian test's 'saddle' for them is not meaningful "
            "(|grad L| is below grad_tol 1e-6, but the point is not converged and is degenerate).",
            f"tail share = (arc(t_max) - arc(t_max/10)) / arc(t_max); arc = polygonal length over the "
            "stored (log-spaced) times.",
        ]
        return FigureResult(fig, rows, claims, notes)

    def _draw(self, plt, groups, small):
        labels = list(dict.fromkeys(k[0] for k in groups))
        fig, axes = plt.subplots(4, len(labels), figsize=(4.2 * len(labels), 13), sharex=True,
                                 constrained_layout=True, squeeze=False)
        colors = {True: "tab:blue", False: "tab:red"}
        tiny = 1e-300
        for c, label in enumerate(labels):
            for full in (True, False):
                for i, x in enumerate(groups.get((label, full), [])):
                    t = x["t"][1:]
                    kw = dict(color=colors[full], lw=0.8, alpha=0.5,
                              label=(f"condition {'holds' if full else 'violated'} "
                                     f"(N = {x['n_samples']})") if i == 0 else None)
                    gap = x["loss"][1:-1] - x["loss"][-1]  # the loss gap to the run's own limit
                    axes[0, c].loglog(t[:-1], np.maximum(gap, tiny), **kw)
                    axes[1, c].loglog(t, np.maximum(x["grad"][1:], tiny), **kw)
                    if len(x["norm"]):
                        axes[2, c].semilogx(t, x["norm"][1:], **kw)
                    if len(x["arc"]):
                        axes[3, c].semilogx(t, x["arc"][1:], **kw)
            axes[0, c].set_title(f"loss: {label}")
            axes[1, c].axhline(GRAD_TOL, color="grey", ls=":", lw=1)
            axes[3, c].set_xlabel("t")
            axes[0, c].legend(fontsize=7, loc="lower left")
        for r, name in enumerate(["loss gap L(theta(t)) - L(theta(t_max))", "|grad L(theta(t))|", "|theta(t)|",
                                  "arc length  int_0^t |dtheta/dt| ds"]):
            axes[r, 0].set_ylabel(name)
        for c, label in enumerate(labels):
            runs = groups.get((label, True), []) + groups.get((label, False), [])
            top_loss = max(float(np.max(x["loss"] - x["loss"][-1])) for x in runs)
            top_grad = max(float(np.max(x["grad"])) for x in runs)
            axes[0, c].set_ylim(1e-20, 10 * top_loss)
            axes[1, c].set_ylim(1e-18, 10 * top_grad)
        n = max(len(v) for v in groups.values())
        fig.suptitle(f"Gradient flow on an LCN, {n} inits per loss and data set{' (small version)' if small else ''}: "
                     "convergence to a critical point (blue: patch Gram matrix of full rank; red: rank-deficient)\n"
                     "Diederen, Rauhut, Terstiege, Convergence of gradient flow for learning convolutional "
                     "neural networks (arXiv 2601.08547)")
        return fig
