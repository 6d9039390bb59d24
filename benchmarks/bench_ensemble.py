"""Ensembles on problem (ii) of :mod:`problems` (issue items 2, 3, 5), each item in a fresh process.

- **Gradient descent throughput**: ensembles of 1, 10, 100, 1000, 10000 members (each its own
  ``0.3 N(0, 1)`` initialization), 1000 steps, 100 stored times: member-steps per second of one
  ``GradientDescent.run`` on the batch, best of 3.
- **One by one**: the same members as single runs, one ``GradientDescent.run`` each (100 members):
  member-steps per second; and the previous implementation (before ensembles and the compiled
  kernel: a numpy step loop with the numpy end-to-end map and pull-back), for reference.
- **End to end**: ``runner.execute`` per point against ``runner.execute_ensemble`` for 50 points of a
  sweep over ``init.seed`` (building the problem, N = 4096 samples, and the run records included).
- **Gradient flow**: wall time to t = 100 at rtol 1e-8 (atol 1e-10, DOP853, 200 stored times) for a
  single run and for an ensemble of 1000 members.

Peak RSS is that of each item's process. Prints a table, writes benchmarks/out/bench_ensemble.json.
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

STEPS = 1000
SIZES = (1, 10, 100, 1000, 10_000)
ONE_BY_ONE = 100
GF_T, GF_RTOL, GF_ATOL = 100.0, 1e-8, 1e-10


def members(model, B):
    return 0.3 * np.random.default_rng(12345).standard_normal((B, model.n_params))


def item(kind: str, B: int) -> dict:
    from problems import build  # noqa: PLC0415
    from lcnrun.core.dynamics import GradientDescent, GradientFlow  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    model, problem, _, lr = build("ii")
    theta0 = members(model, B)
    record = RecordOptions(points=100)
    gd = GradientDescent(GradientDescent.Options(lr=lr, steps=STEPS))
    gd.run(problem, theta0[:1], record)  # warm-up: the compiled code loaded
    if kind == "ensemble":
        best = best_time(lambda: gd.run(problem, theta0, record), 3 if B < 10_000 else 2)
        return {"members": B, "seconds": best, "member_steps_per_s": B * STEPS / best}
    if kind == "one_by_one":
        best = best_time(lambda: [gd.run(problem, theta0[b: b + 1], record) for b in range(B)], 3)
        return {"members": B, "seconds": best, "member_steps_per_s": B * STEPS / best}
    if kind == "previous":  # the numpy step loop with the numpy gradient, as before this change
        from lcnrun.core.dynamics.gradient_descent import _descend_numpy  # noqa: PLC0415

        class NumpyOnly:
            def value_and_grad(self, theta):
                return problem.numpy_value_and_grad(theta)
        best = best_time(lambda: _descend_numpy(NumpyOnly(), theta0[:1].copy(), [record], [gd.options], None, ()), 2)
        return {"members": 1, "seconds": best, "member_steps_per_s": STEPS / best}
    if kind == "gradient_flow":
        flow = GradientFlow(GradientFlow.Options(t_max=GF_T, method="DOP853", rtol=GF_RTOL, atol=GF_ATOL))
        t0 = time.perf_counter()
        trajs = flow.run(problem, theta0, RecordOptions(points=200))
        wall = time.perf_counter() - t0
        nfev = [t.attrs["nfev"] for t in trajs]
        return {"members": B, "seconds": wall, "status": sorted({t.status for t in trajs}),
                "nfev_mean": float(np.mean(nfev)), "nfev_max": int(np.max(nfev)),
                "final_loss_median": float(np.median([t.loss[-1] for t in trajs]))}
    raise ValueError(kind)


def runner_item(kind: str, B: int) -> dict:
    from lcnrun.runner import execute, execute_ensemble  # noqa: PLC0415
    from lcnrun.spec import load_experiment_text  # noqa: PLC0415

    text = f"""\
