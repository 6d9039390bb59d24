"""The compiled kernels against their peers and their physical bounds, side by side in one process
(issue 13; docs/speed-kernels.md, 2026-12-02).

On a shared machine, wall times of items run one after another mostly measure the other jobs. Here
every comparison is **interleaved in one process, best of ``--repeats``, in CPU time**
(``time.thread_time``), one BLAS thread:

- ``losses``: problem (ii) of :mod:`problems`, lp / pseudo-Huber / log-cosh: lcnrun's gradient
  descent (10 steps) against :class:`bench_losses.NumpyPeer`'s; with ``--flow`` also one DOP853
  flow to t = 1 (rtol 1e-8) each. ``--previous FILE``: also a copy of an earlier
  ``_numba_kernels.py`` (before/after in the same process; its results must be bitwise the same).
- ``peak``: the core's multiply-add peak (a 1000 x 1000 dgemm) and the bound it puts on ensembles
  of (ii): ``member-steps/s <= peak / (2 N n_out E)``.
- ``ensemble``: CPU ms per member evaluation of (ii) for 1, 8 and 32 members in one call.
- ``dln``: the 5x20 DLN square-loss descent (steps/s), a 20 x 20 dgemm from compiled code, and the
  bounds ``1 / (13 products)`` and ``peak / 104,000 multiply-adds``.

Usage: ``python benchmarks/bench_kernels.py [losses peak ensemble dln] [--flow] [--previous FILE]``.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402


def cpu_best(fns: dict, repeats: int) -> dict:
    """Best CPU time of each of ``fns``, called in turn ``repeats`` times (interleaved)."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.thread_time()
            fn()
            best[k] = min(best[k], time.thread_time() - t0)
    return best


def peak_multiply_adds() -> float:
    """Multiply-adds/s of a 1000 x 1000 dgemm on one thread (CPU time, best of 3)."""
    a = np.random.default_rng(0).standard_normal((1000, 1000))
    t = cpu_best({"dgemm": lambda: a @ a}, 3)["dgemm"]
    return 1000 ** 3 / t


def losses(repeats: int, flow: bool, previous: str | None) -> None:
    import bench_losses as bl  # noqa: PLC0415
    from lcnrun.core import kernels  # noqa: PLC0415
    from lcnrun.core.dynamics import GradientDescent, GradientFlow  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    current = kernels.compiled_samples_value_and_grad()
    kerns = {"lcnrun": current}
    if previous:
        spec = importlib.util.spec_from_file_location("previous_kernels", previous)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        kerns = {"previous": mod.samples_value_and_grad, "lcnrun": current}
    steps = 10
    record = RecordOptions(points=2, spacing="linear")
    print(f"problem (ii), descent {steps} steps, CPU time, best of {repeats}, interleaved")
    for loss in bl.LOSS_SPECS:
        model, problem, theta0, lr = bl.problem_of(loss)
        peer = bl.NumpyPeer(model, problem)
        dyn = GradientDescent(GradientDescent.Options(lr=lr, steps=steps))

        def run(kern):
            kernels.compiled_samples_value_and_grad = lambda: kern
            try:
                return dyn.run(problem, theta0, record)[0]
            finally:
                kernels.compiled_samples_value_and_grad = lambda: current
        fns = {k: (lambda kern=kern: run(kern)) for k, kern in kerns.items()}
        fns["peer"] = lambda: peer.descend(theta0, lr, steps)
        best = cpu_best(fns, repeats)
        sps = {k: steps / v for k, v in best.items()}
        line = f"{loss:13s} descent steps/s: " + ", ".join(f"{k} {v:.1f}" for k, v in sps.items())
        line += f"; lcnrun/peer {sps['lcnrun'] / sps['peer']:.2f}x"
        if previous:
            same = all(np.array_equal(getattr(run(kerns['previous']), a), getattr(run(current), a))
                       for a in ("loss", "grad_norm"))
            line += f", previous/peer {sps['previous'] / sps['peer']:.2f}x, previous == lcnrun bitwise: {same}"
        print(line, flush=True)
        if flow:
            from scipy.integrate import solve_ivp  # noqa: PLC0415
            f = GradientFlow(GradientFlow.Options(t_max=bl.FLOW_T, method="DOP853", rtol=bl.FLOW_RTOL,
                                                  atol=bl.FLOW_ATOL))
            t0 = time.thread_time()
            traj = f.run(problem, theta0, record)[0]
            ours = time.thread_time() - t0
            t0 = time.thread_time()
            sol = solve_ivp(lambda t, y: -peer.value_and_grad(y[None])[1], (0.0, bl.FLOW_T), theta0[0],
                            method="DOP853", rtol=bl.FLOW_RTOL, atol=bl.FLOW_ATOL)
            theirs = time.thread_time() - t0
            print(f"{'':13s} flow to t = {bl.FLOW_T:g}, CPU s: lcnrun {ours:.2f} (nfev {traj.attrs['nfev']}), "
                  f"peer {theirs:.2f} (nfev {sol.nfev}): {theirs / ours:.2f}x; final loss {traj.loss[-1]:.10g} / "
                  f"{float(peer.value_and_grad(sol.y[:, -1][None])[0]):.10g}", flush=True)


