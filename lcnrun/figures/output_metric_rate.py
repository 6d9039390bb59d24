"""``output-metric-rate``: the output-metric flow converges at the uniform rate ``2/N`` (Chen, arXiv
2311.15487; Chen & Munoz Ewald, arXiv 2408.01517).

The flow ``d theta/dt = -D^+ grad_x C`` (``D = dx/dtheta``, ``x in R^{QN}`` the outputs of all ``N``
samples, ``C = (1/2N) |x - y|^2``) moves the outputs by ``dx/dt = -Pi_{range D} (x - y)/N``:

- over-parametrized (``rank D = QN``): ``dx/dt = -(x - y)/N``, so ``C(t) = C(0) exp(-2t/N)`` for every
  initialization and architecture (``ln C`` is a line of slope ``-2/N``), the outputs move on the
  straight segment to ``y``, and ``C`` reaches ``eps`` at the a-priori time
  ``T(eps) = (N/2) ln(C(0)/eps)``;
- under-parametrized (DLN with ``N > d_0``, so ``rank D = d_N d_0 < QN``): ``range D = range F`` (``x = F e``)
  whenever ``J = de/dtheta`` is onto, and with ``x* = Pi_{range F} y`` the least-squares fit,
  ``dx/dt = -(x - x*)/N``: ``C(t) - C_min = (C(0) - C_min) exp(-2t/N)``, a plateau at the
  least-squares minimum ``C_min > 0``, not at 0, and ``T(eps)`` for ``eps < C_min`` is never reached.

Runs ``lcnrun/figures/specs/output-metric-rate.yaml``: each point once with ``output_metric_flow`` and
once with plain ``gradient_flow`` from the same initialization. Measured from the run files:

- the fitted slope of ``ln C`` against ``t`` over every stored time, as ``slope * N/2 + 1`` (0 exactly);
- the outputs ``x(t) = F e(t)`` (recomputed here from the stored end-to-end maps and the rebuilt data
  set) against the straight line ``y + (x(0) - y) e^{-t/N}``: the largest
  ``|x(t) - y - (x(0) - y) e^{-t/N}| / |x(0) - y|`` over the stored times;
- ``t_eps_measured`` (first time ``C <= eps``, located by ``solve_ivp``) against ``(N/2) ln(C(0)/eps)``;
- ``rank D`` along the runs (``rank_D``) against ``QN``;
- under-parametrized: ``C_min`` recomputed here by ``numpy.linalg.lstsq`` from the rebuilt data set,
  ``C(t_max) / C_min``, and the slope of ``ln(C - C_min)`` where ``C - C_min > 1e-7 C_min``;
- gradient flow: its fitted rate ``-(N/2) d ln C/dt`` over ``C >= 1e-10 C(0)`` per run, for contrast.

Tolerances reflect the integrator (DOP853, rtol 1e-10, atol 1e-12 on ``theta``).
"""
from __future__ import annotations

import numpy as np

from ._flows import arch_label, colors, rebuild, slope
from .base import Claim, Figure, FigureResult

RATE_TOL = 1e-6     # |slope N/2 + 1|: integration error (rtol 1e-10) over ln C ~ 25
LINE_TOL = 1e-8     # |x(t) - straight line| / |x(0) - y|: rtol 1e-10 accumulated along the run
TEPS_TOL = 1e-6     # |t_eps / T(eps) - 1|
PLATEAU_TOL = 1e-6  # |C(t_max)/C_min - 1| (C - C_min has fallen by exp(-24) from C(0) - C_min)
GF_SPREAD = 2.0     # gradient flow: max/min of its fitted rates over the runs exceeds this
GF_FLOOR = 1e-14    # gradient flow losses below GF_FLOOR * C(0) are rounding (the quadratic form), not drawn
COLUMNS = ("architecture", "dynamics", "init.seed", "N", "QN", "P", "regime", "rank D", "status", "C(0)",
           "C(t_max)", "|slope N/2 + 1|", "max |x - line| / |x0 - y|", "T(eps)", "t_eps measured",
           "C_min (lstsq)", "|C(t_max)/C_min - 1|", "|slope(ln(C - C_min)) N/2 + 1|",
           "GF fitted rate -(N/2) dlnC/dt")


