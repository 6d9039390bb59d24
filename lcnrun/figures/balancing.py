"""``balancing``: balancing flows on the fibers of the end-to-end map, as printed by Lindsey & Menon
(arXiv 2511.01137; ``G_p`` there is our ``Phi_p``).

Both flows keep ``X = W_N ... W_1`` (an LCN: its end-to-end filter ``v``), drive the balancedness
``G_p = W_p W_p^T - W_{p+1}^T W_{p+1}`` (LCN: ``delta_l = |w_l|^2 - |w_{l+1}|^2``) to 0 and
``R = |W|_2^2 = sum_p |W_p|_F^2`` down to its minimum on the fiber, ``R_min = N sum_i sigma_i(X)^{2/N}``
(LCN, on the rescaling orbit: ``L (prod_l |w_l|^2)^{1/L}``). What the paper states, and what we derived:

- Theorem 1.1 (``X`` of full rank): the minimizers of ``|W|_2`` on the fiber are exactly its balanced
  points; the same for the Schatten sums ``sum_k |W_k|_p``, ``1 < p < inf``. Checked at the limits of the
  DLN runs: ``R -> R_min`` and, for ``p = 1.5, 3``, ``sum_k |W_k|_p`` at the (balanced) limit is the value
  ``N (sum_i sigma_i(X)^{p/N})^{1/p}`` of the balanced factorization (derived here from the theorem) and
  no larger than at any stored point of the run (all on the same fiber).
- ``l2`` (``dW/dt = -1/2 grad |W|_2^2`` on the fiber): Theorem 1.2, ``G(t) = G(0) e^{-2t}``: the abstract's
  "uniform exponential rate", 2 for every point.
- ``kirwan_ness`` (the gradient flow of ``1/2 |G|^2``, ``dW_k/dt = 2 (W_k G_{k-1} - G_k W_k)``): "computed
  explicitly and shown to converge globally" (the abstract). Its rate is derived here: the linearization
  at the balanced limit (the ``G_p`` of one singular direction form a path-graph Laplacian chain; checked
  against finite-difference Hessians) gives ``8 sigma_min(X)^{2/N} (1 - cos(pi/N))`` for a DLN with all
  widths equal, ``8 g (1 - cos(pi/L))`` with ``g = (prod_l |w_l|^2)^{1/L}`` for an LCN, computed from
  ``X(0)`` (resp. the ``|w_l(0)|^2``), which the flow keeps.
- derived here: a DLN ``[d_0, h, d_2]`` whose hidden width exceeds ``rank X``: at the balanced limit a layer
  loses rank, and along each of the ``k = min(h, d_0) + min(h, d_2) - 2 rank X`` extra singular directions
  the Kirwan-Ness flow reduces to ``s' = -2 s^3``: ``|G| = sqrt(k)/(4t + c)``, not exponential (``1/|G|``
  grows linearly with slope ``4/sqrt(k)``), and ``R - R_min`` decays like ``1/t`` too.

Runs ``lcnrun/figures/specs/balancing.yaml`` (both variants from the same random points). Measured:
``|G| = sqrt(sum_p |G_p|^2)`` (the ``phi_norms`` series); the fitted slope of ``ln |G|`` where
``|G| >= 1e-7 R(0)`` (the integration floor of ``|G|`` is ~``rtol R = 1e-10 R``), for Kirwan-Ness
only its last two decades ``|G| <= 1e-5 R(0)``, ``|G|/|G(0)| <= 1e-4`` (the slowest mode alone);
``R(t_max)`` against ``R_min`` recomputed here from ``X(0)`` by an SVD; the Schatten sums from the stored
layers; the end-to-end drift ``max_t |X(t) - X(0)| / |X(0)|``.
"""
from __future__ import annotations

import numpy as np

from ..core.models import MODELS
from ._flows import arch_label, colors, fro, slope
from .base import Claim, Figure, FigureResult

