"""``fast-slow``: training with weight decay = a fast regularizing flow on the fibers + a slow learning
flow on the balanced manifold (Lindsey & Menon, arXiv 2511.01137).

Normalization: the paper's fast-slow system is ``dW/dt = -grad (E(X(W)) + kappa/2 |W|^2)``, "the rate is now
``2 kappa``, not 2" (against its Theorem 1.2, ``G(t) = G(0) e^{-2t}`` for the L2 balancing flow). Our
``regularization.l2 = lambda`` trains ``L_lambda = L + lambda sum_p |W_p|^2``, so ``kappa = 2 lambda`` and the
paper's rate ``2 kappa`` is ``4 lambda``.

Gradient flow of ``L_lambda`` splits its velocity at the fiber of ``X`` (``core.regularization``): along the
fiber it is ``kappa = 2 lambda`` times the L2 balancing flow ``-Pi_{ker J} theta``, across it the learning. The
balancedness obeys ``Phi_p(t) = Phi_p(0) exp(-2 kappa t) = Phi_p(0) exp(-4 lambda t)`` exactly
(``<W_p, grad_{W_p} L>`` is the same for every layer), and on the balanced manifold ``X`` moves by the balanced learning flow of
``L_lambda``: ``dX/dt = -sum_j (X X^T)^{(N-j)/N} grad l(X) (X^T X)^{(j-1)/N} - 2 lambda N X``.

The spec makes the second phase slow: a two-layer network on whitened data (``l(X) = 1/2 |X - U|^2``),
so the balanced problem is ``1/2 |X - U|^2 + 2 lambda |X|_*`` (nuclear norm), minimized by soft-thresholding
the singular values of ``U``: ``X* = U_s diag((s_i - 2 lambda)_+) V_s^T``; the learning flow's slowest mode
there has rate ``2 sigma_min(X*) = 2 (s_min - 2 lambda)``, here ``0.04``, against the balancing rate
``2 kappa = 4 lambda = 0.4``. Derived here (not stated in the paper): the soft-threshold limit, the slow rate,
the separation of the two time scales.

Measured (``t_bal = ln(1e6) / (4 lambda)``, where ``|Phi|`` has fallen by ``1e6``):

- the fitted rate of ``ln |Phi|`` (``balancedness``) where ``|Phi| >= 1e-7 R(0)``, against ``4 lambda``;
- the decomposition: at every stored time the velocity of ``X`` under training, ``sum_p W_{>p} (-grad_{W_p}
  L_lambda) W_{<p}`` (product rule, from the stored parameters and the rebuilt problem), against the
  balanced learning velocity of ``L_lambda`` at the same ``X``; their difference relative to
  ``|data part| + 2 lambda N |X|``;
- ``X*`` recomputed here from the spec's ``U``; ``|X(t) - X*|``: its tail rate (fit where
  ``3e-7 <= |X - X*|/|X*| <= 1e-5``: above the integration floor ~1e-8 of the large singular values,
  below the logistic non-linearity of the slow one) against ``2 (s_min - 2 lambda)``, the time it takes to fall below
  ``1e-6 |X*|`` against ``t_bal``, and its value at ``t_max``;
- ``R(t_max)`` against ``N sum_i sigma_i(X(t_max))^{2/N}`` (the regularizer minimized on the fiber).
"""
from __future__ import annotations

import numpy as np

from ..core.dynamics.balanced_learning_flow import balanced_velocity
from ._flows import colors, compact, fro, rebuild, slope
from .base import Claim, Figure, FigureResult

PHI_TOL = 1e-5      # |fitted rate of ln|Phi| / (4 lambda) - 1|
DECOMP_TOL = 1e-6   # training X-velocity vs balanced learning velocity after t_bal (relative)
SLOW_TOL = 2e-3     # |tail rate / (2 (s_min - 2 lambda)) - 1| (logistic bias ~1e-3 at the window top)
SEP_MIN = 3.0       # t(|X - X*| < 1e-6 |X*|) / t_bal at least this
XSTAR_TOL = 1e-6    # |X(t_max) - X*| / |X*|
RMIN_TOL = 1e-8     # |R(t_max) / (N sum sigma^(2/N)) - 1|


