"""``balanced-learning``: from a balanced start, parameter gradient flow moves the end-to-end matrix by
the balanced learning flow; from an unbalanced start it does not (Arora, Cohen & Hazan; the learning
flow on the balanced manifold of Lindsey & Menon, arXiv 2511.01137).

With ``Phi_p = W_p W_p^T - W_{p+1}^T W_{p+1}`` conserved by gradient flow (``d Phi_p/dt = 0``), a
balanced start stays balanced, and there ``W_{>p} W_{>p}^T = (X X^T)^{(N-p)/N}``,
``W_{<p}^T W_{<p} = (X^T X)^{(p-1)/N}``, so ``dX/dt = -J J^T grad l(X)`` is
``-sum_j (X X^T)^{(N-j)/N} grad l(X) (X^T X)^{(j-1)/N}``, a flow of ``X`` alone. From an unbalanced
start (``init: gaussian``) ``Phi != 0`` is conserved, and the two flows, started at the same ``X(0)``,
part. With weight decay ``lambda`` (the last architecture of the spec) gradient flow of
``L + lambda sum |W_p|^2`` scales ``Phi`` by ``exp(-4 lambda t)`` (the paper's ``exp(-2 kappa t)``, ``kappa = 2 lambda``) (0 stays 0) and the learning flow gets
``-2 lambda N X``.

Runs ``lcnrun/figures/specs/balanced-learning.yaml`` (``gradient_flow`` and ``balanced_learning_flow`` for
each architecture, init kind and seed; same record times). Measured: the relative deviation
``max_t |X_GF(t) - X_BLF(t)|_F / max_t |X_GF(t)|_F`` (``end_to_end`` series of both runs at the same
stored times); ``|Phi(t)|`` of the gradient-flow runs (``balancedness``) relative to ``|theta(0)|^2``.
"""
from __future__ import annotations

import numpy as np

from ._flows import arch_label, colors, fro
from .base import Claim, Figure, FigureResult

AGREE_TOL = 1e-6     # balanced: relative X deviation (two rtol-1e-10 integrations, amplified near saddles)
DISAGREE_MIN = 1e-2  # unbalanced: the smallest relative deviation that counts as "they do not agree"
BAL_TOL = 1e-8       # gradient flow from a balanced start: max |Phi(t)| / |theta(0)|^2
CONS_TOL = 1e-8      # gradient flow from an unbalanced start (no weight decay): |Phi(t)| - |Phi(0)| drift