DRIFT_TOL = 1e-8    # |X(t) - X(0)| / |X(0)| (rtol 1e-10 accumulated)
RMIN_TOL = 1e-8     # |R(t_max) / R_min - 1|
MONO_TOL = 1e-9     # R never increases by more than this (relative)
L2_TOL = 1e-5       # |fitted rate / 2 - 1| (ln |G| is fitted down to ~1e-7 R(0), where its error is ~1e-3)
MM_TOL = 1e-3       # |fitted rate / linearized rate - 1|
WIDE_TOL = 1e-3     # |slope of 1/|G| / (4/sqrt(k)) - 1| on the last third of the run
FLOOR = 1e-7        # |Phi| below FLOOR * R(0) is not fitted (integration floor ~ rtol * R = 1e-10 R)
SHOWN = 1e-8        # |Phi| is drawn until it first falls below SHOWN * R(0) (integration noise below)
SCHATTEN_P = (1.5, 3.0)  # Theorem 1.1 beyond p = 2
SCHATTEN_TOL = 1e-7  # |S_p(t_max) / (N (sum sigma^(p/N))^(1/p)) - 1| (G ~ 1e-10 R at the end)
L2_RATE = 2.0       # Theorem 1.2: G(t) = G(0) e^{-2t}


def gl_fibers(kind: str) -> bool:
    """Whether the fibers of model kind ``kind`` are orbits of the GL action on the hidden layers
    (the paper's deep-linear-network statements then apply; otherwise rescaling orbits: LCNs)."""
    return MODELS[kind].symmetry_group == "GL"


def r_min(kind: str, X0: np.ndarray, norms0: np.ndarray) -> float:
    """Minimum of ``sum |W_p|^2`` on the fiber (DLN) / rescaling orbit (LCN) of the initial point."""
    if gl_fibers(kind):
        N = len(norms0)
        return float(N * np.sum(np.linalg.svd(X0, compute_uv=False) ** (2.0 / N)))
    L = len(norms0)
    return float(L * np.prod(norms0) ** (1.0 / L))


def kirwan_ness_rate(kind: str, widths, X0: np.ndarray, norms0: np.ndarray) -> float:
    """Linearized rate (derived here) of the Kirwan-Ness flow at its balanced limit (module docstring); NaN when a
    hidden DLN layer is wider than ``rank X``."""
    if gl_fibers(kind):
        N = len(widths) - 1
        s = np.linalg.svd(X0, compute_uv=False)
        if len(set(widths)) != 1 or s.min() <= 0:
            return float("nan")
        return float(8 * s.min() ** (2.0 / N) * (1 - np.cos(np.pi / N)))
    L = len(norms0)
    g = np.prod(norms0) ** (1.0 / L)
    return float(8 * g * (1 - np.cos(np.pi / L)))


def until_floor(x) -> int:
    """How many stored points to draw: up to and including the first with ``|Phi| < SHOWN * R(0)``."""
    below = np.nonzero(x["phi"] < SHOWN * x["R"][0])[0]
    return int(below[0]) + 1 if below.size else len(x["phi"])


def extra_directions(widths, X0) -> int:
    """``k = min(h, d_0) + min(h, d_2) - 2 rank X`` for a two-layer DLN (0 otherwise)."""
    if len(widths) != 3:
        return 0
    d0, h, d2 = widths
    rank = int(np.linalg.matrix_rank(X0))
    return min(h, d0) + min(h, d2) - 2 * rank


def schatten_check(traj, depth: int, X0: np.ndarray) -> dict:
    """Theorem 1.1 beyond p = 2: ``S_p(t) = sum_k |W_k(t)|_p`` from the stored layers, for each ``p`` in
    ``SCHATTEN_P``: ``dev`` = ``S_p(t_max) / (N (sum_i sigma_i(X0)^(p/N))^(1/p)) - 1`` and ``rise`` =
    ``(S_p(t_max) - min_t S_p(t)) / S_p(t_max)`` (every stored point lies on the fiber of ``X0``)."""
    sv = [np.linalg.svd(np.asarray(traj[f"params/layer_{k}"], dtype=float), compute_uv=False) for k in range(depth)]
    sigma = np.linalg.svd(X0, compute_uv=False)
    out = {"dev": {}, "rise": {}}
    for p in SCHATTEN_P:
        S = sum(np.sum(s ** p, axis=1) ** (1.0 / p) for s in sv)
        out["dev"][p] = float(S[-1] / (depth * np.sum(sigma ** (p / depth)) ** (1.0 / p)) - 1)
        out["rise"][p] = float((S[-1] - S.min()) / S[-1])
    return out


