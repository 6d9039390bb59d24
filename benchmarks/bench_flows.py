"""Long-horizon flows (issue 13): the runs of the ``repeated-filters`` figure (stride-1 LCNs, LSODA to
t = 1e5 at rtol 1e-10, diagnostics ``polynomial_structure`` and ``critical_points``), CPU time per run.

Each item is ``lcnrun run SPEC --indices 0-(n-1) --force`` in a fresh process (one worker, one core,
as a one-cpu Slurm task runs; the first ``n`` points of the sweep: seeds 0, 1, ... of all nine
architecture/target pairs), its CPU time (user + sys) from ``getrusage``. Two sizes, so that the
start-up cancels (after a warm-up run that fills numba's on-disk cache): per run = ``(cpu(n2) - cpu(n1)) / (n2 - n1)``.

The target compares with :data:`BEFORE_MS`, the same measurement of the code before the issue's
work (main e997b42, measured by this script with ``--code`` pointing at that tree, on the same
loaded machine): a ratio on one machine at one time, like every row of ``make bench``.

Prints a table, writes benchmarks/out/bench_flows.json.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _items import REPO, machine, write_json  # noqa: E402

SPEC = REPO / "lcnrun" / "figures" / "specs" / "repeated-filters.yaml"
#: CPU ms per run of the same measurement before (main e997b42, n = 9 and 45, 2026-12-02 02:25 UTC,
#: load ~6.5 on 2 cores; this code then: 210 ms)
BEFORE_MS = 421.0


def cpu_of_run(n: int, code: Path) -> float:
    """CPU seconds (user + sys) of ``lcnrun run`` of the first ``n`` sweep points, code from ``code``."""
    env = dict(os.environ, PYTHONPATH=str(code), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="bench_flows_") as tmp:
        out = subprocess.run([sys.executable, "-c", "from lcnrun.cli import main; main()", "run", str(SPEC),
                              "--indices", f"0-{n - 1}", "--results", tmp, "--force", "-q"],
                             capture_output=True, text=True, env=env, cwd=tmp, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"lcnrun run failed:\n{out.stdout}\n{out.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=REPO, help="the source tree to measure (default: this one)")
    a = ap.parse_args()
    n1, n2 = 9, 45  # the sizes BEFORE_MS was measured with (~40 s on the loaded machine)
    t0 = time.perf_counter()
    cpu_of_run(1, a.code)  # warm-up: numba's on-disk cache of the measured tree is written
    c1, c2 = cpu_of_run(n1, a.code), cpu_of_run(n2, a.code)
    per_run_ms = 1e3 * (c2 - c1) / (n2 - n1)
    doc = {"machine": machine(), "code": str(a.code), "n": [n1, n2], "cpu_s": [c1, c2],
           "per_run_ms": per_run_ms, "before_ms": BEFORE_MS, "wall_s": time.perf_counter() - t0}
    if BEFORE_MS:
        doc["speedup"] = BEFORE_MS / per_run_ms
    print(f"repeated-filters runs, CPU per run: {per_run_ms:.0f} ms "
          f"(lcnrun run --indices 0-{n1 - 1}: {c1:.1f} s, 0-{n2 - 1}: {c2:.1f} s; load {os.getloadavg()[0]:.1f})")
    if BEFORE_MS:
        print(f"before: {BEFORE_MS:.0f} ms per run -> {doc['speedup']:.2f}x (target >= 3x)")
    if a.code == REPO:
        write_json("bench_flows.json", doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
