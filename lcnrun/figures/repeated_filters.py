"""``repeated-filters``: optimized filters repeat, and non-filling LCNs end on the boundary of their
function space (Kohn, Merkh, Montufar, Trager, arXiv 2108.01538).

Runs ``lcnrun/figures/specs/repeated-filters.yaml``: stride-1 LCNs (2,2), (2,2,2), (3,2), (3,3), each
from many Gaussian inits, trained by gradient flow on ``l(v) = 1/2 |v - u|^2`` (``function_space``
data) for targets ``u`` inside and outside the function space ``M``. Every run's end point is read
from its ``polynomial_structure`` and ``critical_points`` diagnostics.

What is measured, per (architecture, target):

- the final losses (histogram) and the *distinct minima*: end points clustered in function space
  (``v`` is the function; the symmetries ``w_l -> c_l w_l`` keep it), two runs in one cluster iff
  ``|L - L'| <= LOSS_TOL`` and ``|v - v'| <= V_TOL * max(1, |u|)``. ``V_TOL`` is loose on purpose:
  at the degenerate minimum of u = (1, .5, 1) the loss is quartic along the boundary, and ``v``
  approaches the minimizer only like ``(L - L_min)^(1/4)``; the spread of every cluster is reported;
- the fractions of runs that end with **repeated filters** (two layers of equal size with
  ``|cos| >= 1 - 1e-6``), **on the discriminant** (``v`` has a double real root: distance to the
  real discriminant ``<= 1e-6 |v|``; for a non-filling stride-1 architecture this set contains the
  Euclidean boundary of ``M``), with **layers sharing a root** (chordal distance ``<= ROOT_TOL``),
  and reaching the target (``L <= ZERO_TOL``).

Closed forms behind the claims ((2,2): ``M = {v : v_1^2 >= 4 v_0 v_2}``; a minimum of ``l`` on ``M``
for ``u`` outside ``M`` lies on the boundary ``v = lambda (p^2, 2pq, q^2)``, ``p^2 + q^2 = 1``, where
``l = 1/2 (|u|^2 - <u, m>^2 / |m|^2)``, ``m = (p^2, 2pq, q^2)``, ``|m|^2 = 1 + 2 s^2``, ``s = pq``):

- u = (1, 0, 1): ``<u, m>^2/|m|^2 = 1/(1 + 2 s^2)``, maximal at ``s = 0``: loss 1/2 at the two
  minima v = (1, 0, 0) and (0, 0, 1), i.e. ``w_1 || w_2`` (repeated filters), non-degenerate;
- u = (1, .5, 1): ``(1 + s)^2 / (1 + 2 s^2)`` is increasing on ``[-1/2, 1/2]``, maximal at the end
  ``s = 1/2`` (``p = q``): loss ``1/2 (9/4 - 3/2) = 3/8`` at v = (1/2, 1, 1/2), where the derivative in
  ``s`` vanishes and ``s = 1/2 - O(angle^2)``: the minimum is degenerate (quartic), gradient flow
  converges algebraically (loss gap ~ 1e-7 at t = 3e3, ~ 3e-10 at t = 1e5), hence ``t_max = 1e5``
  (with LSODA the long tail costs almost nothing).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .base import Claim, Figure, FigureResult

LOSS_TOL = 1e-6      # two end points have the same loss value
V_TOL = 0.05         # ... and the same end-to-end filter, relative to max(1, |u|)
ZERO_TOL = 1e-12     # the target is reached
DISC_TOL = 1e-6      # relative distance of v to the real discriminant: v has a double real root
ROOT_TOL = 1e-4      # chordal distance between roots of two layers: they share a root
KNOWN_MINIMA = {     # (filters, u) -> (loss, minimizers v) derived in the module doc
    ((2, 2), (1.0, 0.0, 1.0)): (0.5, [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]),
    ((2, 2), (1.0, 0.5, 1.0)): (0.375, [(0.5, 1.0, 0.5)]),
}


def in_function_space(filters: tuple, u: np.ndarray) -> bool:
    """Stride 1: ``u`` is in ``M`` iff it factors into real polynomials of the layer degrees; for
    the architectures here: filling (at most one even size) -> always; all sizes 2 -> iff every
    root of ``u`` is real (a size-2 layer is one real linear factor)."""
    even = [k for k in filters if k > 1 and k % 2 == 0]
    if len(even) <= 1:
        return True
    if all(k == 2 for k in filters):
        r = np.roots(np.asarray(u, dtype=float)[::-1])
        return bool(np.all(np.abs(r.imag) <= 1e-9 * np.maximum(1.0, np.abs(r))))
    raise ValueError(f"membership test not implemented for filters {filters}")


def cluster(losses: np.ndarray, vs: np.ndarray, v_scale: float) -> list[list[int]]:
    """Greedy clusters of run indices (in order of loss): same loss within LOSS_TOL and same ``v``
    within ``V_TOL * v_scale`` as the cluster's first member."""
    clusters: list[list[int]] = []
    for i in np.argsort(losses, kind="stable"):
        for c in clusters:
            j = c[0]
            if abs(losses[i] - losses[j]) <= LOSS_TOL and np.linalg.norm(vs[i] - vs[j]) <= V_TOL * v_scale:
                c.append(int(i))
                break
        else:
            clusters.append([int(i)])
    return clusters


