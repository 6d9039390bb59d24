"""`lcnrun plot`, `lcnrun report` and the Python API over 10,000 run files.

The files are made as in bench_sweep.py (b): copies of one real run (20 stored times) with their
own run ids, ``init.seed`` and ``dynamics.lr`` (4 values) and final figures, plus a manifest. Then,
each in a fresh process (imports included): ``lcnrun plot DIR --y loss --color dynamics.lr`` (reads
the attributes and spec of every file, then ``t`` and ``loss`` of each; draws 10,000 thin lines
and 4 medians with bands), ``lcnrun plot DIR --heatmap final.loss --x dynamics.lr --y init.seed
--filter init.seed<10`` (attributes only), ``lcnrun report DIR`` (the page with 10,000 table rows
and two plots); and in this process ``exp.summary()`` and ``exp.trajectories("loss")``.

Target: each plot in seconds (< 10 s on the 2-core machine). Prints a table, writes
benchmarks/out/bench_analysis.json. ``--quick``: 2,000 files.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_sweep import LAST_CPU_S, SPEC, lcnrun, make_run_files  # noqa: E402

TARGET_SECONDS = 10.0


def _cpu() -> float:
    """CPU seconds (user + sys) of this process and of the reader workers it waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="2,000 files")
    args = parser.parse_args()
    n_files = 2000 if args.quick else args.files
    import lcnrun as api  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="lcnrun-bench-analysis-") as tmp:
        tmp = Path(tmp)
        spec = tmp / "one.yaml"
        spec.write_text(SPEC.format(seeds=[0]))
        template = api.run(spec, index=0, results=tmp / "template").path
        folder = tmp / "results" / "many"
        out = {"files": n_files, "make_files_seconds": make_run_files(folder, template, n_files),
               "machine": platform.node(), "python": platform.python_version(),
               "load_average": os.getloadavg()}
        png = tmp / "loss.png"
        out["plot_lines_seconds"], code = lcnrun("plot", folder, "--y", "loss", "--color",
                                                 "dynamics.lr", "-o", png)
        out["plot_lines_cpu_seconds"] = LAST_CPU_S[0]
        assert code == 0 and png.stat().st_size > 0, code
        out["plot_heatmap_seconds"], code = lcnrun("plot", folder, "--heatmap", "final.loss",
                                                   "--x", "dynamics.lr", "--y", "init.seed",
                                                   "--filter", "init.seed<10", "-o",
                                                   tmp / "heat.pdf")
        out["plot_heatmap_cpu_seconds"] = LAST_CPU_S[0]
        assert code == 0, code
        out["report_seconds"], code = lcnrun("report", folder, "-o", tmp / "report.html")
        out["report_cpu_seconds"] = LAST_CPU_S[0]
        assert code == 0, code
        out["report_bytes"] = (tmp / "report.html").stat().st_size
        exp = api.open(folder)
        t0, c0 = time.perf_counter(), _cpu()
        frame = exp.summary()
        out["api_summary_seconds"] = time.perf_counter() - t0
        out["api_summary_cpu_seconds"] = _cpu() - c0
        assert len(frame) == n_files
        t0, c0 = time.perf_counter(), _cpu()
        tidy = exp.trajectories("loss")
        out["api_trajectories_seconds"] = time.perf_counter() - t0
        out["api_trajectories_cpu_seconds"] = _cpu() - c0
        out["api_trajectories_rows"] = len(tidy)
    out["target_seconds"] = TARGET_SECONDS
    out["met"] = max(out["plot_lines_seconds"], out["plot_heatmap_seconds"]) < TARGET_SECONDS
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "bench_analysis.json").write_text(json.dumps(out, indent=1) + "\n")
    width = max(map(len, out))
    for key, value in out.items():
        print(f"{key:<{width}}  {value:.2f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return 0 if out["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