def straight_line_deviation(run_spec, traj, t, N) -> float:
    """``max_t |x(t) - y - (x(0) - y) e^{-t/N}| / |x(0) - y|`` with ``x(t) = F e(t)`` the outputs of the
    stored end-to-end maps on the rebuilt data set."""
    model, problem = rebuild(run_spec)
    e = np.asarray(traj["end_to_end"], dtype=float)
    x = model.predict(e, model.features(problem.dataset.inputs)).reshape(len(t), -1)
    y = np.asarray(problem.dataset.targets, dtype=float).reshape(-1)
    line = y + (x[0] - y) * np.exp(-t / N)[:, None]
    return float(np.max(np.linalg.norm(x - line, axis=1)) / np.linalg.norm(x[0] - y))


def least_squares_minimum(run_spec) -> float:
    """``C_min = min_e (1/2N) |F e - y|^2`` of a run's data set (``x = F e`` the outputs of all samples,
    ``F (QN, E)`` built column by column from the model's ``predict``), by ``numpy.linalg.lstsq``:
    independent of the sufficient statistics the runs use."""
    model, problem = rebuild(run_spec)
    x = np.asarray(problem.dataset.inputs, dtype=float)
    y = np.asarray(problem.dataset.targets, dtype=float).reshape(-1)
    E = model.end_to_end_size
    F = model.predict(np.eye(E).reshape((E,) + model.end_to_end_shape), model.features(x)).reshape(E, -1).T
    e, *_ = np.linalg.lstsq(F, y, rcond=None)
    return float(np.sum((F @ e - y) ** 2) / (2 * len(x)))