def _fmt(x) -> str:
    return "(" + ", ".join(f"{float(a):.4g}" for a in np.ravel(x)) + ")"


class RepeatedFilters(Figure):
    name = "repeated-filters"
    title = "repeated filters and boundary minima of stride-1 LCNs"
    paper = "Kohn, Merkh, Montufar, Trager (arXiv 2108.01538)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        groups: dict[tuple, list] = {}
        for p, r in zip(pr.points, pr.runs):
            if r.status != "completed":
                continue
            key = (tuple(int(k) for k in p.overrides["model.filters"]),
                   tuple(float(x) for x in p.overrides["data.target.value"]))
            groups.setdefault(key, []).append(r)
        n_failed = sum(r.status != "completed" for r in pr.runs)

        rows, summary = [], {}
        for (filters, u), runs in groups.items():
            u_arr = np.asarray(u)
            inside = in_function_space(filters, u_arr)
            L = np.array([r.final_attrs["loss"] for r in runs])
            V = np.array([np.ravel(r.final_arrays["end_to_end"]) for r in runs])
            ps = [r.diagnostics["polynomial_structure"]["scalars"] for r in runs]
            cp = [r.diagnostics["critical_points"]["scalars"] for r in runs]
            repeated = np.array([bool(s["repeated_filters"]) for s in ps])
            disc = np.array([s["relative_distance_to_discriminant"] for s in ps]) <= DISC_TOL
            shared = np.array([s["min_common_root_distance"] for s in ps]) <= ROOT_TOL
            zero = L <= ZERO_TOL
            ctype = [s["critical_type"] for s in cp]
            klass = [s["classification"] for s in cp]
            clusters = cluster(L, V, max(1.0, float(np.linalg.norm(u_arr))))
            summary[(filters, u)] = dict(n=len(runs), L=L, V=V, inside=inside, repeated=repeated,
                                         disc=disc, shared=shared, zero=zero, ctype=ctype,
                                         klass=klass, clusters=clusters, equal_sizes=len(set(filters)) < len(filters))
            for c_idx, members in enumerate(clusters):
                m = np.asarray(members)
                rows.append({
                    "filters": str(list(filters)),
                    "u": _fmt(u_arr),
                    "u in M": "yes" if inside else "no",
                    "minimum": f"{c_idx + 1}/{len(clusters)}",
                    "v (mean)": _fmt(V[m].mean(axis=0)),
                    "v spread": float(np.max(np.linalg.norm(V[m] - V[m].mean(axis=0), axis=1))),
                    "loss": float(np.min(L[m])),
                    "loss spread": float(np.ptp(L[m])),
                    "runs": f"{len(m)}/{len(runs)}",
                    "repeated": f"{int(repeated[m].sum())}/{len(m)}",
                    "double root": f"{int(disc[m].sum())}/{len(m)}",
                    "shared root": f"{int(shared[m].sum())}/{len(m)}",
                    "type": "/".join(f"{k}:{n}" for k, n in Counter(ctype[i] for i in m).most_common()),
                    "hessian": "/".join(f"{k}:{n}" for k, n in Counter(klass[i] for i in m).most_common()),
                })

        claims = self._claims(summary)
        fig = self._draw(plt, summary, small)
        notes = [
            f"distinct minima: clusters of end points with |L - L'| <= {LOSS_TOL:g} and |v - v'| <= "
            f"{V_TOL:g} max(1, |u|); 'repeated': equal-size layers with |cos| >= 1 - 1e-6; 'double "
            f"root': distance of v to the real discriminant <= {DISC_TOL:g} |v| (contains the boundary "
            f"of M for (2,2), (2,2,2)); 'shared root': two layers' roots within chordal {ROOT_TOL:g}; "
            f"'type'/'hessian': critical_points diagnostic (grad_tol 1e-6).",
            "u = (1, .5, 1) on (2,2): the minimum 3/8 is degenerate (quartic along the boundary), so "
            "gradient flow converges algebraically (loss gap ~ 1/t^2 here); at t_max = 1e5 the loss "
            "gap is below 1e-9 but v is still up to ~1e-2 from (1/2, 1, 1/2) ('v spread' column and "
            "the claims).",
            "filling architectures (3,2), (3,3): the global minimum 0 is reached from some inits, not "
            "from all: the others end at spurious local minima where two layers share a root (v has a "
            "double real root, dmu drops rank); their fraction is in the table, not claimed to vanish.",
        ]
        if n_failed:
            notes.append(f"{n_failed} runs did not complete and are left out")
        return FigureResult(fig, rows, claims, notes)

    # -- claims ------------------------------------------------------------------------------------
    def _claims(self, summary) -> list[Claim]:
        claims = []
        for (filters, u), (loss_min, minimizers) in KNOWN_MINIMA.items():
            s = summary.get((filters, u))
            if s is None:
                continue
            L = s["L"]
            gap_lo, gap_hi = float(L.min() - loss_min), float(L.max() - loss_min)
            claims.append(Claim(
                f"{list(filters)}, u = {_fmt(u)}: every run ends at the minimum loss {loss_min:g} "
                f"(gradient flow to t = 1e5, rtol 1e-10)",
                f"L - {loss_min:g} in [{gap_lo:.2e}, {gap_hi:.2e}]",
                f"{loss_min:g} to 1e-6",
                bool(-1e-12 <= gap_lo and gap_hi <= 1e-6)))
            V = s["V"]
            d = np.min([np.linalg.norm(V - np.asarray(m), axis=1) for m in minimizers], axis=0)
            hit = {i: int(np.sum(np.argmin([np.linalg.norm(V - np.asarray(m), axis=1) for m in minimizers],
                                           axis=0) == i)) for i in range(len(minimizers))}
            degenerate = loss_min == 0.375
            tol = V_TOL if degenerate else 1e-6
            claims.append(Claim(
                f"{list(filters)}, u = {_fmt(u)}: the minimizers are v = "
                + ", ".join(_fmt(m) for m in minimizers) + (" (degenerate: v converges slowly)" if degenerate else ""),
                f"max |v - v*| = {float(d.max()):.2e}; runs per minimizer {list(hit.values())}; "
                f"{len(s['clusters'])} cluster(s)",
                f"{len(minimizers)} minimizer(s), |v - v*| <= {tol:g}",
                bool(float(d.max()) <= tol and len(s["clusters"]) == len(minimizers) and min(hit.values()) > 0)))
            claims.append(Claim(
                f"{list(filters)}, u = {_fmt(u)}: at the minimum w1 || w2 (repeated filters)",
                f"{int(s['repeated'].sum())}/{s['n']} runs", "all", bool(s["repeated"].all())))
        outside = [(k, s) for k, s in summary.items() if not s["inside"]]
        if outside:
            n = sum(s["n"] for _, s in outside)
            on = sum(int(s["disc"].sum()) for _, s in outside)
            rep = sum(int(s["repeated"].sum()) for _, s in outside)
            claims.append(Claim(
                "not filling, u outside M: every run ends on the boundary (v has a double real root) "
                "with repeated filters",
                f"boundary {on}/{n}, repeated {rep}/{n} ("
                + ", ".join(f"{list(k[0])}{_fmt(k[1])}" for k, _ in outside) + ")",
                "all", on == n and rep == n))
        inside_nf = [(k, s) for k, s in summary.items() if s["inside"] and len([x for x in k[0] if x % 2 == 0]) > 1]
        if inside_nf:
            n = sum(s["n"] for _, s in inside_nf)
            z = sum(int(s["zero"].sum()) for _, s in inside_nf)
            claims.append(Claim("not filling, u inside M: every run reaches u (loss <= 1e-12)",
                                f"{z}/{n}", "all", z == n))
        filling = [(k, s) for k, s in summary.items() if len([x for x in k[0] if x % 2 == 0]) <= 1]
        for k, s in filling:
            claims.append(Claim(
                f"filling {list(k[0])}, u = {_fmt(k[1])}: the global minimum 0 is reached",
                f"{int(s['zero'].sum())}/{s['n']} runs reach L <= 1e-12 (min L = {float(s['L'].min()):.1e})",
                "some run (not claimed: all)", bool(s["zero"].any())))
        if filling:
            n_bad = n_ok = 0
            for _, s in filling:
                for i in np.flatnonzero(~s["zero"]):
                    n_bad += 1
                    n_ok += int(s["ctype"][i] == "rank_deficient" and s["disc"][i] and s["shared"][i])
            claims.append(Claim(
                "filling: a run that misses 0 ends at a critical point where two layers share a root "
                "(v has a double real root, dmu rank-deficient)",
                f"{n_ok}/{n_bad} of the runs with L > 1e-12 (of {sum(s['n'] for _, s in filling)})",
                "all such runs", n_ok == n_bad))
        return claims

    # -- drawing -----------------------------------------------------------------------------------
    def _draw(self, plt, summary, small):
        archs = list(dict.fromkeys(k[0] for k in summary))
        fig = plt.figure(figsize=(15, 9.5), constrained_layout=True)
        gs = fig.add_gridspec(2, len(archs))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        top = max(float(s["L"].max()) for s in summary.values())
        bins = np.linspace(0, top * 1.05 + 1e-3, 61)
        for a, arch in enumerate(archs):
            ax = fig.add_subplot(gs[0, a])
            keys = [k for k in summary if k[0] == arch]
            for c, k in enumerate(keys):
                s = summary[k]
                ax.hist(s["L"], bins=bins, alpha=0.6, color=colors[c % len(colors)],
                        label=f"u = {_fmt(k[1])} ({'in' if s['inside'] else 'not in'} M)")
            for (f, u), (lmin, _) in KNOWN_MINIMA.items():
                if f == arch:
                    ax.axvline(lmin, color="k", ls=":", lw=1)
                    ax.annotate(f"{lmin:g}", (lmin, 0.9), xycoords=("data", "axes fraction"),
                                ha="center", va="top", fontsize=8,
                                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
            fill = len([x for x in arch if x % 2 == 0]) <= 1
            ax.set_title(f"filters {list(arch)} ({'filling' if fill else 'not filling'})")
            ax.set_xlabel("final loss  1/2 |v - u|^2")
            ax.set_ylabel("runs")
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
        ax = fig.add_subplot(gs[1, :])
        keys = list(summary)
        x = np.arange(len(keys))
        width = 0.2
        parts = [("reached u (L <= 1e-12)", "zero"), ("repeated filters", "repeated"),
                 ("double real root (boundary)", "disc"), ("layers share a root", "shared")]
        for j, (label, field) in enumerate(parts):
            ax.bar(x + (j - 1.5) * width, [float(np.mean(summary[k][field])) for k in keys], width, label=label)
        for i, k in enumerate(keys):
            ax.annotate(f"{len(summary[k]['clusters'])} min.", (x[i], 1.02), ha="center", fontsize=8)
        ax.set_xticks(x, [f"{list(k[0])}\nu={_fmt(k[1])}" for k in keys], fontsize=7)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("fraction of runs")
        ax.set_title("how the runs end (distinct minima: clusters of final v)")
        ax.legend(fontsize=8, ncol=4, loc="upper left", bbox_to_anchor=(0, -0.22))
        n = max(s["n"] for s in summary.values())
        fig.suptitle("Repeated filters and boundary minima, gradient flow on 1/2|v-u|^2 "
                     f"({n} inits per architecture and target{', small version' if small else ''})\n"
                     "Kohn, Merkh, Montufar, Trager, Geometry of Linear Convolutional Networks "
                     "(arXiv 2108.01538)")
        return fig
