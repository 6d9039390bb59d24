"""Single-run speed of the core: gradient-descent steps per second (square loss), and the cost of
the compiled kernels' first call.

- Problem (ii) of :mod:`problems` (LCN [4,3,3,2], strides [2,2,2,1], input 512) and a 5-layer
  20-wide DLN, each at two sample counts N: the per-step cost does not depend on N (sufficient
  statistics); ``setup`` is building the problem (data, Gram matrix) once.
- The compiled kernels (numba): the first call in a fresh process loads them from numba's cache
  (``cache=True``); with an empty cache (``NUMBA_CACHE_DIR`` pointed at a new folder) it compiles
  them, which happens once per machine and lcnrun version.

Each item runs in a fresh process (its peak RSS is its own). Prints a table, writes
benchmarks/out/bench_core.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _items import best_time, emit, machine, run_item, write_json  # noqa: E402

ROWS = [("ii", 512), ("ii", 4096), ("dln", 1250), ("dln", 10_000)]
STEPS = 20_000


def steps_item(name: str, n_samples: int) -> dict:
    from problems import build  # noqa: PLC0415
    from lcnrun.core.dynamics import GradientDescent  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415

    t0 = time.perf_counter()
    model, problem, theta0, lr = build(name, n_samples)
    setup = time.perf_counter() - t0
    steps = STEPS if name != "dln" else 2000
    dyn = GradientDescent(GradientDescent.Options(lr=lr, steps=steps))
    traj = dyn.run(problem, theta0, RecordOptions(points=100))[0]
    assert traj.status == "completed", traj.message
    best = best_time(lambda: dyn.run(problem, theta0, RecordOptions(points=100)), 5)
    return {"problem": name, "n_samples": n_samples, "steps_per_s": steps / best, "setup_s": setup}


def compile_item() -> dict:
    t0 = time.perf_counter()
    import numba  # noqa: F401, PLC0415
    t_import = time.perf_counter() - t0
    from problems import build  # noqa: PLC0415
    from lcnrun.core.dynamics import GradientDescent  # noqa: PLC0415
    from lcnrun.core.recording import RecordOptions  # noqa: PLC0415
    model, problem, theta0, lr = build("ii", 64)
    t0 = time.perf_counter()
    GradientDescent(GradientDescent.Options(lr=lr, steps=10)).run(problem, theta0, RecordOptions(points=2))
    return {"numba_import_s": t_import, "first_call_s": time.perf_counter() - t0,
            "cache_dir": os.environ.get("NUMBA_CACHE_DIR", "next to lcnrun/core/kernels.py")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--item", nargs="+")
    args = parser.parse_args()
    if args.item:
        emit(compile_item() if args.item[0] == "compile" else steps_item(args.item[0], int(args.item[1])))
        return 0
    before = machine()
    rows = [run_item(Path(__file__), name, str(n)) for name, n in ROWS]
    warm = run_item(Path(__file__), "compile")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NUMBA_CACHE_DIR"] = cache
        cold = run_item(Path(__file__), "compile")
        del os.environ["NUMBA_CACHE_DIR"]
    print(f"{'problem':10s} {'N':>7s} {'GD steps/s':>12s} {'setup s':>8s} {'RSS MiB':>8s}")
    for r in rows:
        print(f"{r['problem']:10s} {r['n_samples']:7d} {r['steps_per_s']:12,.0f} {r['setup_s']:8.3f} "
              f"{r['peak_rss_mb']:8.0f}")
    print(f"compiled kernels, first call in a fresh process: {warm['first_call_s']:.3f} s from numba's "
          f"cache, {cold['first_call_s']:.2f} s compiling (empty cache); importing numba {warm['numba_import_s']:.2f} s")
    path = write_json("bench_core.json", {"machine_before": before, "machine_after": machine(), "rows": rows,
                                          "kernels_cached": warm, "kernels_cold": cold})
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
