"""``saxe-modes``: the mode dynamics of deep linear networks (Saxe, McClelland & Ganguli, ICLR 2014,
arXiv 1312.6120) against their closed forms, for depths 2, 3, 4.

Their setting: whitened inputs, a balanced and aligned start (the layers share the singular vectors of the
input-output correlation ``Sigma_yx = U_s diag(s) V_s^T``), so that each singular mode evolves alone,
``u_i(t) = U_i^T X(t) V_i``:

- two layers: ``tau du/dt = 2 u (s - u)``, ``u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``, learning time
  from ``u0`` to ``u_f``: ``t = (tau/2s) ln(u_f (s - u0) / (u0 (s - u_f)))``;
- ``N_l`` layers of neurons (``N = N_l - 1`` weight matrices, our depth ``N``): ``tau du/dt =
  (N_l - 1) u^{2 - 2/(N_l - 1)} (s - u)``, i.e. ``N u^{2 - 2/N} (s - u)`` (no closed form used: integrated
  here by scipy at rtol 1e-13; the learning time by quadrature of ``du / (N u^{2-2/N} (s - u))``).

Our conventions (SPEC section 1): ``L = (1/N_s) sum_n 1/2 |X x_n - y_n|^2``, gradient flow ``d theta/dt =
-grad L`` (gradient descent: ``t = step * lr``). ``data: function_space`` is whitened (``(1/N_s) sum x x^T = I``),
so ``grad_X L = X - Sigma_yx`` with ``Sigma_yx = (1/N_s) sum y x^T = U`` (the target), and the balanced mode
``u = a^N`` of ``W_p = a`` obeys ``du/dt = N a^{N-1} a^{N-1} (s - u)``: **tau = 1**, ``s`` = the singular
values of ``U``. (With Saxe's ``Sigma^{31}`` a sum over samples and learning rate ``lambda``, ``tau = 1/lambda``;
our mean over samples and ``t = step * lr`` absorb both.)

Runs ``lcnrun/figures/specs/saxe-modes.yaml``: ``U = diag(s)`` (so the aligned layers are diagonal), balanced
aligned starts ``W_p = u0^{1/N} I`` for depths 2, 3, 4, and small Gaussian (unaligned, unbalanced) starts.
Measured from the stored ``end_to_end`` series: ``u_i(t) = U_i^T X(t) V_i`` (``U_s, V_s`` from an SVD of the
target), ``u0 = u_i(0)``;

- aligned: ``max_t |u_i(t) - u_pred(t)| / s_i`` (closed form for depth 2, scipy for depth 3, 4), and the
  learning time to ``u_f = s/2`` (root of a cubic spline through the stored points) against the formula /
  quadrature;
- random (how closely they follow, measured here, not a statement of the paper): the time of the
  transition from ``0.1 s`` to ``0.9 s``, which for the aligned balanced solution does not depend on ``u0``
  (depth 2: ``(1/2s) ln 81``), against that prediction, for two layers at decreasing init scales (the
  deviation must shrink with the scale, and be within 10% at the smallest); the order in which the modes
  are learned.
"""
from __future__ import annotations

import numpy as np

from ._flows import colors
from .base import Claim, Figure, FigureResult

CLOSED_TOL = 1e-8    # depth 2, aligned: max |u - closed form| / s (rtol 1e-12 integration)
ODE_TOL = 1e-5       # depth 3, 4, aligned: max |u - scalar ODE| / s (the fast transitions amplify timing error)
TIME_TOL = 1e-4      # aligned: |t_learn / predicted - 1| (cubic-spline root through points 0.05 apart: ~1e-5)
RANDOM_TOL = 0.1     # depth 2, smallest random scale: |transition time / (1/2s) ln 81 - 1| (our tolerance)


def mode_ode(depth: int, s: float):
    """``du/dt = N u^{2 - 2/N} (s - u)`` (tau = 1)."""
    return lambda t, u: depth * np.abs(u) ** (2.0 - 2.0 / depth) * (s - u)


