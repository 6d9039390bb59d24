"""Separable losses (lp, pseudo-Huber, log-cosh) on problem (ii) of :mod:`problems`, side by side
with the straightforward numpy BLAS peer, one BLAS thread each (issue 13).

- **Peer** (:class:`NumpyPeer`): the patch matrix ``P (N * n_out, E)`` built once, then per step
  two GEMVs (``P @ e``, ``P^T g``) around the elementwise loss, and the end-to-end map and its
  pull-back by the model's numpy code: about two passes over ``P`` (3x the inputs here: ``E /
  S_L = 24 / 8``) per step.
- **lcnrun**: ``GradientDescent`` / ``GradientFlow`` on the same problem, through the compiled
  pass over the samples (one pass over the inputs, in polyphase order, per step).
- Gradient descent: ``STEPS`` steps, steps/s, best of 3. Gradient flow: DOP853 to ``FLOW_T`` at
  rtol 1e-8 (atol 1e-10); the peer integrates with ``scipy.integrate.solve_ivp`` on its gradient.
  The final losses of the two are compared (they must agree to the tolerance). One flow each, wall
  time, its set-up (kernels loaded, layout or patch matrix built) before the clock starts.
- Ensembles: 100 members (``0.3 N(0, 1)`` inits) in one ``GradientDescent.run`` against the same
  members one by one: member-steps/s.
- Memory bandwidth: the bytes a step must read (lcnrun: the laid-out inputs and targets; peer:
  ``P`` twice) over a measured streaming-read bandwidth (``np.sum`` of a 256 MiB array, best of 5)
  give each side's bandwidth limit in steps/s; the table says how close each side runs to it.

Each item runs in a fresh process (its peak RSS is its own). Prints a table, writes
benchmarks/out/bench_losses.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from _items import best_time, emit, machine, run_item, write_json  # noqa: E402

LOSS_SPECS = {"lp": {"p": 3.0}, "pseudo_huber": {"delta": 1.0}, "log_cosh": {}}
STEPS = 20
FLOW_T, FLOW_RTOL, FLOW_ATOL = 1.0, 1e-8, 1e-10
ENSEMBLE, ENSEMBLE_STEPS = 100, 3


def problem_of(loss: str):
    from problems import build  # noqa: PLC0415
    from lcnrun.core.losses import LOSSES  # noqa: PLC0415
    from lcnrun.core.problem import Problem  # noqa: PLC0415

    model, square, theta0, lr = build("ii")
    cls = LOSSES[loss]
    return model, Problem(model, cls(cls.Options(**LOSS_SPECS[loss])), square.dataset), theta0, lr


class NumpyPeer:
    """The straightforward numpy implementation: patch matrix, two GEMVs a step."""

    def __init__(self, model, problem):
        self.model, self.loss, self.N = model, problem.loss, problem.n_samples
        E = model.end_to_end_size
        self.P = np.ascontiguousarray(model.features(problem.dataset.inputs)).reshape(-1, E)
        self.y = np.ascontiguousarray(problem.dataset.targets).reshape(-1)

    def value_and_grad(self, theta):
        e, pullback = self.model.end_to_end_with_pullback(theta)
        r = self.P @ e.reshape(-1) - self.y
        value = self.loss.pointwise(r).sum() / self.N
        ge = self.P.T @ (self.loss.pointwise_grad(r) / self.N)
        return value, pullback(ge.reshape((1,) + self.model.end_to_end_shape))[0]

    def descend(self, theta0, lr, steps):
        theta = theta0[0].copy()
        for _ in range(steps):
            theta -= lr * self.value_and_grad(theta[None])[1]
        return theta

    def bytes_per_step(self) -> int:
        return 2 * self.P.nbytes + self.y.nbytes


def bandwidth_gb_s() -> float:
    """Streaming read bandwidth of one core: ``np.sum`` over 256 MiB, best of 5."""
    a = np.ones(32 * 1024 * 1024)
    t = best_time(lambda: a.sum(), 5)
    return a.nbytes / t / 1e9


def gd_item(loss: str, impl: str) -> dict:
    from lcnrun.core.dynamics import GradientDescent  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    model, problem, theta0, lr = problem_of(loss)
    out = {"loss": loss, "impl": impl, "steps": STEPS}
    if impl == "numpy":
        peer = NumpyPeer(model, problem)
        peer.descend(theta0, lr, 1)
        best = best_time(lambda: peer.descend(theta0, lr, STEPS), 3)
        out["final_loss"] = float(peer.value_and_grad(peer.descend(theta0, lr, STEPS)[None])[0])
        out["bytes_per_step"] = peer.bytes_per_step()
    else:
        dyn = GradientDescent(GradientDescent.Options(lr=lr, steps=STEPS))
        record = RecordOptions(points=2, spacing="linear")  # steps 0 and STEPS
        traj = dyn.run(problem, theta0, record)[0]
        best = best_time(lambda: dyn.run(problem, theta0, record), 3)
        out["final_loss"] = float(traj.loss[-1])  # after STEPS steps, like the peer's
        forms = problem.sample_forms()
        out["bytes_per_step"] = forms.Z.nbytes + forms.Y.nbytes
    out["steps_per_s"] = STEPS / best
    out["bandwidth_gb_s"] = bandwidth_gb_s()
    return out


def flow_item(loss: str, impl: str) -> dict:
    from lcnrun.core.dynamics import GradientFlow  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    model, problem, theta0, _ = problem_of(loss)
    # the set-up outside the time on both sides, as in the descent items: the peer's patch matrix
    # (~0.1 s), lcnrun's kernels loaded and its layout built (~0.5 s in a fresh process); a flow to
    # t = 1 takes 1-6 s, the long flows of a sweep minutes
    if impl == "numpy":
        from scipy.integrate import solve_ivp  # noqa: PLC0415
        peer = NumpyPeer(model, problem)
        peer.value_and_grad(theta0)
    else:
        problem.value_and_grad(theta0)
    t0 = time.perf_counter()
    if impl == "numpy":
        sol = solve_ivp(lambda t, y: -peer.value_and_grad(y[None])[1], (0.0, FLOW_T), theta0[0], method="DOP853",
                        rtol=FLOW_RTOL, atol=FLOW_ATOL)
        final, nfev = float(peer.value_and_grad(sol.y[:, -1][None])[0]), int(sol.nfev)
    else:
        flow = GradientFlow(GradientFlow.Options(t_max=FLOW_T, method="DOP853", rtol=FLOW_RTOL, atol=FLOW_ATOL))
        traj = flow.run(problem, theta0, RecordOptions(points=2, spacing="linear"))[0]  # t = 0 and FLOW_T
        final, nfev = float(traj.loss[-1]), int(traj.attrs["nfev"])
    wall = time.perf_counter() - t0
    return {"loss": loss, "impl": impl, "seconds": wall, "nfev": nfev, "final_loss": final,
            "evals_per_s": nfev / wall}


def ensemble_item(loss: str, kind: str) -> dict:
    from lcnrun.core.dynamics import GradientDescent  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    model, problem, _, lr = problem_of(loss)
    theta0 = 0.3 * np.random.default_rng(12345).standard_normal((ENSEMBLE, model.n_params))
    record = RecordOptions(points=2)
    dyn = GradientDescent(GradientDescent.Options(lr=lr, steps=ENSEMBLE_STEPS))
    dyn.run(problem, theta0[:1], record)  # warm-up: kernels loaded, the layout built
    if kind == "ensemble":
        best = best_time(lambda: dyn.run(problem, theta0, record), 2)
    elif kind == "one_by_one":
        best = best_time(lambda: [dyn.run(problem, theta0[b: b + 1], record) for b in range(ENSEMBLE)], 1)
    else:  # the numpy peer, member by member
        peer = NumpyPeer(model, problem)
        best = best_time(lambda: [peer.descend(theta0[b: b + 1], lr, ENSEMBLE_STEPS) for b in range(ENSEMBLE)], 1)
    return {"loss": loss, "kind": kind, "members": ENSEMBLE, "seconds": best,
            "member_steps_per_s": ENSEMBLE * ENSEMBLE_STEPS / best}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--item", nargs=3, metavar=("WHAT", "LOSS", "IMPL"))
    parser.add_argument("--quick", action="store_true", help="pseudo-Huber only")
    args = parser.parse_args()
    if args.item:
        what, loss, impl = args.item
        emit({"gd": gd_item, "flow": flow_item, "ensemble": ensemble_item}[what](loss, impl))
        return 0
    me = Path(__file__)
    losses = ["pseudo_huber"] if args.quick else list(LOSS_SPECS)
    before = machine()
    rows = {}
    for loss in losses:
        rows[loss] = {
            "gd": {impl: run_item(me, "gd", loss, impl) for impl in ("lcnrun", "numpy")},
            "flow": {impl: run_item(me, "flow", loss, impl) for impl in ("lcnrun", "numpy")},
            "ensemble": {k: run_item(me, "ensemble", loss, k) for k in ("ensemble", "one_by_one", "numpy")},
        }
    print(f"problem (ii), one BLAS thread each; gradient descent {STEPS} steps; flow DOP853 to t = {FLOW_T:g}, "
          f"rtol {FLOW_RTOL:g}")
    print(f"{'loss':13s} {'path':17s} {'lcnrun':>12s} {'numpy peer':>12s} {'speed-up':>9s} {'RSS MiB':>11s}  notes")
    for loss, r in rows.items():
        o, p = r["gd"]["lcnrun"], r["gd"]["numpy"]
        bw = max(o["bandwidth_gb_s"], p["bandwidth_gb_s"]) * 1e9
        lim_o, lim_p = bw / o["bytes_per_step"], bw / p["bytes_per_step"]
        print(f"{loss:13s} {'descent steps/s':17s} {o['steps_per_s']:12.1f} {p['steps_per_s']:12.1f} "
              f"{o['steps_per_s'] / p['steps_per_s']:8.2f}x {o['peak_rss_mb']:5.0f}/{p['peak_rss_mb']:<5.0f}  "
              f"bandwidth limit {lim_o:.0f} / {lim_p:.0f} steps/s ({o['bytes_per_step'] / 1e6:.1f} / "
              f"{p['bytes_per_step'] / 1e6:.1f} MB a step at {bw / 1e9:.1f} GB/s): at {o['steps_per_s'] / lim_o:.0%} / "
              f"{p['steps_per_s'] / lim_p:.0%} of it")
        print(f"{'':13s} {'descent loss':17s} {o['final_loss']:12.6g} {p['final_loss']:12.6g} "
              f"{'':9s} {'':11s}  relative difference {abs(o['final_loss'] - p['final_loss']) / abs(p['final_loss']):.1e}")
        o, p = r["flow"]["lcnrun"], r["flow"]["numpy"]
        print(f"{'':13s} {'flow seconds':17s} {o['seconds']:12.2f} {p['seconds']:12.2f} "
              f"{p['seconds'] / o['seconds']:8.2f}x {o['peak_rss_mb']:5.0f}/{p['peak_rss_mb']:<5.0f}  "
              f"nfev {o['nfev']} / {p['nfev']}, final loss {o['final_loss']:.10g} / {p['final_loss']:.10g}")
        e, one, peer = (r["ensemble"][k] for k in ("ensemble", "one_by_one", "numpy"))
        print(f"{'':13s} {f'{ENSEMBLE} members':17s} {e['member_steps_per_s']:12.1f} {peer['member_steps_per_s']:12.1f} "
              f"{e['member_steps_per_s'] / peer['member_steps_per_s']:8.2f}x {e['peak_rss_mb']:5.0f}/{peer['peak_rss_mb']:<5.0f}  "
              f"member-steps/s; one by one (lcnrun) {one['member_steps_per_s']:.1f}: ensemble "
              f"{e['member_steps_per_s'] / one['member_steps_per_s']:.2f}x")
    path = write_json("bench_losses.json", {"machine_before": before, "machine_after": machine(), "rows": rows})
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