class OutputMetricRate(Figure):
    name = "output-metric-rate"
    title = "output-metric flow: ln C(t) has slope -2/N for every init and architecture; a-priori T(eps); plateau"
    paper = "Chen (arXiv 2311.15487); Chen & Munoz Ewald (arXiv 2408.01517)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        om_over, om_under, gf_all, rows, problems = [], [], [], [], []
        cmin_cache: dict = {}
        for p, r in zip(pr.points, pr.runs):
            spec, traj, fa = p.run_spec, r.trajectory, r.final_attrs
            kind = spec.dynamics.kind
            label = arch_label(spec)
            if r.status != "completed" or "loss" not in traj:
                problems.append(f"{label} {kind} init.seed={spec.init.options.seed}: {r.status} "
                                f"({r.attrs.get('message', '')})")
            if "loss" not in traj or len(traj["loss"]) < 2:
                continue
            t = np.asarray(traj["t"], dtype=float)
            C = np.asarray(traj["loss"], dtype=float)
            N = int(spec.data.options.n_samples)
            e = {"label": label, "seed": spec.init.options.seed, "t": t, "C": C, "N": N, "run": r,
                 "status": r.status}
            row = {"architecture": label, "dynamics": kind, "init.seed": e["seed"], "N": N,
                   "status": r.status, "C(0)": float(C[0]), "C(t_max)": float(C[-1])}
            if kind == "output_metric_flow":
                QN, P = int(fa["n_outputs"]), int(fa["n_params"])
                rank = np.asarray(traj["rank_D"])
                e.update(QN=QN, P=P, rank_min=int(rank.min()), rank_max=int(rank.max()),
                         eps=float(spec.dynamics.options.eps), t_eps=float(fa["t_eps_measured"]))
                e["T_eps"] = 0.5 * N * np.log(C[0] / e["eps"])
                e["rate_dev"] = abs(slope(t, np.log(C)) * N / 2 + 1) if np.all(C > 0) else float("nan")
                over = fa["variant_used"] == "overparametrized"
                row.update({"QN": QN, "P": P, "rank D": f"{e['rank_min']}..{e['rank_max']}",
                            "regime": fa["variant_used"]})
                if over:
                    e["line_dev"] = straight_line_deviation(spec, traj, t, N)
                    row.update({"|slope N/2 + 1|": e["rate_dev"], "max |x - line| / |x0 - y|": e["line_dev"],
                                "T(eps)": e["T_eps"], "t_eps measured": e["t_eps"]})
                    om_over.append(e)
                else:
                    key = label
                    if key not in cmin_cache:
                        cmin_cache[key] = least_squares_minimum(spec)
                    Cmin = cmin_cache[key]
                    excess = C - Cmin
                    m = excess > 1e-7 * Cmin
                    e.update(Cmin=Cmin, excess=excess, plateau_dev=abs(C[-1] / Cmin - 1),
                             excess_rate_dev=abs(slope(t[m], np.log(excess[m])) * N / 2 + 1))
                    row.update({"C_min (lstsq)": Cmin, "|C(t_max)/C_min - 1|": e["plateau_dev"],
                                "|slope(ln(C - C_min)) N/2 + 1|": e["excess_rate_dev"],
                                "T(eps)": e["T_eps"], "t_eps measured": e["t_eps"]})
                    om_under.append(e)
            else:
                m = C >= 1e-10 * C[0]
                e["gf_rate"] = -slope(t[m], np.log(C[m])) * N / 2
                row["GF fitted rate -(N/2) dlnC/dt"] = e["gf_rate"]
                gf_all.append(e)
            rows.append({c: row.get(c, "") for c in COLUMNS})
        under = {e["label"] for e in om_under}  # gradient flow runs go with their output-metric regime
        gf_over = [e for e in gf_all if e["label"] not in under]
        gf_under = [e for e in gf_all if e["label"] in under]

        claims = self._claims(om_over, om_under, gf_over, gf_under, problems)
        fig = self._draw(plt, om_over, om_under, gf_over, gf_under, small)
        notes = ["C = (1/2N)|x - y|^2 is the square loss L; rate deviations are from least-squares fits "
                 "of ln C over all stored times (200 linear points).",
                 "under-parametrized: C does NOT go to 0. It plateaus at the least-squares minimum C_min "
                 "(recomputed by lstsq), C - C_min decaying at the same uniform rate 2/N; T(eps) = "
                 "(N/2) ln(C(0)/eps) is then no stopping time (C never reaches eps < C_min).",
                 "gradient flow from the same initializations is drawn in grey: its rate depends on the "
                 "initialization and architecture (its loss is drawn down to 1e-14 C(0): below that "
                 "it is rounding of the quadratic form, ~1e-16, sometimes negative)."]
        notes += [f"run not completed: {x}" for x in problems]
        return FigureResult(fig, rows, claims, notes)

    # -----------------------------------------------------------------------------------------
    def _claims(self, om_over, om_under, gf_over, gf_under, problems):
        claims = []
        n = len(om_over)
        rank_ok = [e for e in om_over if e["rank_min"] == e["QN"]]
        claims.append(Claim(
            "every run completed; over-parametrized: rank D = QN along every trajectory (the hypothesis "
            "of the exponential law)",
            f"{len(problems)} runs not completed; rank D = QN in {len(rank_ok)} of {n} over-parametrized runs",
            "all", bool(n and not problems and len(rank_ok) == n)))
        dev = max((e["rate_dev"] for e in om_over), default=float("nan"))
        claims.append(Claim(
            "fitted slope of ln C vs t equals -2/N for every initialization and architecture",
            f"max |slope N/2 + 1| = {dev:.2e} over {n} runs, "
            f"{len({e['label'] for e in om_over})} architectures",
            f"0 (< {RATE_TOL:g}; rtol 1e-10)", bool(n and dev < RATE_TOL)))
        line = max((e["line_dev"] for e in om_over), default=float("nan"))
        claims.append(Claim(
            "linear interpolation in output space: x(t) = y + (x(0) - y) exp(-t/N) "
            "(so C(t) = C(0) exp(-2t/N)) at every stored time",
            f"max |x(t) - y - (x(0) - y) e^(-t/N)| / |x(0) - y| = {line:.2e}", f"0 (< {LINE_TOL:g})",
            bool(n and line < LINE_TOL)))
        te = [abs(e["t_eps"] / e["T_eps"] - 1) for e in om_over]
        te_max = max(te, default=float("nan"))
        claims.append(Claim(
            "a-priori stopping time: C first reaches eps at T(eps) = (N/2) ln(C(0)/eps)",
            f"max |t_eps measured / T(eps) - 1| = {te_max:.2e} (T from {min(e['T_eps'] for e in om_over):.3g} "
            f"to {max(e['T_eps'] for e in om_over):.3g})" if om_over else "no runs",
            f"0 (< {TEPS_TOL:g})", bool(n and np.all(np.isfinite(te)) and te_max < TEPS_TOL)))
        if om_under:
            pd = max(e["plateau_dev"] for e in om_under)
            rd = max(e["excess_rate_dev"] for e in om_under)
            cm = [e["Cmin"] for e in om_under]
            ranks = sorted({(e["rank_min"], e["rank_max"], e["QN"]) for e in om_under})
            claims.append(Claim(
                "under-parametrized (rank D < QN): C plateaus at the least-squares minimum C_min > 0",
                f"max |C(t_max)/C_min - 1| = {pd:.2e}; C_min = {min(cm):.4g}..{max(cm):.4g}; "
                f"rank D (min, max, QN) = {ranks}",
                f"0 (< {PLATEAU_TOL:g}), C_min > 0, rank D < QN",
                bool(pd < PLATEAU_TOL and min(cm) > 0 and all(a == b < q for a, b, q in ranks))))
            claims.append(Claim(
                "under-parametrized: C - C_min = (C(0) - C_min) exp(-2t/N) (same uniform rate)",
                f"max |slope(ln(C - C_min)) N/2 + 1| = {rd:.2e}", f"0 (< {RATE_TOL:g})", bool(rd < RATE_TOL)))
            never = [e for e in om_under if e["Cmin"] > e["eps"]]
            claims.append(Claim(
                "under-parametrized: eps < C_min is never reached, so T(eps) is no stopping time there",
                f"t_eps measured is NaN in {sum(not np.isfinite(e['t_eps']) for e in never)} of {len(never)} runs",
                "never reached", bool(never and all(not np.isfinite(e["t_eps"]) for e in never))))
        rates = [e["gf_rate"] for e in gf_over if np.isfinite(e["gf_rate"]) and e["gf_rate"] > 0]
        if rates:
            spread = max(rates) / min(rates)
            claims.append(Claim(
                "contrast: plain gradient flow has no uniform rate (its fitted -(N/2) d ln C/dt varies)",
                f"{min(rates):.3g} .. {max(rates):.3g} over {len(rates)} runs (ratio {spread:.3g})",
                f"varies (ratio > {GF_SPREAD:g}); the output-metric flow: 1 for all", bool(spread > GF_SPREAD)))
        return claims

    # -----------------------------------------------------------------------------------------
    def _draw(self, plt, om_over, om_under, gf_over, gf_under, small):
        fig, axes = plt.subplots(2, 3, figsize=(18, 10.5), constrained_layout=True)
        labels = list(dict.fromkeys(e["label"] for e in om_over))
        col = dict(zip(labels, colors(plt, len(labels))))
        # (a) ln C vs t
        ax = axes[0, 0]
        for e in gf_over:
            m = e["C"] > GF_FLOOR * e["C"][0]
            ax.semilogy(e["t"][m], e["C"][m], color="0.6", lw=0.7, ls=":")
        for e in om_over:
            ax.semilogy(e["t"], e["C"], color=col[e["label"]], lw=1.4)
        for lab in labels:
            e = next(x for x in om_over if x["label"] == lab)
            ax.semilogy(e["t"], e["C"][0] * np.exp(-2 * e["t"] / e["N"]), "k--", lw=0.8)
            ax.plot([], [], color=col[lab], label=f"{lab}, N = {e['N']}")
        ax.plot([], [], "k--", lw=0.8, label="C(0) exp(-2t/N)")
        ax.plot([], [], color="0.6", ls=":", label="plain gradient flow, same inits")
        ax.set_xlabel("t")
        ax.set_ylabel("C(t) = (1/2N)|x - y|^2  (log scale)")
        ax.set_title("(a) over-parametrized: output-metric flow, every init")
        ax.legend(fontsize=7, loc="lower left")
        # (b) collapse
        ax = axes[0, 1]
        for e in gf_over:
            m = e["C"] > GF_FLOOR * e["C"][0]
            ax.semilogy(2 * e["t"][m] / e["N"], e["C"][m] / e["C"][0], color="0.6", lw=0.7, ls=":")
        for e in om_over:
            ax.semilogy(2 * e["t"] / e["N"], e["C"] / e["C"][0], color=col[e["label"]], lw=1.4)
        s = np.linspace(0, 24, 50)
        ax.semilogy(s, np.exp(-s), "k--", lw=1, label="exp(-2t/N)")
        ax.plot([], [], color="0.6", ls=":", label="plain gradient flow")
        ax.set_ylim(GF_FLOOR / 10, 2)
        ax.set_xlim(0, 24.5)
        ax.set_xlabel("2t / N")
        ax.set_ylabel("C(t) / C(0)  (log scale)")
        ax.set_title("(b) the same runs against 2t/N: one line")
        ax.legend(fontsize=8)
        # (c) deviations per run
        ax = axes[0, 2]
        for i, lab in enumerate(labels):
            es = [e for e in om_over if e["label"] == lab]
            ax.semilogy([i] * len(es), [max(e["rate_dev"], 1e-16) for e in es], "o", color=col[lab],
                        label="|slope N/2 + 1|" if i == 0 else None)
            ax.semilogy([i + 0.2] * len(es), [max(e["line_dev"], 1e-16) for e in es], "s", mfc="none",
                        color=col[lab], label="max_t |x(t) - line| / |x(0) - y|" if i == 0 else None)
            ax.semilogy([i + 0.4] * len(es), [max(abs(e["t_eps"] / e["T_eps"] - 1), 1e-16) for e in es],
                        "^", color=col[lab], alpha=0.6, label="|t_eps / T(eps) - 1|" if i == 0 else None)
        ax.axhline(RATE_TOL, color="grey", ls=":", lw=1)
        ax.axhline(LINE_TOL, color="grey", ls="-.", lw=1)
        ax.set_xticks(np.arange(len(labels)) + 0.2)
        ax.set_xticklabels([lab.replace(" strides", "\nstrides") for lab in labels], rotation=30,
                           fontsize=7, ha="right")
        ax.set_ylabel("relative deviation from the law (log scale)")
        ax.set_title(f"(c) per run; tolerances: slope, t_eps {RATE_TOL:g} (dotted), line {LINE_TOL:g} (dash-dot)")
        ax.legend(fontsize=8)
        # (d) a-priori stopping time
        ax = axes[1, 0]
        T = np.array([e["T_eps"] for e in om_over])
        for e in om_over:
            ax.plot(e["T_eps"], e["t_eps"], "o", color=col[e["label"]], ms=5)
        if T.size:
            lim = [0, 1.05 * T.max()]
            ax.plot(lim, lim, "k--", lw=0.8, label="t_eps = T(eps)")
        ax.set_xlabel("a-priori T(eps) = (N/2) ln(C(0)/eps)")
        ax.set_ylabel("measured first time C <= eps")
        eps = om_over[0]["eps"] if om_over else float("nan")
        ax.set_title(f"(d) a-priori stopping time vs measured, eps = {eps:g}")
        ax.legend(fontsize=8)
        # (e), (f) under-parametrized
        ulabels = list(dict.fromkeys(e["label"] for e in om_under))
        ucol = dict(zip(ulabels, colors(plt, len(labels) + len(ulabels))[len(labels):]))
        ax = axes[1, 1]
        for e in gf_under:
            ax.semilogy(e["t"], e["C"], color="0.6", lw=0.7, ls=":")
        for e in om_under:
            ax.semilogy(e["t"], e["C"], color=ucol[e["label"]], lw=1.4)
        for lab in ulabels:
            e = next(x for x in om_under if x["label"] == lab)
            ax.axhline(e["Cmin"], color=ucol[lab], ls="--", lw=0.9)
            ax.plot([], [], color=ucol[lab], label=f"{lab}, N = {e['N']}, QN = {e['QN']}, rank D = {e['rank_min']}")
        ax.plot([], [], "k--", lw=0.9, label="least-squares C_min (lstsq)")
        ax.plot([], [], color="0.6", ls=":", label="plain gradient flow")
        ax.set_xlabel("t")
        ax.set_ylabel("C(t)  (log scale)")
        ax.set_title("(e) under-parametrized: plateau at C_min > 0")
        ax.legend(fontsize=7)
        ax = axes[1, 2]
        for e in om_under:
            m = e["excess"] > 0
            ax.semilogy(e["t"][m], e["excess"][m] / e["Cmin"], color=ucol[e["label"]], lw=1.4)
            ax.semilogy(e["t"], (e["C"][0] - e["Cmin"]) * np.exp(-2 * e["t"] / e["N"]) / e["Cmin"], "k--", lw=0.7)
        ax.axhline(1e-7, color="grey", ls=":", lw=1, label="fit threshold 1e-7")
        ax.plot([], [], "k--", lw=0.7, label="(C(0) - C_min) exp(-2t/N)")
        ax.set_xlabel("t")
        ax.set_ylabel("(C(t) - C_min) / C_min  (log scale)")
        ax.set_title("(f) under-parametrized: C - C_min decays at rate 2/N")
        ax.legend(fontsize=8)
        fig.suptitle(f"Output-metric flow d theta/dt = -D^+ grad_x C: uniform rate 2/N "
                     f"(Chen 2311.15487; Chen & Munoz Ewald 2408.01517){'  [small]' if small else ''}",
                     fontsize=13)
        return fig