name: bench-ensemble
model: {{kind: lcn, filters: [4, 3, 3, 2], strides: [2, 2, 2, 1]}}
data: {{kind: gaussian, n_samples: 4096, input_size: 512, target: {{kind: teacher, scale: 0.5}}, noise: 0.01, seed: 0}}
init: {{kind: gaussian, scale: 0.3, seed: 1}}
dynamics: {{kind: gradient_descent, lr: 0.002, steps: {STEPS}}}
record: {{points: 100}}
sweep:
  grid: {{init.seed: {list(range(B))}}}
"""
    points = load_experiment_text(text).points
    execute(points[0].run_spec, points[0].run_id)  # warm-up
    t0 = time.perf_counter()
    if kind == "execute_each":
        records = [execute(p.run_spec, p.run_id) for p in points]
    else:
        records = execute_ensemble([p.run_spec for p in points], [p.run_id for p in points])
    wall = time.perf_counter() - t0
    assert all(r.status == "completed" for r in records)
    return {"members": B, "seconds": wall, "runs_per_s": B / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--item", nargs=2, metavar=("KIND", "MEMBERS"))
    parser.add_argument("--quick", action="store_true", help="up to 1000 members")
    args = parser.parse_args()
    if args.item:
        kind, B = args.item[0], int(args.item[1])
        emit(runner_item(kind, B) if kind in ("execute_each", "execute_ensemble") else item(kind, B))
        return 0
    me = Path(__file__)
    sizes = [b for b in SIZES if not (args.quick and b > 1000)]
    before = machine()
    ens = {B: run_item(me, "ensemble", str(B)) for B in sizes}
    one = run_item(me, "one_by_one", str(ONE_BY_ONE))
    prev = run_item(me, "previous", "1")
    end_each = run_item(me, "execute_each", "50")
    end_ens = run_item(me, "execute_ensemble", "50")
    gf = {B: run_item(me, "gradient_flow", str(B)) for B in (1, 1000)}
    base, old = one["member_steps_per_s"], prev["member_steps_per_s"]
    print(f"gradient descent on (ii), {STEPS} steps, 100 stored times (member-steps per second)")
    print(f"{'members':>8s} {'member-steps/s':>15s} {'vs one by one':>14s} {'vs previous':>12s} {'wall s':>8s} {'RSS MiB':>8s}")
    for B, r in ens.items():
        print(f"{B:8d} {r['member_steps_per_s']:15,.0f} {r['member_steps_per_s'] / base:13.1f}x "
              f"{r['member_steps_per_s'] / old:11.0f}x {r['seconds']:8.3f} {r['peak_rss_mb']:8.0f}")
    print(f"{'one by one (' + str(ONE_BY_ONE) + ' single runs)':38s} {base:15,.0f} member-steps/s  RSS {one['peak_rss_mb']:.0f} MiB")
    print(f"{'previous implementation (numpy loop)':38s} {old:15,.0f} member-steps/s  RSS {prev['peak_rss_mb']:.0f} MiB")
    print(f"end to end, 50 runs incl. building (N=4096): execute each {end_each['seconds']:.2f} s, "
          f"execute_ensemble {end_ens['seconds']:.2f} s ({end_each['seconds'] / end_ens['seconds']:.0f}x); "
          f"RSS {end_each['peak_rss_mb']:.0f} / {end_ens['peak_rss_mb']:.0f} MiB")
    for B, r in gf.items():
        print(f"gradient flow to t={GF_T:g}, rtol {GF_RTOL:g}, DOP853, {B} member(s): {r['seconds']:.2f} s "
              f"(mean nfev {r['nfev_mean']:.0f}, {', '.join(r['status'])}), RSS {r['peak_rss_mb']:.0f} MiB")
    doc = {"machine_before": before, "machine_after": machine(), "steps": STEPS,
           "ensemble": {str(k): v for k, v in ens.items()}, "one_by_one": one, "previous": prev,
           "end_to_end": {"execute_each": end_each, "execute_ensemble": end_ens},
           "gradient_flow": {str(k): v for k, v in gf.items()}}
    path = write_json("bench_ensemble.json", doc)
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
