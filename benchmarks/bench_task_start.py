"""What a Slurm array task pays before its first point computes (issue 10.3, issue 13).

A bundled task runs ``lcnrun run SPEC --indices A-B --expect-run-id ...`` in a folder that
``submit`` prepared (``experiment.yaml`` and ``manifest.tsv`` written); a one-point task runs
``lcnrun run SPEC --index I``. Measured here: the CPU seconds (user + sys of the process, from
``/proc/PID/stat``) until the task reaches its first computation, i.e. the runner's test-only
barrier ``claimed`` (``lcnrun.interrupt.barrier``: after the first unit's claims, before it
computes); the task is then stopped (SIGTERM: nothing is written). Best of ``--repeats``.

The sweep is benchmarks/slurm_bundling.sh's spec (100-step descents of a small LCN) with
``init.seed`` x ``data.seed`` (10): 20,000 and 100,000 points. The experiment folder is prepared
once per spec (``workflow.prepare``: what ``submit`` writes). Rows:

- ``--indices`` of the first and the last task of a 6-task bundling (at most 5000 points a task),
  with ``--expect-run-id`` (the ids the task was submitted with);
- ``--index I`` (the middle point), with ``--expect-run-id``;
- ``--indices`` in a folder without a manifest (the whole sweep is validated and written).

Usage: ``python benchmarks/bench_task_start.py [--points 20000 --points 100000] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LCNRUN = [sys.executable, "-m", "lcnrun.cli"]

SPEC = """\
name: {name}
model: {{kind: lcn, filters: [3, 2], strides: [2, 1]}}
data: {{kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}}
init: {{kind: gaussian, scale: 0.3, seed: 1}}
loss: {{kind: square}}
dynamics: {{kind: gradient_descent, lr: 0.001, steps: 100}}
record: {{points: 12}}
sweep:
  grid: {{init.seed: [{seeds}], data.seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def to_first_point(cmd: list[str], tmp: Path) -> tuple[float, float]:
    """(CPU s, wall s) of ``cmd`` until it reaches the barrier ``claimed``; then SIGTERM."""
    gate = tmp / f"gate-{time.monotonic_ns()}"
    env = {**os.environ, "LCNRUN_TEST_BARRIER": f"claimed={gate}", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reached = gate.with_name(f"{gate.name}.reached.{proc.pid}")
    while not reached.exists():
        if proc.poll() is not None:
            raise SystemExit(f"{cmd} ended ({proc.returncode}) before its first point:\n"
                             + proc.stderr.read().decode())
        time.sleep(0.01)
    wall = time.perf_counter() - start
    cpu = cpu_seconds(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.communicate()
    return cpu, wall


def best(cmd: list[str], tmp: Path, repeats: int, runs_dir: Path | None = None) -> tuple[float, float]:
    """Best of ``repeats``; ``runs_dir`` is emptied after each (the stopped task may leave
    ``stopped`` run files; each repeat and row starts from the folder ``submit`` left)."""
    out = []
    for _ in range(repeats):
        out.append(to_first_point(cmd, tmp))
        if runs_dir is not None:
            shutil.rmtree(runs_dir, ignore_errors=True)
    return min(c for c, _ in out), min(w for _, w in out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, action="append", help="sweep sizes (multiples of 10)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from lcnrun import workflow  # noqa: PLC0415

    print(f"load: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="lcnrun-task-") as name:
        tmp = Path(name)
        for n in args.points or [20000, 100000]:
            spec = tmp / f"sweep{n}.yaml"
            spec.write_text(SPEC.format(name=f"sweep{n}", seeds=", ".join(map(str, range(n // 10)))))
            results = tmp / f"results{n}"
            t0 = time.process_time()
            exp = workflow.load(spec)
            load_cpu = time.process_time() - t0
            workflow.prepare(exp, results)
            ids = [p.run_id for p in exp.points]
            k = min(-(-n // 6), 5000)  # an argument holds at most 128 KiB: 5000 ids
            print(f"{n} points: whole-sweep load in this process {load_cpu:.2f} s CPU")
            runs = results / f"sweep{n}" / "runs"
            for a in (0, n - k):
                b = min(n, a + k) - 1
                cmd = [*LCNRUN, "run", str(spec), "--indices", f"{a}-{b}", "--results", str(results),
                       "-q", "--expect-run-id", ",".join(ids[a:b + 1])]
                cpu, wall = best(cmd, tmp, args.repeats, runs)
                print(f"  run --indices {a}-{b}: {cpu:.2f} s CPU, {wall:.2f} s wall to the first point")
            i = n // 2
            cmd = [*LCNRUN, "run", str(spec), "--index", str(i), "--results", str(results), "-q",
                   "--expect-run-id", ids[i]]
            cpu, wall = best(cmd, tmp, args.repeats, runs)
            print(f"  run --index {i}: {cpu:.2f} s CPU, {wall:.2f} s wall to the point")
            cmd = [*LCNRUN, "run", str(spec), "--indices", f"0-{k - 1}", "--results", str(tmp / f"fresh{n}"), "-q"]
            cpu, wall = best(cmd, tmp, 1)
            print(f"  run --indices 0-{k - 1}, no manifest yet: {cpu:.2f} s CPU, {wall:.2f} s wall")
    print(f"load: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
