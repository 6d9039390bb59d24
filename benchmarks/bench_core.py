"""Single-run speed of the core: gradient-descent steps per second (square loss).

Problems (issue 2): an LCN with filters [4,3,3,2], strides [2,2,2,1], input length 512, N = 4096
samples, and a 5-layer 20-wide DLN with N = 10,000 samples; each also at N/8 samples to show that the
per-step cost does not depend on N (sufficient statistics). Prints a table, writes
benchmarks/out/bench_core.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from lcnrun.core.data import GaussianData, TeacherTarget, build_dataset
from lcnrun.core.dynamics import GradientDescent
from lcnrun.core.init import GaussianInit
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import Dense, LCN
from lcnrun.core.options import Section
from lcnrun.core.problem import Problem
from lcnrun.core.recording import RecordOptions

PROBLEMS = {
    "lcn [4,3,3,2] s[2,2,2,1] d512": (lambda: LCN(LCN.Options(filters=(4, 3, 3, 2), strides=(2, 2, 2, 1))), 512, 4096),
    "dln 5x20": (lambda: Dense(Dense.Options(widths=(20,) * 6)), None, 10_000),
}


def steps_per_second(model, input_size, n_samples, steps=3000, repeats=3):
    t0 = time.perf_counter()
    data = build_dataset(Section("gaussian", GaussianData.Options(
        n_samples=n_samples, input_size=input_size,
        target=Section("teacher", TeacherTarget.Options(scale=0.3)))), model)
    problem = Problem(model, LOSSES["square"](), data)
    setup = time.perf_counter() - t0
    theta0 = GaussianInit.build(GaussianInit.Options(scale=0.3, seed=1), model)
    dyn = GradientDescent(GradientDescent.Options(lr=1e-3, steps=steps))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        traj = dyn.run(problem, theta0, RecordOptions(points=100))[0]
        best = min(best, time.perf_counter() - t0)
    assert traj.status == "completed", traj.message
    return steps / best, setup


def main() -> int:
    rows = []
    for name, (make, size, n) in PROBLEMS.items():
        for nn in (n // 8, n):
            sps, setup = steps_per_second(make(), size, nn)
            rows.append({"problem": name, "n_samples": nn, "steps_per_s": sps, "setup_s": setup})
    print(f"{'problem':32s} {'N':>7s} {'GD steps/s':>12s} {'setup s':>8s}")
    for r in rows:
        print(f"{r['problem']:32s} {r['n_samples']:7d} {r['steps_per_s']:12.0f} {r['setup_s']:8.3f}")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_core.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