def soft_threshold(U: np.ndarray, tau: float) -> np.ndarray:
    """``U_s diag((s - tau)_+) V_s^T``: the minimizer of ``1/2 |X - U|^2 + tau |X|_*``."""
    u, s, vt = np.linalg.svd(U)
    return (u[:, : s.size] * np.maximum(s - tau, 0.0)) @ vt[: s.size]


def training_velocity(model, problem, theta: np.ndarray, lam: float):
    """``(dX/dt, data part, regularizer part)`` of gradient flow of ``L_lambda`` at ``theta (T, P)`` by the
    product rule: ``dX/dt = sum_p W_{>p} (-grad_{W_p} L_lambda) W_{<p}``."""
    _, grad = getattr(problem, "problem", problem).value_and_grad(theta)  # the data term's gradient
    Ws = model.split(theta)
    Gs = model.split(-grad)
    N = len(Ws)

    def chain(mats):
        out = mats[0]
        for M in mats[1:]:
            out = M @ out
        return out
    data = np.zeros_like(chain(Ws))
    reg = np.zeros_like(data)
    for p in range(N):
        left = Ws[:p]     # W_1 .. W_{p-1} (applied first)
        right = Ws[p + 1:]
        for term, M in ((data, Gs[p]), (reg, -2.0 * lam * Ws[p])):
            term += chain(left + [M] + right)
    return data + reg, data, reg