def predicted_modes(depth: int, s: float, u0: float, t: np.ndarray) -> np.ndarray:
    """The balanced aligned mode ``u(t)`` at times ``t (T,)``: closed form (depth 2) or scipy (rtol 1e-13)."""
    if depth == 2:
        e = np.exp(2 * s * t)
        return s * e / (e - 1 + s / u0)
    from scipy.integrate import solve_ivp

    sol = solve_ivp(mode_ode(depth, s), (t[0], t[-1]), [u0], t_eval=t, method="DOP853", rtol=1e-13, atol=1e-16)
    return sol.y[0]


def learning_time(depth: int, s: float, u0: float, uf: float) -> float:
    """Time from ``u0`` to ``uf``: ``(1/2s) ln(uf (s - u0) / (u0 (s - uf)))`` (depth 2), else the quadrature of
    ``du / (N u^{2-2/N} (s - u))``."""
    if depth == 2:
        return float(np.log(uf * (s - u0) / (u0 * (s - uf))) / (2 * s))
    from scipy.integrate import quad

    f = mode_ode(depth, s)
    return float(quad(lambda u: 1.0 / f(0.0, u), u0, uf, epsabs=0.0, epsrel=1e-13, limit=200)[0])


def crossing(t: np.ndarray, u: np.ndarray, level: float) -> float:
    """First time ``u`` reaches ``level`` (root of a cubic spline through the stored points; NaN if never)."""
    from scipy.interpolate import CubicSpline

    above = np.nonzero(u >= level)[0]
    if not above.size:
        return float("nan")
    k = int(above[0])
    if k == 0:
        return float(t[0])
    lo, hi = max(k - 4, 0), min(k + 4, len(t))
    roots = CubicSpline(t[lo:hi], u[lo:hi] - level).roots(extrapolate=False)
    roots = roots[(roots >= t[k - 1]) & (roots <= t[k])]
    return float(roots[0]) if roots.size else float(t[k])