def ensemble(repeats: int) -> None:
    import bench_losses as bl  # noqa: PLC0415

    peak = peak_multiply_adds()
    for loss in bl.LOSS_SPECS:
        model, problem, theta0, _ = bl.problem_of(loss)
        row = {}
        for B in (1, 8, 32):
            theta = theta0 + 0.05 * np.random.default_rng(0).standard_normal((B, theta0.shape[1]))
            row[B] = cpu_best({"vg": lambda: problem.value_and_grad(theta)}, max(2, repeats // 2))["vg"] / B
        N, E = problem.n_samples, model.end_to_end_size
        n_out = int(np.prod(model.output_shape(problem.dataset.inputs.shape[1:])))
        bound = peak / (2 * N * n_out * E)
        print(f"{loss:13s} CPU ms per member evaluation: alone {row[1] * 1e3:.2f}, 8 members {row[8] * 1e3:.2f}, "
              f"32 members {row[32] * 1e3:.2f} ({row[1] / row[32]:.2f}x); bound at the peak {bound:,.0f} "
              f"member-evaluations/s = {bound * row[1]:.1f}x one by one", flush=True)


def dln(repeats: int) -> None:
    import numba  # noqa: PLC0415
    from problems import build  # noqa: PLC0415
    from lcnrun.core.dynamics import GradientDescent  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    model, problem, theta0, lr = build("dln", 1250)
    steps = 20_000
    dyn = GradientDescent(GradientDescent.Options(lr=lr, steps=steps))
    t = cpu_best({"gd": lambda: dyn.run(problem, theta0, RecordOptions(points=100))}, repeats)["gd"]

    @numba.njit
    def products(a, b, c, reps):
        for _ in range(reps):
            np.dot(a, b, c)
    a = np.random.default_rng(0).standard_normal((20, 20))
    c = np.empty((20, 20))
    reps = 100_000
    t_mm = cpu_best({"mm": lambda: products(a, a, c, reps)}, repeats)["mm"] / reps
    peak = peak_multiply_adds()
    print(f"DLN 5x20 square-loss descent: {steps / t:,.0f} steps/s (CPU time); 20 x 20 dgemm from compiled "
          f"code {t_mm * 1e6:.2f} us; bounds: 13 products a step {1 / (13 * t_mm):,.0f} steps/s, the core's "
          f"peak ({peak / 1e9:.1f} G multiply-adds/s) / 104,000 {peak / 104_000:,.0f} steps/s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", default=["losses", "peak", "ensemble", "dln"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flow", action="store_true", help="also one gradient flow per loss")
    parser.add_argument("--previous", help="a copy of an earlier _numba_kernels.py, timed beside this one")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits  # noqa: PLC0415
    threadpool_limits(1)
    import os  # noqa: PLC0415
    print(f"load average {os.getloadavg()}")
    for what in args.what:
        if what == "losses":
            losses(args.repeats, args.flow, args.previous)
        elif what == "peak":
            p = peak_multiply_adds()
            print(f"peak: dgemm 1000 x 1000, one thread: {2 * p / 1e9:.1f} GFLOP/s = {p / 1e9:.1f} G multiply-adds/s")
        elif what == "ensemble":
            ensemble(args.repeats)
        elif what == "dln":
            dln(args.repeats)
        else:
            parser.error(f"unknown item {what!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