class BalancedLearning(Figure):
    name = "balanced-learning"
    title = "gradient flow from a balanced start = balanced learning flow on X; from an unbalanced one not"
    paper = "Lindsey & Menon (arXiv 2511.01137); Arora, Cohen & Hazan (2018)"

    def make(self, data, small):
        import matplotlib.pyplot as plt

        pr = next(iter(data.values()))
        pairs: dict = {}
        problems = []
        for p, r in zip(pr.points, pr.runs):
            spec = p.run_spec
            label = arch_label(spec)
            lam = float(spec.regularization.l2)
            if lam:
                label += f", weight decay {lam:g}"
            key = (label, spec.init.kind, spec.init.options.seed)
            pairs.setdefault(key, {"lam": lam})[spec.dynamics.kind] = r
            if r.status != "completed":
                problems.append(f"{key} {spec.dynamics.kind}: {r.status} ({r.attrs.get('message', '')})")
        items, rows = [], []
        for (label, init, seed), d in pairs.items():
            gf, blf = d.get("gradient_flow"), d.get("balanced_learning_flow")
            if gf is None or blf is None or any("t" not in x.trajectory or len(x.trajectory["t"]) < 2
                                                for x in (gf, blf)):
                problems.append(f"{label} {init} seed {seed}: a run of the pair is missing or empty")
                continue
            a, b = gf.trajectory, blf.trajectory
            ta, tb = np.asarray(a["t"]), np.asarray(b["t"])
            n = min(len(ta), len(tb))
            same_times = bool(n and np.array_equal(ta[:n], tb[:n]))
            Xa, Xb = np.asarray(a["end_to_end"], dtype=float), np.asarray(b["end_to_end"], dtype=float)
            scale = float(fro(Xa, axes=(1, 2)).max())
            dev = fro(Xa[:n] - Xb[:n], axes=(1, 2)) / scale
            th0 = float(np.sum(np.asarray(a["layer_norms_sq"])[0]))
            phi = np.asarray(a["balancedness"], dtype=float)
            lam = d["lam"]
            it = {"label": label, "init": init, "seed": seed, "t": ta[:n], "dev": dev, "same_times": same_times,
                  "Xa": Xa, "Xb": Xb, "ta": ta, "tb": tb, "La": np.asarray(a["loss"]), "Lb": np.asarray(b["loss"]),
                  "phi": phi / th0, "phi_drift": float(np.max(np.abs(phi - phi[0])) / max(phi[0], 1e-300)),
                  "lam": lam, "complete": gf.status == blf.status == "completed" and len(ta) == len(tb)}
            it["loss_dev"] = float(np.max(np.abs(it["La"][:n] - it["Lb"][:n])) / it["La"][0])
            items.append(it)
            rows.append({"architecture": label, "init": init, "init.seed": seed,
                         "status GF/BLF": f"{gf.status}/{blf.status}",
                         "|Phi(0)| / |theta(0)|^2": float(phi[0] / th0),
                         "max_t |X_GF - X_BLF| / max|X_GF|": float(dev.max()),
                         "max_t |L_GF - L_BLF| / L(0)": it["loss_dev"],
                         "L(t_max) GF": float(it["La"][-1]), "L(t_max) BLF": float(it["Lb"][-1]),
                         "BLF warning": "yes" if blf.final_attrs.get("warning") else ""})
        claims = self._claims(items, problems)
        fig = self._draw(plt, items, small)
        notes = ["deviation = max_t |X_GF(t) - X_BLF(t)|_F / max_t |X_GF(t)|_F at the same stored times; both "
                 "runs start at the same X(0) (the balanced learning flow takes X(theta0)).",
                 "unbalanced starts: the two flows do NOT agree, as the theory says: gradient flow conserves "
                 "Phi != 0, and the balanced learning flow is the X-dynamics only on the balanced manifold "
                 "(the balanced_learning_flow runs say so in their 'warning' attribute).",
                 "with weight decay, gradient flow's Phi decays like exp(-4 lambda t) (Lindsey & Menon: exp(-2 kappa t), kappa = 2 lambda), so from an "
                 "unbalanced start the gap narrows only slowly."]
        notes += [f"run problem: {x}" for x in problems]
        return FigureResult(fig, rows, claims, notes)

    # -----------------------------------------------------------------------------------------
    def _claims(self, items, problems):
        bal = [x for x in items if x["init"] == "balanced"]
        unb = [x for x in items if x["init"] != "balanced"]
        claims = []
        ok = all(x["complete"] and x["same_times"] for x in items)
        n_ok = sum(x["complete"] and x["same_times"] for x in items)
        claims.append(Claim("every pair completed, on the same stored times",
                            f"{n_ok} of {len(items) + len(problems)} pairs", "all",
                            bool(items and ok and not problems)))
        if bal:
            dev = max(float(x["dev"].max()) for x in bal)
            ldev = max(x["loss_dev"] for x in bal)
            claims.append(Claim(
                "balanced start: X of gradient flow = X of the balanced learning flow along the whole trajectory",
                f"max deviation {dev:.2e} over {len(bal)} pairs ({len({x['label'] for x in bal})} architectures); "
                f"losses: max |L_GF - L_BLF| / L(0) = {ldev:.1e}",
                f"0 (< {AGREE_TOL:g}; two rtol-1e-10 integrations)", bool(dev < AGREE_TOL)))
            ph = max(float(x["phi"].max()) for x in bal)
            claims.append(Claim("gradient flow keeps a balanced start balanced (Phi conserved, or decaying "
                                "with weight decay)", f"max_t |Phi(t)| / |theta(0)|^2 = {ph:.1e}",
                                f"0 (< {BAL_TOL:g})", bool(ph < BAL_TOL)))
        if unb:
            dmin = min(float(x["dev"].max()) for x in unb)
            dmax = max(float(x["dev"].max()) for x in unb)
            ratio = dmin / max(max(float(x["dev"].max()) for x in bal), 1e-300) if bal else float("nan")
            claims.append(Claim(
                "unbalanced start: the two do NOT agree (the balanced learning flow is the X-dynamics only "
                "on the balanced manifold)",
                f"max_t deviation {dmin:.3g} .. {dmax:.3g} over {len(unb)} pairs; smallest / largest balanced "
                f"= {ratio:.1e}", f">= {DISAGREE_MIN:g} for every pair", bool(dmin >= DISAGREE_MIN)))
            plain = [x for x in unb if x["lam"] == 0]
            if plain:
                cd = max(x["phi_drift"] for x in plain)
                claims.append(Claim("unbalanced start, no weight decay: gradient flow conserves |Phi| != 0",
                                    f"max_t ||Phi(t)| - |Phi(0)|| / |Phi(0)| = {cd:.1e}; |Phi(0)|/|theta(0)|^2 = "
                                    f"{min(x['phi'][0] for x in plain):.3g}..{max(x['phi'][0] for x in plain):.3g}",
                                    f"0 (< {CONS_TOL:g})", bool(cd < CONS_TOL)))
        return claims

    # -----------------------------------------------------------------------------------------
    def _draw(self, plt, items, small):
        fig, axes = plt.subplots(2, 3, figsize=(18, 10.5), constrained_layout=True)
        labels = list(dict.fromkeys(x["label"] for x in items))
        col = dict(zip(labels, colors(plt, len(labels))))
        for ax, init, name in ((axes[0, 0], "balanced", "balanced start"),
                               (axes[0, 1], "gaussian", "unbalanced (Gaussian) start")):
            for x in items:
                if x["init"] != init:
                    continue
                c = col[x["label"]]
                ax.loglog(x["ta"][1:], x["La"][1:], color=c, lw=1.2)
                ax.loglog(x["tb"][1:], x["Lb"][1:], color=c, lw=0, marker="o", ms=2.5, markevery=6)
            ax.plot([], [], "k-", lw=1.2, label="gradient flow (parameters)")
            ax.plot([], [], "ko", ms=3, lw=0, label="balanced learning flow (X)")
            for lab in labels:
                ax.plot([], [], color=col[lab], label=lab)
            ax.set_xlabel("t  (log scale)")
            ax.set_ylabel("loss L(t)  (log scale)")
            ax.set_title(f"({'a' if init == 'balanced' else 'b'}) {name}: loss")
            ax.legend(fontsize=7)
        # (c) deviation
        ax = axes[0, 2]
        for x in items:
            m = (x["t"] > 0) & (x["dev"] > 0)
            ax.loglog(x["t"][m], x["dev"][m], color=col[x["label"]], lw=1,
                      ls="-" if x["init"] == "balanced" else "--")
        ax.axhline(AGREE_TOL, color="grey", ls=":", lw=1, label=f"agreement tolerance {AGREE_TOL:g}")
        ax.axhline(DISAGREE_MIN, color="grey", ls="-.", lw=1, label=f"disagreement threshold {DISAGREE_MIN:g}")
        ax.plot([], [], "k-", lw=1, label="balanced start")
        ax.plot([], [], "k--", lw=1, label="unbalanced start")
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("|X_GF(t) - X_BLF(t)|_F / max_t |X_GF|_F  (log scale)")
        ax.set_title("(c) end-to-end matrices: gradient flow vs balanced learning flow")
        ax.legend(fontsize=8)
        # (d), (e) singular values of one pair each
        for ax, init, tag in ((axes[1, 0], "balanced", "d"), (axes[1, 1], "gaussian", "e")):
            x = next((x for x in items if x["init"] == init), None)
            if x is not None:
                sa = np.linalg.svd(x["Xa"], compute_uv=False)
                sb = np.linalg.svd(x["Xb"], compute_uv=False)
                for i in range(sa.shape[1]):
                    ax.semilogx(x["ta"][1:], sa[1:, i], color=f"C{i}", lw=1.5)
                    ax.semilogx(x["tb"][1:], sb[1:, i], color=f"C{i}", lw=0, marker="o", ms=2.5, markevery=5)
                ax.plot([], [], "k-", lw=1.5, label="gradient flow")
                ax.plot([], [], "ko", ms=3, lw=0, label="balanced learning flow")
                ax.set_title(f"({tag}) singular values of X(t): {x['label']}, {init} start, seed {x['seed']}")
            ax.set_xlabel("t  (log scale)")
            ax.set_ylabel("sigma_i(X(t))")
            ax.legend(fontsize=8)
        # (f) balancedness of gradient flow
        ax = axes[1, 2]
        for x in items:
            m = (x["ta"] > 0) & (x["phi"] > 0)
            ax.loglog(x["ta"][m], x["phi"][m], color=col[x["label"]], lw=1,
                      ls="-" if x["init"] == "balanced" else "--")
        ax.plot([], [], "k-", lw=1, label="balanced start")
        ax.plot([], [], "k--", lw=1, label="unbalanced start (conserved; decays with weight decay)")
        ax.set_xlabel("t  (log scale)")
        ax.set_ylabel("|Phi(t)| / |theta(0)|^2 of gradient flow  (log scale)")
        ax.set_title("(f) balancedness along gradient flow")
        ax.legend(fontsize=8)
        fig.suptitle("Gradient flow from a balanced start = balanced learning flow on X "
                     f"(Lindsey & Menon 2511.01137; Arora, Cohen & Hazan){'  [small]' if small else ''}", fontsize=13)
        return fig