class SaxeModes(Figure):
    name = "saxe-modes"
    title = "mode dynamics of DLNs (depth 2, 3, 4) vs Saxe et al.'s closed forms; learning time vs 1/s; random starts"
    paper = "Saxe, McClelland & Ganguli (ICLR 2014, arXiv 1312.6120)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        modes, rows, problems = [], [], []
        for p, r in zip(pr.points, pr.runs):
            spec = p.run_spec
            depth = len(spec.model.options.widths) - 1
            aligned = spec.init.kind == "explicit"
            scale = None if aligned else float(spec.init.options.scale)
            label = f"depth {depth}, " + ("balanced aligned" if aligned else
                                          f"random scale {scale:g} seed {spec.init.options.seed}")
            if r.status != "completed":
                problems.append(f"{label}: {r.status} ({r.attrs.get('message', '')})")
                continue
            t = np.asarray(r.trajectory["t"], dtype=float)
            X = np.asarray(r.trajectory["end_to_end"], dtype=float)
            Us, s, Vt = np.linalg.svd(np.asarray(spec.data.options.target.options.value, dtype=float))
            u_all = np.einsum("ai,tab,ib->ti", Us, X, Vt)  # U_i^T X(t) V_i
            for i, si in enumerate(s):
                u = u_all[:, i]
                m = {"depth": depth, "aligned": aligned, "label": label, "s": float(si), "u0": float(u[0]),
                     "t": t, "u": u, "seed": None if aligned else spec.init.options.seed, "scale": scale}
                m["t_learn"] = crossing(t, u, si / 2)
                m["t10"], m["t90"] = crossing(t, u, 0.1 * si), crossing(t, u, 0.9 * si)
                m["dt_pred"] = learning_time(depth, si, 0.1 * si, 0.9 * si)
                m["dt_dev"] = (m["t90"] - m["t10"]) / m["dt_pred"] - 1
                row = {"run": label, "s": float(si), "u0": float(u[0]), "t(u = s/2)": m["t_learn"],
                       "t(0.1 s -> 0.9 s)": m["t90"] - m["t10"], "predicted transition": m["dt_pred"],
                       "transition rel. dev": m["dt_dev"], "u(t_max)/s": float(u[-1] / si)}
                if aligned:
                    m["pred"] = predicted_modes(depth, si, float(u[0]), t)
                    m["dev"] = float(np.max(np.abs(u - m["pred"])) / si)
                    m["t_learn_pred"] = learning_time(depth, si, float(u[0]), si / 2)
                    row.update({"predicted t(u = s/2)": m["t_learn_pred"],
                                "max_t |u - u_pred| / s": m["dev"]})
                modes.append(m)
                rows.append(row)
        claims = self._claims(modes, problems)
        fig = self._draw(plt, modes, small)
        notes = ["tau = 1 in our conventions: loss (1/N) sum 1/2 |X x - y|^2 on whitened inputs, gradient flow "
                 "d theta/dt = -grad L; s = singular values of (1/N) sum y x^T (the function_space target U); depth "
                 "N = number of weight matrices = Saxe et al.'s N_l - 1.",
                 "u_i(t) = U_i^T X(t) V_i; depth 2 against the closed form, depth 3, 4 against the scalar ODE "
                 "du/dt = N u^(2-2/N) (s - u) integrated by scipy (DOP853, rtol 1e-13); learning time to u_f = s/2 "
                 "against (1/2s) ln(u_f (s - u0)/(u0 (s - u_f))) (depth 2) or the quadrature (depth 3, 4).",
                 "random starts (measured here, not a statement of the paper): the 0.1 s -> 0.9 s transition is "
                 "compared with the balanced aligned one (independent of u0); deeper random starts follow it less "
                 "closely: their modes are neither aligned nor balanced when they start to grow."]
        notes.append(self._order_note(modes))
        notes += [f"run not completed: {x}" for x in problems]
        return FigureResult(fig, rows, claims, notes)

    # -----------------------------------------------------------------------------------------
    def _claims(self, modes, problems):
        claims = []
        al = [m for m in modes if m["aligned"]]
        two = [m for m in al if m["depth"] == 2]
        deep = [m for m in al if m["depth"] > 2]
        if two:
            dev = max(m["dev"] for m in two)
            claims.append(Claim(
                "two layers, balanced aligned: tau du/dt = 2u(s - u), u(t) = s e^(2st/tau)/(e^(2st/tau) - 1 + s/u0) "
                "(tau = 1 here)", f"max_t |u - closed form| / s = {dev:.1e} over {len(two)} modes "
                                  f"({len(problems)} runs not completed)",
                f"equal (< {CLOSED_TOL:g})", bool(dev < CLOSED_TOL and not problems)))
        if deep:
            dev = max(m["dev"] for m in deep)
            depths = sorted({m["depth"] for m in deep})
            claims.append(Claim(
                "N_l = N + 1 layers, balanced aligned: tau du/dt = (N_l - 1) u^(2 - 2/(N_l - 1)) (s - u)",
                f"max_t |u - scalar ODE (scipy)| / s = {dev:.1e} over {len(deep)} modes, depths {depths}",
                f"equal (< {ODE_TOL:g})", bool(dev < ODE_TOL)))
        if al:
            devs = [abs(m["t_learn"] / m["t_learn_pred"] - 1) if np.isfinite(m["t_learn"]) else np.inf for m in al]
            st = [m["s"] * m["t_learn"] for m in two]
            claims.append(Claim(
                "learning time t = (tau/2s) ln(u_f (s - u0)/(u0 (s - u_f))) (two layers; deeper: the quadrature of "
                "the mode ODE), ~ 1/s", f"u_f = s/2: max |t_learn / predicted - 1| = {max(devs):.1e} over {len(al)} "
                                        f"modes; depth 2: s * t_learn = {min(st):.3g}..{max(st):.3g}" if st else
                f"max |t_learn / predicted - 1| = {max(devs):.1e}",
                f"equal (< {TIME_TOL:g})", bool(max(devs) < TIME_TOL)))
        rnd = [m for m in modes if not m["aligned"]]
        r2 = [m for m in rnd if m["depth"] == 2]
        if r2:
            scales = sorted({m["scale"] for m in r2}, reverse=True)
            dev = [max(abs(m["dt_dev"]) if np.isfinite(m["dt_dev"]) else np.inf for m in r2 if m["scale"] == sc)
                   for sc in scales]
            deeper = [abs(m["dt_dev"]) for m in rnd if m["depth"] > 2 and np.isfinite(m["dt_dev"])]
            shrinks = all(b < a for a, b in zip(dev, dev[1:]))
            claims.append(Claim(
                "measured here: from small random (unaligned, unbalanced) starts, two layers, each mode's transition "
                "0.1 s -> 0.9 s approaches the closed-form time (1/2s) ln 81 as the init scale decreases",
                "max relative deviation " + ", ".join(f"{d:.2g} (scale {sc:g})" for sc, d in zip(scales, dev))
                + f" over {len(r2)} modes; depth 3, 4 (scale 0.08, 0.125): up to "
                f"{max(deeper) if deeper else float('nan'):.2g}, not claimed",
                f"decreasing with the scale, within {RANDOM_TOL:.0%} at the smallest (our tolerance)",
                bool(shrinks and dev[-1] < RANDOM_TOL)))
        return claims

    @staticmethod
    def _order_note(modes) -> str:
        """Whether the random starts learn their modes in the order of ``s`` (reported, not claimed)."""
        rnd = [m for m in modes if not m["aligned"]]
        keys = sorted({(m["depth"], m["scale"], m["seed"]) for m in rnd})
        kept = []
        for key in keys:
            tl = [m["t_learn"] if np.isfinite(m["t_learn"]) else np.inf
                  for m in sorted((m for m in rnd if (m["depth"], m["scale"], m["seed"]) == key),
                                  key=lambda m: -m["s"])]
            kept.append(all(b >= a for a, b in zip(tl, tl[1:])))
        late = sum(not np.isfinite(m["t_learn"]) for m in rnd)
        return (f"random starts learn their modes in the order of s in {sum(kept)} of {len(keys)} runs "
                f"(not in: {[k for k, ok in zip(keys, kept) if not ok]} as (depth, scale, seed)); {late} weak modes not "
                "at s/2 by t_max.")

    # -----------------------------------------------------------------------------------------
    def _draw(self, plt, modes, small):
        fig, axes = plt.subplots(2, 3, figsize=(18, 10.5), constrained_layout=True)
        svals = sorted({m["s"] for m in modes}, reverse=True)
        col = dict(zip(svals, colors(plt, len(svals))))
        for j, depth in enumerate((2, 3, 4)):
            ax = axes[0, j]
            for m in modes:
                if m["depth"] != depth:
                    continue
                c = col[m["s"]]
                if m["aligned"]:
                    ax.plot(m["t"], m["u"] / m["s"], color=c, lw=2.2, alpha=0.5)
                    ax.plot(m["t"], m["pred"] / m["s"], "k--", lw=0.8)
                else:
                    ax.plot(m["t"], m["u"] / m["s"], color=c, lw=0.9, ls=":")
            for s in svals:
                ax.plot([], [], color=col[s], lw=2, label=f"s = {s:g}")
            ax.plot([], [], "k--", lw=0.8, label="closed form" if depth == 2 else "mode ODE (scipy)")
            ax.plot([], [], "0.4", lw=0.9, ls=":", label="small random start")
            tm = max(m["t_learn"] for m in modes if m["depth"] == depth and m["aligned"] and np.isfinite(m["t_learn"]))
            ax.set_xlim(0, 2.2 * tm)
            ax.set_ylim(-0.1, 1.15)
            ax.set_xlabel("t  (tau = 1)")
            ax.set_ylabel("u_i(t) / s_i")
            eq = "du/dt = 2u(s-u)" if depth == 2 else f"du/dt = {depth} u^{2 - 2 / depth:.3g} (s-u)"
            ax.set_title(f"({'abc'[j]}) depth {depth} (N_l = {depth + 1}): {eq}")
            ax.legend(fontsize=7, loc="lower right")
        # (d) learning time vs 1/s
        ax = axes[1, 0]
        for depth, mk in zip((2, 3, 4), "os^"):
            al = [m for m in modes if m["aligned"] and m["depth"] == depth and np.isfinite(m["t_learn"])]
            for u0 in sorted({round(m["u0"], 12) for m in al}):
                ms = sorted((m for m in al if round(m["u0"], 12) == u0), key=lambda m: m["s"])
                inv = np.array([1 / m["s"] for m in ms])
                ax.plot(inv, [m["t_learn"] for m in ms], mk, color=f"C{depth}", ms=6, mfc="none")
                grid = np.linspace(1 / max(svals), 1 / min(svals), 40)
                ax.plot(grid, [learning_time(depth, 1 / g, u0, 0.5 / g) for g in grid], color=f"C{depth}", lw=0.8)
            ax.plot([], [], mk, color=f"C{depth}", mfc="none", label=f"depth {depth}: measured; line: formula")
        ax.set_xlabel("1/s")
        ax.set_ylabel("learning time t(u = s/2)")
        ax.set_title("(d) learning time vs 1/s (balanced aligned starts)")
        ax.legend(fontsize=8)
        # (e) deviations of aligned runs
        ax = axes[1, 1]
        for m in modes:
            if m["aligned"]:
                d = np.abs(m["u"] - m["pred"]) / m["s"]
                ok = (m["t"] > 0) & (d > 0)
                ax.semilogy(m["t"][ok], d[ok], color=col[m["s"]], lw=0.6, ls=["-", "--", ":"][m["depth"] - 2])
        for depth, ls in zip((2, 3, 4), ("-", "--", ":")):
            ax.plot([], [], "k", ls=ls, lw=0.8, label=f"depth {depth}")
        ax.set_xlabel("t")
        ax.set_ylabel("|u(t) - u_pred(t)| / s  (log scale)")
        ax.set_title("(e) balanced aligned: deviation from the formulas (integration error)")
        ax.legend(fontsize=8)
        # (f) random starts: transition time vs prediction
        ax = axes[1, 2]
        groups = sorted({(m["depth"], m["scale"]) for m in modes if not m["aligned"]}, key=lambda g: (g[0], -g[1]))
        for k, (depth, scale) in enumerate(groups):
            rnd = [m for m in modes if not m["aligned"] and (m["depth"], m["scale"]) == (depth, scale)
                   and np.isfinite(m["dt_dev"])]
            ax.plot([m["dt_pred"] for m in rnd], [m["t90"] - m["t10"] for m in rnd], "os^"[depth - 2], color=f"C{k}",
                    ms=6, mfc="none", label=f"depth {depth}, random scale {scale:g}")
        lim = [min(m["dt_pred"] for m in modes) * 0.8, max(m["dt_pred"] for m in modes) * 1.5]
        ax.loglog(lim, lim, "k--", lw=0.8, label="= balanced aligned prediction")
        ax.set_xlabel("predicted transition time 0.1 s -> 0.9 s (independent of u0)")
        ax.set_ylabel("measured transition time")
        ax.set_title("(f) how closely random starts follow (measured here)")
        ax.legend(fontsize=8)
        fig.suptitle("Saxe, McClelland & Ganguli (arXiv 1312.6120): mode dynamics of deep linear networks on "
                     f"whitened inputs, tau = 1{'  [small]' if small else ''}", fontsize=13)
        return fig
