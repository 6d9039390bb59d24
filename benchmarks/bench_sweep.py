"""Sweep overhead per run, and `lcnrun summary` / `status` over 10,000 run files.

(a) **Sweep overhead.** An experiment of N = 1000 points (a tiny LCN, filters [3, 2], strides
[2, 1], 8 samples, 100 gradient-descent steps, 20 stored times; the points differ in
``init.seed`` only, so the sweep computes them as ensembles). First the computation alone:
every point's ``runner.execute`` in this process (one BLAS thread), timed per run, split into the
core dynamics (``dynamics.run``) and the rest of ``execute`` (building the problem, the trajectory
arrays). Then ``lcnrun sweep -q`` as a user runs it (a fresh process: imports, spec loading,
planning, worker start-up, claims, HDF5 writes with fsync, progress) with -j 1 and -j 2, and once
more with everything done (the cost of a resume that has nothing to do). Overhead per run, all in
= (sweep wall time - sum of execute times / j) / N: the wall-clock time per run beyond the
computation. It is split into a fixed start-up cost and a marginal cost per run by also sweeping
the first N/4 points: wall = fixed + N (execute / j + marginal).

(b) **Reading 10,000 run files.** 10,000 small run files are made by writing records with
``store.write_run`` (fsync off), each a copy of one real run with its own run id, a different
``init.seed`` / ``dynamics.lr`` in its spec text and different final figures, plus a manifest: the
same files a sweep would leave, without computing 10,000 runs. Then ``lcnrun summary --csv``
(default: worker processes from 2,000 files on; and -j 1), ``lcnrun summary --group-by``, and
``lcnrun status``, each a fresh process (imports included). The files were just written, so they
are in the page cache (as after a sweep); a cold cache on a network file system is slower.

Peak RSS of each command: the largest resident set of the process and the workers it waited for
(``wait4``). Prints a table, writes benchmarks/out/bench_sweep.json. ``--quick`` runs a smaller
version.
"""
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # like a sweep worker: before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from lcnrun.runner import build, execute  # noqa: E402
from lcnrun.spec import load_experiment  # noqa: E402
from lcnrun.store import RunRecord, read_run, write_run  # noqa: E402
from lcnrun.store.experiment import ExperimentDir  # noqa: E402

SPEC = """\
name: bench-sweep
model: {{kind: lcn, filters: [3, 2], strides: [2, 1]}}
data: {{kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}}
init: {{kind: gaussian, scale: 0.3, seed: 1}}
dynamics: {{kind: gradient_descent, lr: 0.01, steps: 100}}
record: {{points: 20}}
sweep:
  grid: {{init.seed: {seeds}}}
"""
MAIN = "import sys; from lcnrun.cli import main; sys.argv[0] = 'lcnrun'; main()"


PEAK_RSS_MB: dict[str, float] = {}
#: CPU seconds (user + sys of the command and the workers it waited for) of the last call of
#: :func:`lcnrun`: on a shared machine a better guide than the wall time
LAST_CPU_S: list[float] = [float("nan")]
#: runs a command and writes the peak RSS of it and its descendants to $LCNRUN_BENCH_RSS (then
#: their CPU seconds, user + sys). The
#: command is started from this small process, not from the benchmark (Linux carries a parent's
#: peak RSS over fork + exec, so a child of this big process would report at least its size)
WRAP = ("import os, resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "open(os.environ['LCNRUN_BENCH_RSS'], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}'); "
        "sys.exit(rc)")


