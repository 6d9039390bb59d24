"""``riemannian-metric``: is the function-space metric ``K = J J^T`` a function of ``(v, delta)``?
(Achour, Kohn, Rauhut, arXiv 2507.06367.)

The theorem: for ``D >= 2``, or ``D = 1`` with all strides ``> 1``, ``K`` depends only on the
end-to-end filter ``v`` and the invariants ``delta`` (conserved by gradient flow), so the parameter
flow is a Riemannian gradient flow on function space whatever the initialization; for ``D = 1``
with stride 1 it fails, because roots can be exchanged between layers.

Runs ``lcnrun/figures/specs/riemannian-metric.yaml``: random Gaussian points ``theta`` on a list of
architectures of the three cases, and the ``metric_consistency`` diagnostic at each (see its module
doc): the other points ``theta'`` of the level set ``{v(theta') = v, delta(theta') = delta}`` (root
re-distributions and a numerical fiber search), each classified as a **sign flip** (``K`` exactly
invariant), a **layer permutation** (layers of equal shape *and* spacing swapped, rescaled to keep
``delta``) or a **root exchange** (any other factorization), with ``|K' - K|_F / |K|_F``.

What the theorem's content is, and what is tested: *root exchanges never change K for D >= 2 or
all strides > 1 (generically none exist), and do for D = 1 stride 1*. The consistency error of the
theorem's cases is therefore the largest relative difference over every point found that is **not** a
layer permutation. Layer permutations are a separate finding (beyond the theorem's wording): two
layers of the same shape at the same spacing can be swapped in any D; ``K' - K = (c^-2 - 1) T_i T_i^T
+ (c^2 - 1) T_j T_j^T`` with ``c^2 = |w_i|^2 / |w_j|^2``, zero only for ``delta_ij = 0`` (tested with
balanced inits); architectures whose layers all differ in shape or spacing have none.
"""
from __future__ import annotations

import json

import numpy as np

from ..core.models import MODELS
from .base import Claim, Figure, FigureResult

HOLDS_TOL = 1e-10    # the theorem's cases: |K' - K| / |K| over non-permutation points
FAILS_TOL = 1e-3     # D = 1, stride 1: some root exchange changes K by more than this
SWAP_ZERO_TOL = 1e-10  # layer swap at delta = 0
FLOOR = 1e-17        # exact zeros drawn here on log axes
MIN_FOUND = 0.5      # the fiber search must find other points (sign flips at least) at most points
KIND_NAMES = {0: "sign flip", 1: "layer permutation", 2: "root exchange"}


def _plain(x):
    return [_plain(a) for a in x] if isinstance(x, (list, tuple)) else x


def has_layer_swap(model) -> bool:
    """Two layers of the same shape at the same spacing ``S_{l-1}`` (they can be swapped)."""
    keys = [(model.param_shapes[l], model.cumulative_strides[l]) for l in range(model.n_layers)]
    return len(set(keys)) < len(keys)


def _nanmax(values) -> float:
    a = np.asarray([x for x in values if x is not None], dtype=float)
    return float(np.nanmax(a)) if a.size and np.any(np.isfinite(a)) else float("nan")


def _nanmin(values) -> float:
    a = np.asarray([x for x in values if x is not None], dtype=float)
    return float(np.nanmin(a)) if a.size and np.any(np.isfinite(a)) else float("nan")


