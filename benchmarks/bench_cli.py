"""The command line's own speed (issue 13's CLI targets; issue 11.10).

(a) **Start-up.** ``python -c "import numpy, yaml"`` (the peer) against ``lcnrun --help``,
``validate`` (a one-point spec), ``status`` and ``summary --csv`` (a folder of 10 run files, answered
by the run index), each a fresh process; best of ``--repeats``, wall and CPU (user + sys: less
disturbed by other jobs on a shared machine). Target: within 2.5x of the peer.

(b) **``sweep --dry-run`` of 100,000 points** (a grid of 1000 ``init.seed`` x 100 ``dynamics.lr``,
output to a file). Target: under 10 s and under 300 MB peak RSS.

(c) **``run SPEC --index 5`` of a 10,000-point sweep**, against ``run`` of the same point written
as a spec without a sweep (the start-up of ``run``): both with the run file already completed (the
command validates, finds it, prints it) and with ``--force`` (computes and writes it again).
Target: under 0.5 s above the one-point spec.

(d) **``status`` and ``summary --csv`` over 100,000 run files** (made as bench_sweep.py makes
them, through ``store.write_run``: each write journals its run in the index; the journal then
split into the journals of 1,000 finished bundled Slurm tasks of 100 points): the first reader
(merges the tasks' journals into the snapshot, as a submission's index job does), the next ones
(the snapshot: also the researcher's first ``status`` after the index job), and after the index
was deleted (rebuilt by reading every file once: what every call cost before the index).
Target: under 5 s.

Peak RSS of each command (with its workers). Prints a table, writes benchmarks/out/bench_cli.json.
``--quick``: 10,000 points and files.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from _items import machine, write_json  # noqa: E402
from bench_sweep import LAST_CPU_S, PEAK_RSS_MB, lcnrun, make_run_files  # noqa: E402

ONE = """\
name: bench-cli
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 100}
record: {points: 20}
"""


def grid(n_seeds: int, n_lr: int) -> str:
    lrs = [round(0.001 * (i + 1), 6) for i in range(n_lr)]
    return ONE + f"sweep:\n  grid:\n    init.seed: {list(range(n_seeds))}\n    dynamics.lr: {lrs}\n"


def timed(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Best wall and best CPU (user + sys of the child) seconds of ``repeats`` runs of ``cmd``."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
        wall = min(wall, time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = min(cpu, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    return wall, cpu


def compile_sources() -> None:
    """Byte-compile lcnrun as an installed package is (pip compiles at install; an editable
    checkout writes its ``.pyc`` on first import, unless PYTHONDONTWRITEBYTECODE is set, as on
    some shared machines: then every start-up would compile ~20 modules, ~0.2 s, and that is not
    what a user's start-up costs)."""
    import compileall  # noqa: PLC0415

    compileall.compile_dir(str(REPO / "lcnrun"), quiet=1)


def bench_startup(tmp: Path, repeats: int) -> dict:
    compile_sources()
    spec = tmp / "one.yaml"
    spec.write_text(ONE)
    folder = tmp / "results-small" / "small"
    code = subprocess.call([sys.executable, "-m", "lcnrun.cli", "run", str(spec), "--results",
                            str(tmp / "results-one"), "-q"], stdout=subprocess.DEVNULL, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert code == 0
    template = next((tmp / "results-one" / "bench-cli" / "runs").glob("[!.]*.h5"))
    make_run_files(folder, template, 10)
    cli = [sys.executable, "-m", "lcnrun.cli"]
    cmds = {"import numpy, yaml": [sys.executable, "-c", "import numpy, yaml"],
            "lcnrun --help": [*cli, "--help"],
            "lcnrun validate": [*cli, "validate", str(spec)],
            "lcnrun status": [*cli, "status", str(folder)],
            "lcnrun summary --csv": [*cli, "summary", str(folder), "--csv"]}
    out = {}
    for _ in range(2):  # interleaved: the machine's load changes while we measure
        for name, cmd in cmds.items():
            w, c = timed(cmd, max(1, repeats // 2))
            best = out.setdefault(name, {"wall_s": w, "cpu_s": c})
            best["wall_s"], best["cpu_s"] = min(best["wall_s"], w), min(best["cpu_s"], c)
    peer = out["import numpy, yaml"]
    for v in out.values():
        v["wall_ratio"], v["cpu_ratio"] = v["wall_s"] / peer["wall_s"], v["cpu_s"] / peer["cpu_s"]
    return out


def bench_dry_run(tmp: Path, n_seeds: int) -> dict:
    spec = tmp / "dry.yaml"
    spec.write_text(grid(n_seeds, 100))
    with open(tmp / "dry.txt", "w") as fh:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, code = lcnrun("sweep", spec, "--dry-run", "--results", tmp / "results-dry", stdout=fh)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert code == 0, code
    lines = (tmp / "dry.txt").read_text().splitlines()
    assert lines[-1].startswith(f"{n_seeds * 100} pending"), lines[-1]
    return {"points": n_seeds * 100, "wall_s": wall,
            "cpu_s": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
            "peak_rss_mb": PEAK_RSS_MB.get("sweep --dry-run", float("nan"))}


def bench_index_run(tmp: Path, repeats: int) -> dict:
    sweep = tmp / "sweep10k.yaml"
    sweep.write_text(grid(100, 100))
    one = tmp / "point5.yaml"  # point 5 of the sweep as a spec of its own: init.seed 0, lr 0.006
    one.write_text(ONE.replace("seed: 1}", "seed: 0}").replace("lr: 0.01,", "lr: 0.006,"))
    results = tmp / "results-index"
    cli = [sys.executable, "-m", "lcnrun.cli", "run"]
    t0 = time.perf_counter()  # the first call validates the whole sweep once (writes the manifest)
    subprocess.run([*cli, str(sweep), "--index", "5", "--results", str(results), "-q"], check=True,
                   stdout=subprocess.DEVNULL, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    first = time.perf_counter() - t0
    subprocess.run([*cli, str(one), "--results", str(tmp / "results-one-point"), "-q"], check=True,
                   stdout=subprocess.DEVNULL, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    out = {"first_call_writes_manifest_s": first}
    for label, extra in (("completed", []), ("force", ["--force"])):
        w_i, c_i = timed([*cli, str(sweep), "--index", "5", "--results", str(results), "-q", *extra], repeats)
        w_1, c_1 = timed([*cli, str(one), "--results", str(tmp / "results-one-point"), "-q", *extra], repeats)
        out[label] = {"index_wall_s": w_i, "index_cpu_s": c_i, "one_point_wall_s": w_1, "one_point_cpu_s": c_1,
                      "above_startup_wall_s": w_i - w_1, "above_startup_cpu_s": c_i - c_1}
    return out


#: ``summary --csv`` queries timed over the many files (the target: every one under 5 s)
QUERIES = (("--filter", "status==completed"), ("--sort", "final.loss"),
           ("--filter", "final.loss<1e-3", "--sort", "final.loss", "-r"),
           ("--group-by", "dynamics.lr"), ("--group-by", "init.seed"),
           ("--columns", "+final.n_steps"), ("--columns", "all"))


#: points per bundled Slurm task whose journals the first reader of (d) merges
TASK_POINTS = 100


def as_task_journals(index: Path, per_task: int) -> int:
    """Split the one journal that making the files wrote (this process's) into journals of
    ``per_task`` lines each, named as finished Slurm tasks name theirs (``<...>.final.jsonl``,
    pids beyond ``pid_max``), the exact lines a writer makes: what the first reader after a
    submission's bundled tasks, or its index job, merges. Returns how many."""
    from lcnrun.store.atomic import host_tag  # noqa: PLC0415
    from lcnrun.store.index import FINAL_SUFFIX, JOURNAL_PREFIX  # noqa: PLC0415

    (journal,) = index.glob(f"{JOURNAL_PREFIX}*")
    lines = journal.read_bytes().splitlines(keepends=True)
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    n = 0
    for n, lo in enumerate(range(0, len(lines), per_task), start=1):
        name = f"{JOURNAL_PREFIX}{host_tag()}.{dead + n}.{n:08x}{FINAL_SUFFIX}"
        (index / name).write_bytes(b"".join(lines[lo: lo + per_task]))
    journal.unlink()
    return n


def bench_many(tmp: Path, n_files: int) -> dict:
    spec = tmp / "one.yaml"
    template = next((tmp / "results-one" / "bench-cli" / "runs").glob("[!.]*.h5"))
    folder = tmp / "results-many" / "many"
    made = make_run_files(folder, template, n_files)
    out = {"files": n_files, "make_files_s": made,
           "task_journals": as_task_journals(folder / ".index", TASK_POINTS)}
    for phase in ("first", "next", "after_index_deleted"):
        if phase == "after_index_deleted":
            shutil.rmtree(folder / ".index")
        out[f"status_{phase}_s"], code = lcnrun("status", folder)
        out[f"status_{phase}_cpu_s"] = LAST_CPU_S[0]
        assert code == 0
        if phase == "after_index_deleted":
            shutil.rmtree(folder / ".index")
        with open(tmp / "summary.csv", "w") as fh:
            out[f"summary_csv_{phase}_s"], code = lcnrun("summary", folder, "--csv", stdout=fh)
        out[f"summary_csv_{phase}_cpu_s"] = LAST_CPU_S[0]
        assert code == 0
        assert len((tmp / "summary.csv").read_text().splitlines()) == n_files + 1
    out["index_bytes"] = sum(p.stat().st_size for p in (folder / ".index").rglob("*") if p.is_file())
    out["queries"] = {}
    for query in QUERIES:  # the index is current: every query of a researcher's summary
        with open(tmp / "summary.csv", "w") as fh:
            wall, code = lcnrun("summary", folder, "--csv", *query, stdout=fh)
        assert code == 0, query
        out["queries"][" ".join(query)] = {"wall_s": wall, "cpu_s": LAST_CPU_S[0]}
    del spec
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 points and run files")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--only", choices=("startup", "dry", "index", "many"), action="append")
    args = parser.parse_args()
    n_seeds, n_files = (100, 10_000) if args.quick else (1000, 100_000)
    only = set(args.only or ("startup", "dry", "index", "many"))
    tmp = Path(tempfile.mkdtemp(prefix="lcnrun-bench-cli-"))
    doc: dict = {"machine": machine()}
    try:
        doc["startup"] = bench_startup(tmp, args.repeats)  # also makes the template run file
        if "dry" in only:
            doc["dry_run"] = bench_dry_run(tmp, n_seeds)
        if "index" in only:
            doc["run_index"] = bench_index_run(tmp, max(2, args.repeats // 2))
        if "many" in only:
            doc["many_files"] = bench_many(tmp, n_files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc["peak_rss_mb"] = dict(PEAK_RSS_MB)
    rows = []
    for name, v in doc["startup"].items():
        rows.append((f"start-up: {name}", f"{v['wall_s'] * 1e3:.0f} ms wall ({v['wall_ratio']:.2f}x), "
                                          f"{v['cpu_s'] * 1e3:.0f} ms cpu ({v['cpu_ratio']:.2f}x)"))
    if "dry_run" in doc:
        d = doc["dry_run"]
        rows.append((f"sweep --dry-run, {d['points']} points",
                     f"{d['wall_s']:.1f} s wall, {d['cpu_s']:.1f} s cpu, {d['peak_rss_mb']:.0f} MiB"))
    if "run_index" in doc:
        r = doc["run_index"]
        rows.append(("run --index 5 of 10,000 points, first call (writes the manifest)",
                     f"{r['first_call_writes_manifest_s']:.2f} s"))
        for label in ("completed", "force"):
            x = r[label]
            rows.append((f"run --index 5 ({label}) vs the one-point spec",
                         f"{x['index_wall_s']:.2f} vs {x['one_point_wall_s']:.2f} s wall "
                         f"(+{x['above_startup_wall_s']:.2f} s), cpu +{x['above_startup_cpu_s']:.2f} s"))
    if "many_files" in doc:
        m = doc["many_files"]
        rows.append((f"making {m['files']} run files", f"{m['make_files_s']:.0f} s; index {m['index_bytes'] / 1e6:.0f} MB"))
        names = {"first": f"first (merges {m['task_journals']} tasks' journals)",
                 "next": "next (or the first after the index job)"}
        for phase in ("first", "next", "after_index_deleted"):
            rows.append((f"status / summary --csv, {m['files']} files, {names.get(phase, phase.replace('_', ' '))}",
                         f"{m[f'status_{phase}_s']:.2f} s / {m[f'summary_csv_{phase}_s']:.2f} s wall, "
                         f"{m[f'status_{phase}_cpu_s']:.2f} s / {m[f'summary_csv_{phase}_cpu_s']:.2f} s cpu"))
        for query, q in m["queries"].items():
            rows.append((f"summary --csv {query}, {m['files']} files",
                         f"{q['wall_s']:.2f} s wall, {q['cpu_s']:.2f} s cpu"))
    for k, v in PEAK_RSS_MB.items():
        rows.append((f"peak RSS: lcnrun {k}", f"{v:.0f} MiB"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    path = write_json("bench_cli.json", doc)
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