def lcnrun(*args: str | Path, stdout=subprocess.DEVNULL) -> tuple[float, int]:
    """Wall time and exit code of ``lcnrun ARGS`` in a fresh process (started through a small
    wrapper, ~20 ms); its peak RSS (with its workers) goes to ``PEAK_RSS_MB`` under the verb and
    options."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        env = dict(os.environ, PYTHONPATH=str(REPO), LCNRUN_BENCH_RSS=rss.name)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, "-c", WRAP, sys.executable, "-c", MAIN, *map(str, args)],
                               env=env, stdout=stdout, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        text = Path(rss.name).read_text().strip()
    key = " ".join(str(a) for a in args if not str(a).startswith("/") and "results" not in str(a))
    if text:
        rss, cpu = text.split()
        PEAK_RSS_MB[key] = max(PEAK_RSS_MB.get(key, 0.0), int(rss) / 1024.0)
        LAST_CPU_S[0] = float(cpu)
    return wall, code


def bench_overhead(tmp: Path, n_runs: int) -> dict:
    spec = tmp / "bench-sweep.yaml"
    spec.write_text(SPEC.format(seeds=list(range(n_runs))))
    exp = load_experiment(spec)
    execute(exp.points[0].run_spec, exp.points[0].run_id)  # warm-up (imports, caches)
    t_execute, t_core = [], []
    for p in exp.points:
        t0 = time.perf_counter()
        execute(p.run_spec, p.run_id)
        t_execute.append(time.perf_counter() - t0)
        built = build(p.run_spec)
        t0 = time.perf_counter()
        built.dynamics.run(built.problem, built.theta0, p.run_spec.record)
        t_core.append(time.perf_counter() - t0)
    out = {"runs": n_runs, "steps_per_run": 100,
           "execute_seconds_sum": float(np.sum(t_execute)),
           "core_dynamics_seconds_sum": float(np.sum(t_core)),
           "execute_ms_per_run": 1e3 * float(np.mean(t_execute)),
           "core_dynamics_ms_per_run": 1e3 * float(np.mean(t_core))}
    quarter = tmp / "quarter.yaml"  # the first N/4 points: for the marginal cost per run
    n_small = max(1, n_runs // 4)
    quarter.write_text(SPEC.format(seeds=list(range(n_small))))
    small_execute = float(np.sum(t_execute[:n_small]))
    for jobs in (1, 2):
        results = tmp / f"results-j{jobs}"
        wall, code = lcnrun("sweep", spec, "-j", jobs, "-q", "--results", results)
        assert code == 0, f"sweep -j {jobs} failed ({code})"
        assert len(list((results / "bench-sweep" / "runs").glob("[!.]*.h5"))) == n_runs
        small, code = lcnrun("sweep", quarter, "-j", jobs, "-q", "--results", tmp / f"small-j{jobs}")
        assert code == 0
        out[f"sweep_j{jobs}_wall_seconds"] = wall
        out[f"sweep_j{jobs}_overhead_ms_per_run"] = 1e3 * (wall - out["execute_seconds_sum"] / jobs) / n_runs
        # wall = fixed + N * (execute / j + marginal): two sizes give the marginal overhead
        marginal = ((wall - small) - (out["execute_seconds_sum"] - small_execute) / jobs) / (n_runs - n_small)
        out[f"sweep_j{jobs}_marginal_overhead_ms_per_run"] = 1e3 * marginal
        out[f"sweep_j{jobs}_fixed_seconds"] = wall - n_runs * (out["execute_seconds_sum"] / jobs / n_runs + marginal)
    wall, code = lcnrun("sweep", spec, "-q", "--results", tmp / "results-j2")
    assert code == 0
    out["resume_nothing_to_do_seconds"] = wall
    wall, _ = lcnrun("--help")
    out["lcnrun_startup_seconds"] = wall
    out["example_run_file"] = str(next((tmp / "results-j1" / "bench-sweep" / "runs").glob("[!.]*.h5")))
    return out


def make_run_files(folder: Path, template: Path, n_files: int) -> float:
    """``n_files`` run files in ``folder/runs`` (copies of ``template`` with their own ids, specs
    and final figures) and a manifest; returns the seconds it took."""
    t0 = time.perf_counter()
    data = read_run(template)
    xdir = ExperimentDir(folder).create()
    rng = np.random.default_rng(0)
    init_seed = re.compile(r"^(init:\n(?:  .*\n)*?  seed: )\d+$", re.M)
    assert init_seed.search(data.spec_text) and "  lr: 0.01\n" in data.spec_text
    rows = []
    lrs = (0.01, 0.02, 0.05, 0.1)
    for i in range(n_files):
        seed, lr = i // len(lrs), lrs[i % len(lrs)]
        run_id = f"{i:012x}"
        spec_text = init_seed.sub(lambda m: f"{m.group(1)}{seed}",
                                  data.spec_text.replace("  lr: 0.01\n", f"  lr: {lr}\n"))
        final = dict(data.final_attrs, loss=float(rng.lognormal(-5, 1)), grad_norm=float(rng.lognormal(-3, 1)))
        record = RunRecord(run_id, "completed" if i % 97 else "diverged", spec_text, data.provenance,
                           data.trajectory, data.final_arrays, final, data.diagnostics, data.attrs)
        write_run(xdir.run_path(run_id), record, fsync=False)
        rows.append((i, run_id, {"init.seed": seed, "dynamics.lr": lr}))
    xdir.write_manifest(rows)
    return time.perf_counter() - t0


def bench_reading(tmp: Path, template: Path, n_files: int) -> dict:
    folder = tmp / "results-many" / "many"
    made = make_run_files(folder, template, n_files)
    out = {"files": n_files, "make_files_seconds": made,
           "bytes_per_file": template.stat().st_size}
    csv_path = tmp / "summary.csv"
    with open(csv_path, "w") as fh:
        out["summary_csv_seconds"], code = lcnrun("summary", folder, "--csv", stdout=fh)
    assert code == 0, code
    lines = csv_path.read_text().splitlines()
    assert len(lines) == n_files + 1, len(lines)
    out["summary_csv_columns"] = lines[0]
    out["summary_csv_j1_seconds"], code = lcnrun("summary", folder, "--csv", "-j", "1")
    assert code == 0
    out["summary_group_by_seconds"], code = lcnrun("summary", folder, "--group-by", "dynamics.lr")
    assert code == 0
    out["status_seconds"], code = lcnrun("status", folder)
    assert code == 0
    from lcnrun.report.source import open_experiment, read_runs  # noqa: PLC0415
    from lcnrun.report.summary import load_runs, summarize  # noqa: PLC0415
    src = open_experiment(folder)
    t0 = time.perf_counter()
    infos = read_runs(src.run_files(), processes=1)
    out["in_process_read_runs_j1_seconds"] = time.perf_counter() - t0
    assert len(infos) == n_files
    runs = load_runs(src, processes=1)
    t0 = time.perf_counter()
    summarize(runs, filters=["dynamics.lr==0.05"], sort=["final.loss"])
    out["in_process_summarize_seconds"] = time.perf_counter() - t0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="200 runs, 2000 files")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.files = 200, 2000
    tmp = Path(tempfile.mkdtemp(prefix="lcnrun-bench-sweep-"))
    try:
        overhead = bench_overhead(tmp, args.runs)
        reading = bench_reading(tmp, Path(overhead.pop("example_run_file")), args.files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    o, r = overhead, reading
    rows = [
        ("sweep: runs", f"{o['runs']} x {o['steps_per_run']} GD steps"),
        ("computation alone (execute) per run", f"{o['execute_ms_per_run']:.2f} ms"),
        ("  of which the core dynamics", f"{o['core_dynamics_ms_per_run']:.2f} ms"),
        ("sweep -j 1 wall", f"{o['sweep_j1_wall_seconds']:.2f} s"),
        ("sweep -j 1 overhead per run (all in)", f"{o['sweep_j1_overhead_ms_per_run']:.2f} ms"),
        ("  = fixed start-up", f"{o['sweep_j1_fixed_seconds']:.2f} s"),
        ("  + marginal overhead per run", f"{o['sweep_j1_marginal_overhead_ms_per_run']:.2f} ms"),
        ("sweep -j 2 wall", f"{o['sweep_j2_wall_seconds']:.2f} s"),
        ("sweep -j 2 overhead per run (all in)", f"{o['sweep_j2_overhead_ms_per_run']:.2f} ms"),
        ("  = fixed start-up", f"{o['sweep_j2_fixed_seconds']:.2f} s"),
        ("  + marginal overhead per run", f"{o['sweep_j2_marginal_overhead_ms_per_run']:.2f} ms"),
        ("sweep again, nothing to do", f"{o['resume_nothing_to_do_seconds']:.2f} s"),
        ("lcnrun --help (start-up)", f"{o['lcnrun_startup_seconds']:.2f} s"),
        (f"making {r['files']} run files", f"{r['make_files_seconds']:.1f} s ({r['bytes_per_file']} B each)"),
        (f"summary --csv, {r['files']} files", f"{r['summary_csv_seconds']:.2f} s"),
        (f"summary --csv -j 1, {r['files']} files", f"{r['summary_csv_j1_seconds']:.2f} s"),
        ("summary --group-by dynamics.lr", f"{r['summary_group_by_seconds']:.2f} s"),
        (f"status, {r['files']} files", f"{r['status_seconds']:.2f} s"),
        *[(f"peak RSS: lcnrun {k}", f"{v:.0f} MiB") for k, v in PEAK_RSS_MB.items()],
        ("  in process: read attrs+specs, -j 1", f"{r['in_process_read_runs_j1_seconds']:.2f} s"),
        ("  in process: filter + sort", f"{r['in_process_summarize_seconds']:.3f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    doc = {"machine": {"host": platform.node(), "python": platform.python_version(),
                       "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                       "load_average": os.getloadavg()},
           "overhead": o, "reading": r, "peak_rss_mb": PEAK_RSS_MB}
    out = HERE / "out" / "bench_sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