class FastSlow(Figure):
    name = "fast-slow"
    title = "weight decay: distance to the balanced manifold falls fast (rate 2 kappa = 4 lambda), then X moves slowly on it"
    paper = "Lindsey & Menon (arXiv 2511.01137)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        runs, rows, problems = [], [], []
        for p, r in zip(pr.points, pr.runs):
            spec, traj = p.run_spec, r.trajectory
            lam = float(spec.regularization.l2)
            widths = list(spec.model.options.widths)
            label = f"dense {compact(widths)}"
            if r.status != "completed":
                problems.append(f"{label} init.seed={spec.init.options.seed}: {r.status} "
                                f"({r.attrs.get('message', '')})")
            if "t" not in traj or len(traj["t"]) < 2:
                continue
            model, problem = rebuild(spec)
            N = model.n_layers
            U = np.asarray(spec.data.options.target.options.value, dtype=float)
            s_U = np.linalg.svd(U, compute_uv=False)
            Xstar = soft_threshold(U, 2 * lam)
            sstar = np.maximum(s_U - 2 * lam, 0.0)
            t = np.asarray(traj["t"], dtype=float)
            X = np.asarray(traj["end_to_end"], dtype=float)
            theta = model.join([np.asarray(traj[f"params/layer_{l}"], dtype=float) for l in range(N)])
            phi = np.asarray(traj["balancedness"], dtype=float)
            R = np.asarray(traj["regularizer"], dtype=float)
            # decomposition: training velocity of X vs the balanced learning velocity of L_lambda
            v, vdata, vreg = training_velocity(model, problem, theta, lam)
            _, g = problem.end_to_end_loss_and_gradient(X)
            vb = np.stack([balanced_velocity(Xi, gi, N)[0] for Xi, gi in zip(X, g)]) - 2 * lam * N * X
            decomp = fro(v - vb, axes=(1, 2)) / (fro(vdata, axes=(1, 2)) + fro(vreg, axes=(1, 2)))
            t_bal = np.log(1e6) / (4 * lam)
            dist = fro(X - Xstar, axes=(1, 2)) / fro(Xstar, axes=(0, 1))
            m = (phi >= 1e-7 * R[0]) & (t > 0)
            phi_rate = -slope(t[m], np.log(phi[m]))
            mt = (dist >= 3e-7) & (dist <= 1e-5)
            tail_rate = -slope(t[mt], np.log(dist[mt])) if mt.sum() >= 5 else float("nan")
            below = np.nonzero(dist < 1e-6)[0]
            t_conv = float(t[below[0]]) if below.size and np.all(dist[below[0]:] < 1e-6) else float("nan")
            sv_end = np.linalg.svd(X[-1], compute_uv=False)
            Rmin_end = N * float(np.sum(sv_end ** (2.0 / N)))
            Lstar = 0.5 * float(np.sum((Xstar - U) ** 2)) + lam * N * float(np.sum(sstar ** (2.0 / N)))
            after = t >= t_bal
            x = {"label": label, "seed": spec.init.options.seed, "t": t, "phi": phi, "dist": dist, "decomp": decomp,
                 "lam": lam, "t_bal": t_bal, "phi_rate": phi_rate, "tail_rate": tail_rate, "t_conv": t_conv,
                 "slow_pred": 2 * float(sstar[sstar > 0].min()), "X": X, "sstar": sstar, "s_U": s_U,
                 "along": np.asarray(traj["velocity_along_fiber"]), "across": np.asarray(traj["velocity_across_fiber"]),
                 "L": np.asarray(traj["loss"]), "Lstar": Lstar, "R": R, "theta2": R[0],
                 "decomp_after": float(decomp[after].max()) if after.any() else float("nan"),
                 "dist_bal": float(np.interp(t_bal, t, dist)), "dist_end": float(dist[-1]),
                 "R_end_dev": abs(R[-1] / Rmin_end - 1), "status": r.status}
            runs.append(x)
            rows.append({"architecture": label, "init.seed": x["seed"], "lambda": lam, "status": r.status,
                         "|Phi(0)|": float(phi[0]), "fitted rate of ln|Phi|": phi_rate, "4 lambda": 4 * lam,
                         "t_bal": t_bal, "|X(t_bal) - X*|/|X*|": x["dist_bal"],
                         "t(|X - X*| < 1e-6|X*|)": t_conv, "tail rate of |X - X*|": tail_rate,
                         "2 (s_min - 2 lambda)": x["slow_pred"],
                         "max decomposition residual after t_bal": x["decomp_after"],
                         "|X(t_max) - X*|/|X*|": x["dist_end"], "|R/(N sum sigma^(2/N)) - 1| at t_max": x["R_end_dev"],
                         "L_lambda(t_max) - L*": float(x["L"][-1] - Lstar)})
        claims = self._claims(runs, problems)
        fig = self._draw(plt, runs, small)
        notes = ["X* = soft-thresholding of the target U at 2 lambda (the minimizer of 1/2|X - U|^2 + 2 lambda |X|_*, "
                 "what L_lambda becomes on the balanced manifold of a two-layer network), recomputed here.",
                 "decomposition residual: |dX/dt (training, product rule) - balanced learning velocity of L_lambda| "
                 "/ (|data part| + 2 lambda N |X|); it follows |Phi| / |theta|^2.",
                 "the slow phase carries little loss (L_lambda - L* ~ 1e-5 at t_bal): the slow mode is the singular "
                 "value just above the threshold 2 lambda, which weight decay nearly removes."]
        notes += [f"run not completed: {x}" for x in problems]
        return FigureResult(fig, rows, claims, notes)

    # -----------------------------------------------------------------------------------------
    def _claims(self, runs, problems):
        def span(key, fmt):
            return f"{format(min(x[key] for x in runs), fmt)}..{format(max(x[key] for x in runs), fmt)}"

        x0 = runs[0]
        lam4 = 4 * x0["lam"]
        claims = []
        dev = max(abs(x["phi_rate"] / (4 * x["lam"]) - 1) for x in runs)
        claims.append(Claim(
            "fast: the distance to the balanced manifold decays at the rate 2 kappa (paper: dW/dt = -grad(E + "
            "kappa/2 |W|^2)); our l2 = lambda is kappa = 2 lambda: |G(t)| = |G(0)| exp(-4 lambda t)",
            f"fitted rates {span('phi_rate', '.7g')}, 4 lambda = {lam4:g}; max |rate/(4 lambda) - 1| = "
            f"{dev:.1e} ({len(problems)} runs not completed)",
            f"equal (< {PHI_TOL:g})", bool(dev < PHI_TOL and not problems)))
        dec = max(x["decomp_after"] for x in runs)
        claims.append(Claim(
            "training = regularizing flow on fibers + learning flow on the balanced manifold: "
            "once balanced, dX/dt is the balanced learning velocity of L_lambda",
            f"max relative difference after t_bal = {x0['t_bal']:.3g}: {dec:.1e}",
            f"0 (< {DECOMP_TOL:g})", bool(dec < DECOMP_TOL)))
        tr = [x["tail_rate"] / x["slow_pred"] - 1 for x in runs]
        td = max(abs(v) for v in tr) if all(np.isfinite(tr)) else float("inf")
        claims.append(Claim(
            "derived here: slow: on the balanced manifold X converges at the learning flow's rate 2 (s_min - 2 lambda)",
            f"tail rates of |X - X*| {span('tail_rate', '.4g')}, predicted {x0['slow_pred']:.4g}; "
            f"max relative deviation {td:.1e}",
            f"equal (< {SLOW_TOL:g}); << 4 lambda = {lam4:g}", bool(td < SLOW_TOL)))
        ratios = [x["t_conv"] / x["t_bal"] for x in runs]
        rmin = min(ratios) if all(np.isfinite(ratios)) else float("nan")
        claims.append(Claim(
            "fast-slow (paper); measured here: when |Phi| has fallen by 1e6 (t_bal), X is still far from its limit",
            f"t(|X - X*| < 1e-6 |X*|) / t_bal = {min(ratios):.3g}..{max(ratios):.3g}; "
            f"|X(t_bal) - X*|/|X*| = {span('dist_bal', '.2g')}",
            f">= {SEP_MIN:g} (-> 4 lambda / (2 (s_min - 2 lambda)) = {lam4 / x0['slow_pred']:.3g} asymptotically)",
            bool(np.isfinite(rmin) and rmin >= SEP_MIN)))
        de = max(x["dist_end"] for x in runs)
        claims.append(Claim(
            "derived here: the limit: singular values of U soft-thresholded at 2 lambda (L_lambda on the balanced "
            "manifold = 1/2 |X - U|^2 + 2 lambda |X|_*)",
            f"max |X(t_max) - X*| / |X*| = {de:.1e}; sigma(X*) = {np.round(x0['sstar'], 6).tolist()}",
            f"0 (< {XSTAR_TOL:g})", bool(de < XSTAR_TOL)))
        rd = max(x["R_end_dev"] for x in runs)
        claims.append(Claim(
            "Theorem 1.1: the L2 regularizer is minimized on the fiber at the (balanced) limit: R = N sum_i sigma_i(X)^(2/N)",
            f"max |R(t_max) / (N sum sigma^(2/N)) - 1| = {rd:.1e}", f"0 (< {RMIN_TOL:g})", bool(rd < RMIN_TOL)))
        return claims

    # -----------------------------------------------------------------------------------------
    def _draw(self, plt, runs, small):
        fig, axes = plt.subplots(2, 3, figsize=(18, 10.5), constrained_layout=True)
        labels = list(dict.fromkeys(x["label"] for x in runs))
        col = dict(zip(labels, colors(plt, len(labels))))
        x0 = runs[0]
        lam, t_bal, rate = x0["lam"], x0["t_bal"], x0["slow_pred"]
        # (a) one run: the fast-slow picture
        ax = axes[0, 0]
        ax.semilogy(x0["t"], x0["phi"] / x0["phi"][0], "C0", lw=1.8,
                    label="|Phi(t)| / |Phi(0)|  (distance to balanced)")
        ax.semilogy(x0["t"], x0["dist"], "C3", lw=1.8, label="|X(t) - X*| / |X*|")
        gap = (x0["L"] - x0["Lstar"]) / x0["Lstar"]
        ax.semilogy(x0["t"][gap > 0], gap[gap > 0], "C2", lw=1.2, label="(L_lambda(t) - L*) / L*")
        tt = np.linspace(0, x0["t"][-1], 100)
        ax.semilogy(tt, np.exp(-4 * lam * tt), "k--", lw=0.8, label=f"exp(-2 kappa t), 2 kappa = 4 lambda = {4 * lam:g}")
        ax.semilogy(tt, x0["dist_bal"] * np.exp(-rate * (tt - t_bal)), "k:", lw=0.8,
                    label=f"slope 2 (s_min - 2 lambda) = {rate:.3g}")
        ax.axvline(t_bal, color="grey", lw=0.8)
        ax.text(t_bal, 1e-14, " t_bal", color="grey", fontsize=8)
        ax.set_ylim(1e-17, 10)
        ax.set_xlabel("t")
        ax.set_ylabel("relative size  (log scale)")
        ax.set_title(f"(a) fast then slow: {x0['label']}, seed {x0['seed']}")
        ax.legend(fontsize=7, loc="upper right")
        # (b) all runs
        ax = axes[0, 1]
        for x in runs:
            ax.semilogy(x["t"], x["phi"] / x["phi"][0], color=col[x["label"]], lw=1)
            ax.semilogy(x["t"], x["dist"], color=col[x["label"]], lw=1, ls="--")
        ax.plot([], [], "k-", lw=1, label="|Phi| / |Phi(0)|")
        ax.plot([], [], "k--", lw=1, label="|X - X*| / |X*|")
        for lab in labels:
            ax.plot([], [], color=col[lab], label=lab)
        ax.axvline(t_bal, color="grey", lw=0.8)
        ax.set_ylim(1e-17, 10)
        ax.set_xlabel("t")
        ax.set_ylabel("relative size  (log scale)")
        ax.set_title("(b) every initialization")
        ax.legend(fontsize=8)
        # (c) velocity split
        ax = axes[0, 2]
        for x in runs:
            m = x["t"] > 0
            ax.loglog(x["t"][m], x["along"][m], color=col[x["label"]], lw=1)
            ax.loglog(x["t"][m], x["across"][m], color=col[x["label"]], lw=1, ls="--")
        ax.plot([], [], "k-", lw=1, label="along the fiber (regularizing)")
        ax.plot([], [], "k--", lw=1, label="across the fiber (learning)")
        ax.axvline(t_bal, color="grey", lw=0.8)
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("|velocity component|  (log scale)")
        ax.set_title("(c) -grad L_lambda split at the fiber of X")
        ax.legend(fontsize=8)
        # (d) singular values
        ax = axes[1, 0]
        for x in runs:
            s = np.linalg.svd(x["X"], compute_uv=False)
            for i in range(s.shape[1]):
                ax.semilogx(x["t"][1:], s[1:, i], color=f"C{i}", lw=0.8, alpha=0.7)
        for i, (a, b) in enumerate(zip(x0["s_U"], x0["sstar"])):
            ax.axhline(b, color=f"C{i}", ls="--", lw=1)
            ax.axhline(a, color=f"C{i}", ls=":", lw=0.8)
        ax.plot([], [], "k--", lw=1, label="s_i(U) - 2 lambda (soft threshold)")
        ax.plot([], [], "k:", lw=0.8, label="s_i(U)")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("sigma_i(X(t))  (symlog)")
        ax.set_title("(d) singular values of X(t)")
        ax.legend(fontsize=8)
        # (e) decomposition residual
        ax = axes[1, 1]
        for x in runs:
            m = (x["t"] > 0) & (x["decomp"] > 0)
            ax.semilogy(x["t"][m], x["decomp"][m], color=col[x["label"]], lw=1)
            ax.semilogy(x["t"], x["phi"] / x["theta2"], color=col[x["label"]], lw=0.8, ls=":")
        ax.plot([], [], "k-", lw=1, label="|dX/dt - balanced learning velocity| (relative)")
        ax.plot([], [], "k:", lw=0.8, label="|Phi(t)| / |theta(0)|^2")
        ax.axhline(DECOMP_TOL, color="grey", ls="-.", lw=1, label=f"claim tolerance after t_bal: {DECOMP_TOL:g}")
        ax.axvline(t_bal, color="grey", lw=0.8)
        ax.set_xlabel("t")
        ax.set_ylabel("relative size  (log scale)")
        ax.set_title("(e) on the balanced manifold, X follows the balanced learning flow")
        ax.legend(fontsize=8)
        # (f) loss
        ax = axes[1, 2]
        for x in runs:
            gap = x["L"] - x["Lstar"]
            m = (x["t"] > 0) & (gap > 0)
            ax.loglog(x["t"][m], gap[m], color=col[x["label"]], lw=1)
        ax.axvline(t_bal, color="grey", lw=0.8)
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("L_lambda(t) - L*  (log scale)")
        ax.set_title("(f) the regularized loss: fast drop, then a slow tail")
        fig.suptitle(f"Gradient flow with weight decay lambda = {lam:g} (the paper's kappa = 2 lambda = {2 * lam:g}): "
                     "fast balancing, slow learning on the balanced "
                     f"manifold (Lindsey & Menon 2511.01137){'  [small]' if small else ''}", fontsize=13)
        return fig