class Balancing(Figure):
    name = "balancing"
    title = "balancing flows: G -> 0 (Thm 1.2: e^(-2t) for L2), |W|^2 -> N sum sigma^(2/N) (Thm 1.1), X kept"
    paper = "Lindsey & Menon (arXiv 2511.01137)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        runs, rows, problems = [], [], []
        for p, r in zip(pr.points, pr.runs):
            spec, traj, fa = p.run_spec, r.trajectory, r.final_attrs
            label = arch_label(spec)
            variant = spec.dynamics.options.variant
            if r.status != "completed":
                problems.append(f"{label} {variant} init.seed={spec.init.options.seed}: {r.status} "
                                f"({r.attrs.get('message', '')})")
            if "t" not in traj or len(traj["t"]) < 2:
                continue
            t = np.asarray(traj["t"], dtype=float)
            kind = spec.model.kind
            e = np.asarray(traj["end_to_end"], dtype=float)
            norms = np.asarray(traj["layer_norms_sq"], dtype=float)
            phi = fro(traj["phi_norms"], axes=1)
            R = np.asarray(traj["sum_sq_norms"], dtype=float)
            gl = gl_fibers(kind)
            widths = list(spec.model.options.widths) if gl else None
            Rmin = r_min(kind, e[0], norms[0])
            drift = fro(e - e[:1], axes=tuple(range(1, e.ndim))) / fro(e[0], axes=tuple(range(e[0].ndim)))
            x = {"label": label, "variant": variant, "seed": spec.init.options.seed, "t": t, "phi": phi,
                 "R": R, "Rmin": Rmin, "drift": drift, "status": r.status, "kind": kind}
            x["pred"] = kirwan_ness_rate(kind, widths, e[0], norms[0]) if variant == "kirwan_ness" else L2_RATE
            x["k"] = extra_directions(widths, e[0]) if gl else 0
            x["wide"] = variant == "kirwan_ness" and gl and not np.isfinite(x["pred"])
            if gl and not x["wide"] and f"params/layer_{len(widths) - 2}" in traj:
                x["schatten"] = schatten_check(traj, len(widths) - 1, e[0])
            rel = phi / phi[0]
            upper = 1.0 if variant == "l2" else 1e-4
            m = (rel <= upper) & (phi >= FLOOR * R[0]) & (t > 0)
            if variant == "kirwan_ness":  # the last two decades above the floor: the slowest mode alone
                m &= phi <= 100 * FLOOR * R[0]
            x["n_fit"] = int(m.sum())
            x["fit"] = -slope(t[m], np.log(phi[m])) if m.sum() >= 5 and not x["wide"] else float("nan")
            if x["wide"]:
                tail = t >= t[-1] / 3
                x["inv_slope"] = slope(t[tail], 1.0 / phi[tail])
            x["mono"] = float(np.max(np.diff(R)) / R[0]) if len(R) > 1 else 0.0
            runs.append(x)
            rows.append({"architecture": label, "variant": variant, "init.seed": x["seed"], "status": r.status,
                         "|G(0)|": float(phi[0]), "|G(t_max)|": float(phi[-1]), "t_max": float(t[-1]),
                         "fitted rate": x["fit"], "predicted rate": x["pred"] if not x["wide"] else "~sqrt(k)/(4t)",
                         "slope of 1/|G| (tail)": x.get("inv_slope", "-"),
                         "R(0)/R_min": float(R[0] / Rmin), "R(t_max)/R_min - 1": float(R[-1] / Rmin - 1),
                         "max drift |X-X0|/|X0|": float(drift.max()), "nfev": fa.get("nfev", "")})
        claims = self._claims(runs, problems)
        fig = self._draw(plt, runs, small)
        notes = ["|G| = sqrt(sum_p |G_p|_F^2) (G_p = W_p W_p^T - W_{p+1}^T W_{p+1}, our Phi_p; LCN: |delta|); "
                 "R = sum_p |W_p|_F^2; R_min recomputed from X(0) (SVD) or from the |w_l(0)|^2; rates fitted by "
                 "least squares on ln |G| where |G| >= 1e-7 R(0); curves of |G| stop where it first falls below "
                 "1e-8 R(0) (integration noise ~1e-10 R(0) below, rtol 1e-10).",
                 "flows as printed: L2 dW/dt = -1/2 grad |W|^2 on the fiber (Theorem 1.2: G(t) = G(0) e^(-2t)); "
                 "Kirwan-Ness dW_k/dt = 2 (W_k G_{k-1} - G_k W_k), the gradient of 1/2 |G|^2.",
                 "derived here (not stated in the paper): the Kirwan-Ness rates 8 sigma_min^(2/N)(1 - cos(pi/N)) "
                 "and 8 g (1 - cos(pi/L)) (linearization at the balanced limit), the 1/t law of a hidden layer "
                 "wider than rank X, and the LCN (rescaling-orbit) versions of both flows.",
                 "a hidden layer wider than rank X (dense [3,5,2]): the Kirwan-Ness flow still converges, but "
                 "like 1/t, not exponentially; R - R_min follows |G|."]
        notes += [f"run not completed: {x}" for x in problems]
        return FigureResult(fig, rows, claims, notes)

    # -----------------------------------------------------------------------------------------
    def _claims(self, runs, problems):
        claims = []
        drift = max(float(x["drift"].max()) for x in runs)
        claims.append(Claim("both flows keep X: |X(t) - X(0)| / |X(0)| along every run (every run completed)",
                            f"max {drift:.2e} over {len(runs)} runs ({len(problems)} not completed)",
                            f"0 (< {DRIFT_TOL:g}; rtol 1e-10)", bool(drift < DRIFT_TOL and not problems)))
        mono = max(x["mono"] for x in runs)
        claims.append(Claim("R = sum_p |W_p|^2 decreases along both flows",
                            f"largest increase between stored times / R(0) = {mono:.1e}",
                            f"<= 0 (< {MONO_TOL:g} rounding)", bool(mono < MONO_TOL)))
        conv = [x for x in runs if not x["wide"]]
        rm = max(abs(x["R"][-1] / x["Rmin"] - 1) for x in conv)
        claims.append(Claim("Theorem 1.1: |W|_2 is minimized on the fiber at its balanced points: R reaches "
                            "N sum_i sigma_i(X)^(2/N) (LCN, rescaling orbit, derived here: L (prod |w_l|^2)^(1/L))",
                            f"max |R(t_max)/R_min - 1| = {rm:.2e} over {len(conv)} runs "
                            f"(R(0)/R_min up to {max(x['R'][0] / x['Rmin'] for x in conv):.3g})",
                            f"0 (< {RMIN_TOL:g})", bool(rm < RMIN_TOL)))
        sch = [x["schatten"] for x in runs if "schatten" in x]
        if sch:
            dev = max(max(abs(v) for v in c["dev"].values()) for c in sch)
            rise = max(max(c["rise"].values()) for c in sch)
            claims.append(Claim("Theorem 1.1 for Schatten p-norms (p = " + ", ".join(f"{p:g}" for p in SCHATTEN_P)
                                + "): sum_k |W_k|_p is minimized on the fiber at the balanced point, value "
                                "N (sum_i sigma_i(X)^(p/N))^(1/p) (derived here from the theorem)",
                                f"max |S_p(t_max) / N(sum sigma^(p/N))^(1/p) - 1| = {dev:.1e}; largest "
                                f"S_p(t_max) - min_t S_p(t) (relative) = {rise:.1e}; over {len(sch)} DLN runs",
                                f"equal (< {SCHATTEN_TOL:g}) and no stored point lower (<= {SCHATTEN_TOL:g})",
                                bool(dev < SCHATTEN_TOL and rise <= SCHATTEN_TOL)))
        l2 = [x for x in runs if x["variant"] == "l2"]
        if l2:
            dev = max(abs(x["fit"] / L2_RATE - 1) if np.isfinite(x["fit"]) else np.inf for x in l2)
            claims.append(Claim("Theorem 1.2: L2 balancing flow dW/dt = -1/2 grad |W|^2 on the fiber has "
                                "G(t) = G(0) e^(-2t) (uniform exponential rate 2)",
                                f"fitted rates {min(x['fit'] for x in l2):.8g}..{max(x['fit'] for x in l2):.8g}; "
                                f"max |rate/2 - 1| = {dev:.1e} over {len(l2)} runs",
                                f"2 for every run (< {L2_TOL:g})", bool(dev < L2_TOL)))
        mm = [x for x in runs if x["variant"] == "kirwan_ness" and not x["wide"]]
        if mm:
            dev = max(abs(x["fit"] / x["pred"] - 1) if np.isfinite(x["fit"]) else np.inf for x in mm)
            rates = [x["fit"] for x in mm]
            claims.append(Claim("Kirwan-Ness flow (gradient of 1/2 |G|^2) converges globally (paper); derived here: "
                                "exponentially, at the linearized rate 8 sigma_min(X)^(2/N)(1 - cos(pi/N)) "
                                "(DLN, equal widths), 8 g (1 - cos(pi/L)) (LCN)",
                                f"fitted rates {min(rates):.4g}..{max(rates):.4g}; max |fitted/predicted - 1| = "
                                f"{dev:.1e} over {len(mm)} runs", f"equal (< {MM_TOL:g}); rate depends on the point",
                                bool(dev < MM_TOL)))
        wide = [x for x in runs if x["wide"]]
        if wide:
            dev = max(abs(x["inv_slope"] * np.sqrt(x["k"]) / 4 - 1) if x["k"] > 0 else np.inf for x in wide)
            slopes = ", ".join(format(x["inv_slope"], ".5g") for x in wide)
            ks = sorted({x["k"] for x in wide})
            claims.append(Claim("derived here: Kirwan-Ness, hidden layer wider than rank X: converges, but "
                                "|G| ~ sqrt(k)/(4t), not exponentially (k extra singular directions, s' = -2 s^3)",
                                f"slope of 1/|G| on the last third: {slopes} (k = {ks}); "
                                f"max |slope sqrt(k)/4 - 1| = {dev:.1e}",
                                f"4/sqrt(k) (< {WIDE_TOL:g})", bool(dev < WIDE_TOL)))
        return claims

    # -----------------------------------------------------------------------------------------
    def _draw(self, plt, runs, small):
        fig, axes = plt.subplots(2, 3, figsize=(18, 10.5), constrained_layout=True)
        labels = list(dict.fromkeys(x["label"] for x in runs))
        col = dict(zip(labels, colors(plt, len(labels))))
        # (a) moment map, time in units of the predicted rate
        ax = axes[0, 0]
        for x in runs:
            if x["variant"] == "kirwan_ness" and not x["wide"]:
                n = until_floor(x)
                ax.semilogy(x["pred"] * x["t"][:n], x["phi"][:n] / x["phi"][0], color=col[x["label"]], lw=1)
        s = np.linspace(0, 30, 50)
        ax.semilogy(s, np.exp(-s), "k--", lw=1, label="exp(-rate t) (slope)")
        for lab in labels:
            if any(x["label"] == lab and x["variant"] == "kirwan_ness" and not x["wide"] for x in runs):
                ax.plot([], [], color=col[lab], label=lab)
        ax.set_xlim(0, 30)
        ax.set_ylim(1e-13, 10)
        ax.set_xlabel("rate * t,  rate = 8 sigma_min(X)^(2/N) (1 - cos(pi/N))  (LCN: 8 g (1 - cos(pi/L))), derived here")
        ax.set_ylabel("|G(t)| / |G(0)|  (log scale)")
        ax.set_title("(a) Kirwan-Ness flow: exponential at the linearized rate")
        ax.legend(fontsize=7, loc="lower left")
        # (b) l2 flow
        ax = axes[0, 1]
        for x in runs:
            if x["variant"] == "l2":
                n = until_floor(x)
                ax.semilogy(x["t"][:n], x["phi"][:n] / x["phi"][0], color=col[x["label"]], lw=1)
        s = np.linspace(0, 16, 50)
        ax.semilogy(s, np.exp(-L2_RATE * s), "k--", lw=1, label="exp(-2t)  (Theorem 1.2)")
        ax.set_xlim(0, 16)
        ax.set_xlabel("t")
        ax.set_ylabel("|G(t)| / |G(0)|  (log scale)")
        ax.set_title("(b) L2 balancing flow: G(t) = G(0) e^(-2t) (Theorem 1.2), every point")
        ax.legend(fontsize=8)
        # (c) wide hidden layer
        ax = axes[0, 2]
        for x in runs:
            if gl_fibers(x["kind"]) and x["k"] > 0:
                c = col[x["label"]]
                m = x["t"] > 0
                if x["variant"] == "kirwan_ness":
                    ax.loglog(x["t"][m], x["phi"][m], color=c, lw=1.2)
                    gap = x["R"][m] - x["Rmin"]
                    ax.loglog(x["t"][m][gap > 0], gap[gap > 0], color=c, lw=1, ls="--")
                else:
                    n = until_floor(x)
                    ax.loglog(x["t"][1:n], x["phi"][1:n], color=c, lw=0.8, ls=":")
        wide = [x for x in runs if x["wide"]]
        if wide:
            tt = np.logspace(0, np.log10(wide[0]["t"][-1]), 20)
            k = wide[0]["k"]
            ax.loglog(tt, np.sqrt(k) / (4 * tt), "k-", lw=0.8, alpha=0.6, label=f"sqrt(k)/(4t), k = {k} (derived here)")
            ax.plot([], [], color="0.3", lw=1.2, label=f"Kirwan-Ness |G| ({wide[0]['label']})")
            ax.plot([], [], color="0.3", lw=1, ls="--", label="Kirwan-Ness R - R_min")
            ax.plot([], [], color="0.3", lw=0.8, ls=":", label="L2 flow |G| (exp(-2t))")
        ax.set_ylim(1e-13, 1e2)
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("|G(t)|, R(t) - R_min  (log scale)")
        ax.set_title("(c) hidden layer wider than rank X: Kirwan-Ness ~ 1/t")
        ax.legend(fontsize=8)
        # (d) R / R_min - 1
        ax = axes[1, 0]
        for x in runs:
            gap = x["R"] / x["Rmin"] - 1
            m = (x["t"] > 0) & (gap > 0)
            ax.loglog(x["t"][m], gap[m], color=col[x["label"]], lw=0.8,
                      ls="-" if x["variant"] == "kirwan_ness" else ":")
        ax.plot([], [], "k-", lw=0.8, label="Kirwan-Ness")
        ax.plot([], [], "k:", lw=0.8, label="L2")
        ax.axhline(RMIN_TOL, color="grey", ls="-.", lw=1, label=f"claim tolerance {RMIN_TOL:g}")
        ax.set_ylim(1e-15, None)
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("R(t) / (N sum_i sigma_i(X)^(2/N)) - 1  (log scale)")
        ax.set_title("(d) sum |W_p|^2 down to N sum sigma_i^(2/N) (Theorem 1.1; LCN: L g)")
        ax.legend(fontsize=8)
        # (e) drift
        ax = axes[1, 1]
        for x in runs:
            m = (x["t"] > 0) & (x["drift"] > 0)
            ax.loglog(x["t"][m], x["drift"][m], color=col[x["label"]], lw=0.8,
                      ls="-" if x["variant"] == "kirwan_ness" else ":")
        ax.axhline(DRIFT_TOL, color="grey", ls="-.", lw=1, label=f"claim tolerance {DRIFT_TOL:g}")
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("|X(t) - X(0)|_F / |X(0)|_F  (log scale)")
        ax.set_title("(e) the end-to-end map is kept (integration error only)")
        ax.legend(fontsize=8)
        # (f) fitted vs predicted
        ax = axes[1, 2]
        for x in runs:
            if x["variant"] == "kirwan_ness" and not x["wide"] and np.isfinite(x["fit"]):
                ax.loglog(x["pred"], x["fit"], "o", color=col[x["label"]], ms=5)
            elif x["variant"] == "l2" and np.isfinite(x["fit"]):
                ax.loglog(L2_RATE, x["fit"], "s", mfc="none", color=col[x["label"]], ms=7)
        ax.loglog([1e-2, 1e2], [1e-2, 1e2], "k--", lw=0.8, label="fitted = predicted")
        ax.plot([], [], "ko", ms=5, label="Kirwan-Ness (predicted: linearization, derived here)")
        ax.plot([], [], "ks", mfc="none", ms=7, label="L2 (Theorem 1.2: 2)")
        ax.set_xlabel("predicted rate")
        ax.set_ylabel("fitted rate of ln |G|")
        ax.set_title("(f) fitted vs predicted exponential rates")
        ax.legend(fontsize=8)
        fig.suptitle("Balancing flows on fibers of the end-to-end map (Lindsey & Menon 2511.01137)"
                     f"{'  [small]' if small else ''}", fontsize=13)
        return fig