class RiemannianMetric(Figure):
    name = "riemannian-metric"
    title = "is K = J J^T a function of (v, delta)? root exchanges vs layer permutations"
    paper = "Achour, Kohn, Rauhut (arXiv 2507.06367)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        groups: dict[tuple, dict] = {}
        for p, r in zip(pr.points, pr.runs):
            spec = p.run_spec
            model = MODELS[spec.model.kind](spec.model.options)
            o = spec.model.options
            filters = _plain(o.filters)
            strides = _plain(o.strides) if o.strides is not None else [1] * len(filters)
            label = (f"D={model.ndim} {json.dumps(filters, separators=(',', ':'))} "
                     f"s{json.dumps(strides, separators=(',', ':'))}")
            init = spec.init.kind
            g = groups.setdefault((label, init), {"label": label, "init": init, "model": model, "runs": []})
            if r.status != "completed" or "metric_consistency" not in r.diagnostics:
                continue
            d = r.diagnostics["metric_consistency"]
            if not d["scalars"].get("applicable", False):
                continue
            delta = np.asarray(r.trajectory["invariants"][0], dtype=float)
            norms = np.asarray(r.trajectory["layer_norms_sq"][0], dtype=float)
            g["runs"].append({"s": d["scalars"], "kind": np.asarray(d["arrays"].get("kind", []), dtype=int),
                              "rel": np.asarray(d["arrays"].get("rel_diff", []), dtype=float),
                              "delta_rel": float(np.max(np.abs(delta)) / np.mean(norms)) if delta.size else 0.0})

        rows = []
        for g in groups.values():
            runs = g["runs"]
            s = [x["s"] for x in runs]
            g["case"] = s[0]["theorem_case"] if s else "?"
            g["applies"] = bool(s[0]["theorem_applies"]) if s else False
            g["swap"] = has_layer_swap(g["model"])
            nonperm = [float(np.max(x["rel"][x["kind"] != 1])) if np.any(x["kind"] != 1) else float("nan")
                       for x in runs]
            g["consistency"] = _nanmax(nonperm)
            rows.append({
                "architecture": g["label"], "init": g["init"], "theorem case": g["case"],
                "theorem applies": "yes" if g["applies"] else "no",
                "equal shape+spacing": "yes" if g["swap"] else "no",
                "points": len(runs),
                "root exchanges (runs)": f"{sum(x['n_root_exchanges'] for x in s)} "
                                         f"({sum(x['n_root_exchanges'] > 0 for x in s)})",
                "max rel diff exchange": _nanmax(x["max_rel_diff_exchange"] for x in s),
                "sign flips": sum(x["n_sign_flips"] for x in s),
                "max rel diff sign flip": _nanmax(x["max_rel_diff_sign_flip"] for x in s),
                "layer permutations": sum(x["n_layer_permutations"] for x in s),
                "rel diff permutation (min..max)": (
                    f"{_nanmin(x['max_rel_diff_permutation'] for x in s):.2e}.."
                    f"{_nanmax(x['max_rel_diff_permutation'] for x in s):.2e}"
                    if any(x["n_layer_permutations"] for x in s) else "-"),
                "consistency error (no permutations)": g["consistency"],
                "max residual v, delta": f"{_nanmax(x['max_v_residual'] for x in s):.1e}, "
                                         f"{_nanmax(x['max_delta_residual'] for x in s):.1e}",
            })

        claims = self._claims(groups)
        fig = self._draw(plt, groups, small)
        notes = [
            "consistency error = max |K(theta') - K(theta)|_F / |K(theta)|_F over the points theta' "
            "found on the level set {v, delta} that are not layer permutations (sign flips and root "
            "exchanges); the residual columns certify that the points lie on the level set.",
            "in the theorem's cases the fiber search (16 Levenberg-Marquardt restarts per point) finds no "
            "root exchange at "
            "generic points: the level set is the sign-flip orbit (plus layer swaps for equal shapes at "
            "equal spacing), so 'K is a function of (v, delta)' holds; in D = 1, stride 1 it finds "
            "root exchanges, and they change K. Where the search finds no other point at all (a few "
            "2-D points, counted in the claims), nothing is tested there.",
            "finding beyond the theorem's wording: layers of equal shape at equal spacing can be "
            "swapped (rescaled to keep delta) in any D; the swap changes K unless delta = 0 (balanced "
            "init rows). The two sheets of the level set meet only where the swapped layers are "
            "parallel: in D = 2 a set of codimension |k_l| - 1 >= 3, which a trajectory generically never "
            "reaches, so there K is still a function of (v, delta) along the sheet of the "
            "initialization; for 1-D layers of size 2 (e.g. [2,2,2] stride 1) it is a hypersurface.",
        ]
        return FigureResult(fig, rows, claims, notes)

    def _claims(self, groups) -> list[Claim]:
        claims = []
        gauss = [g for g in groups.values() if g["runs"] and g["init"] == "gaussian"]
        for case, words in (("D=1, strides>1", "D = 1, all strides > 1"), ("D>=2", "D >= 2")):
            sel = [g for g in gauss if g["case"] == case]
            if not sel:
                continue
            err = _nanmax(g["consistency"] for g in sel)
            n_pts = sum(len(g["runs"]) for g in sel)
            n_exch = sum(x["s"]["n_root_exchanges"] for g in sel for x in g["runs"])
            n_found = sum(x["s"]["n_sign_flips"] > 0 for g in sel for x in g["runs"])
            claims.append(Claim(
                f"{words}: K is a function of (v, delta): no point of the level set other than a "
                "layer permutation has a different K",
                f"max rel diff {err:.1e} ({n_exch} root exchanges found at {n_pts} random points in "
                f"{len(sel)} architectures; other points of the level set found at {n_found}/{n_pts})",
                f"< {HOLDS_TOL:g} (other points found at > {MIN_FOUND:.0%})",
                bool(err < HOLDS_TOL and n_found > MIN_FOUND * n_pts)))
        sel = [g for g in gauss if g["case"] == "D=1, stride 1"]
        if sel:
            per_run = [x["s"]["max_rel_diff_exchange"] for g in sel for x in g["runs"]]
            big = sum(1 for v in per_run if v is not None and np.isfinite(v) and v > FAILS_TOL)
            err = _nanmax(per_run)
            claims.append(Claim(
                "D = 1, stride 1: root exchanges between layers keep (v, delta) and change K "
                "(the counterexample)",
                f"max rel diff {err:.2f}; {big}/{len(per_run)} random points have such an exchange",
                f"> {FAILS_TOL:g}", bool(err > FAILS_TOL)))
        swap_g = [g for g in gauss if g["swap"]]
        swap_b = [g for g in groups.values() if g["runs"] and g["swap"] and g["init"] == "balanced"]
        if swap_g:
            vals = [x["s"]["max_rel_diff_permutation"] for g in swap_g for x in g["runs"]]
            lo = _nanmin(vals)
            claims.append(Claim(
                "finding (not in the theorem): swapping two layers of equal shape and spacing keeps "
                "(v, delta) and changes K when delta != 0 (any D)",
                f"min over points {lo:.2e} ({', '.join(g['label'] for g in swap_g)})",
                f"> {FAILS_TOL:g} at every random point", bool(lo > FAILS_TOL)))
        if swap_b:
            vals = [x["s"]["max_rel_diff_permutation"] for g in swap_b for x in g["runs"]]
            hi = _nanmax(vals)
            claims.append(Claim(
                "finding: ... and keeps K when delta = 0 (balanced init)",
                f"max {hi:.1e} ({', '.join(g['label'] for g in swap_b)})",
                f"< {SWAP_ZERO_TOL:g}", bool(hi < SWAP_ZERO_TOL)))
        distinct = [g for g in gauss if not g["swap"]]
        if distinct:
            n = sum(x["s"]["n_layer_permutations"] for g in distinct for x in g["runs"])
            claims.append(Claim(
                "layers that differ in shape or spacing admit no layer permutation",
                f"{n} found in {len(distinct)} architectures", "0", n == 0))
        return claims

    def _draw(self, plt, groups, small):
        from matplotlib.ticker import LogLocator

        order = {"D=1, stride 1": 0, "D=1, strides>1": 1, "D>=2": 2}
        gs = sorted((g for g in groups.values() if g["runs"]),
                    key=lambda g: (order.get(g["case"], 3), g["swap"], g["init"] != "gaussian"))
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(17, 7.5), gridspec_kw={"width_ratios": [3, 1]},
                                      constrained_layout=True)
        style = {2: ("o", "tab:red"), 0: ("x", "tab:grey"), 1: ("^", "tab:blue")}
        used = set()
        rng = np.random.default_rng(0)
        shade = {0: "#fde0dd", 1: "#e5f5e0", 2: "#deebf7"}
        for i, g in enumerate(gs):
            ax.axvspan(i - 0.5, i + 0.5, color=shade.get(order.get(g["case"], 3), "white"), lw=0)
            for x in g["runs"]:
                for k in (0, 1, 2):
                    vals = x["rel"][x["kind"] == k]
                    if not vals.size:
                        continue
                    m, c = style[k]
                    ax.semilogy(i + 0.25 * rng.uniform(-1, 1, vals.size), np.maximum(vals, FLOOR), m,
                                color=c, ms=5, alpha=0.7, mfc="none" if g["init"] != "gaussian" else c,
                                label=KIND_NAMES[k] if k not in used else None)
                    used.add(k)
        ax.axhline(HOLDS_TOL, color="k", ls=":", lw=1)
        ax.axhline(FAILS_TOL, color="k", ls="--", lw=1)
        ax.text(len(gs) - 0.5, HOLDS_TOL * 2, f"{HOLDS_TOL:g} (holds below)", ha="right", fontsize=8)
        ax.text(len(gs) - 0.5, FAILS_TOL * 2, f"{FAILS_TOL:g} (fails above)", ha="right", fontsize=8)
        ax.set_xticks(range(len(gs)), [g["label"] + ("\nbalanced" if g["init"] != "gaussian" else "")
                                        for g in gs], rotation=60, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(gs) - 0.5)
        ax.set_ylim(FLOOR / 3, 30)
        ax.set_ylabel("|K(theta') - K(theta)|_F / |K(theta)|_F   (same v, same delta)")
        ax.set_title("every other point of the level set {v, delta} found, by kind "
                     "(red band: D=1 stride 1; green: D=1 strides>1; blue: D>=2; hollow: balanced "
                     f"init, delta = 0; exact 0 drawn at {FLOOR:g})", fontsize=9)
        ax.legend(loc="center left", fontsize=8)
        for g in gs:
            if not g["swap"]:
                continue
            d = [x["delta_rel"] for x in g["runs"] for _ in range(int(np.sum(x["kind"] == 1)))]
            r = [v for x in g["runs"] for v in x["rel"][x["kind"] == 1]]
            if r:
                ax2.loglog(np.maximum(d, FLOOR), np.maximum(r, FLOOR),
                           "^" if g["init"] == "gaussian" else "v", ms=5, alpha=0.7,
                           label=g["label"] + (" (balanced)" if g["init"] != "gaussian" else ""))
        ax2.axhline(SWAP_ZERO_TOL, color="k", ls=":", lw=1)
        ax2.xaxis.set_major_locator(LogLocator(numticks=6))
        ax2.set_xlabel("|delta|_inf / mean_l |w_l|^2   (delta = 0 drawn at 1e-17)")
        ax2.set_ylabel("relative change of K under the layer swap")
        ax2.set_title("the finding: a layer swap changes K unless delta = 0", fontsize=9)
        ax2.legend(fontsize=7)
        n = max(len(g["runs"]) for g in gs)
        fig.suptitle("Is the function-space metric K = J J^T a function of (v, delta)?  "
                     f"{n} random points per architecture{' (small version)' if small else ''}\n"
                     "Achour, Kohn, Rauhut (arXiv 2507.06367): yes for D >= 2 or all strides > 1, "
                     "no for D = 1 stride 1 (root exchanges)")
        return fig
