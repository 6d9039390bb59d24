"""`make bench`: every benchmark script in this folder, one after another (tables on stdout, JSON
under benchmarks/out/), then one summary table of the speed targets (benchmarks/out/summary.json).
Speed targets live here, never in timed unit tests.

Scripts: bench_torch.py (single-run gradient descent against the PyTorch peer), bench_core.py
(single-run steps/s against N, compile cost), bench_ensemble.py (ensembles, gradient flow),
bench_sweep.py (sweep overhead, reading 10,000 run files), bench_analysis.py (plot, report and the
Python API over 10,000 run files), bench_cli.py (start-up, sweep --dry-run of 100,000 points,
run --index, status/summary over 100,000 run files). ``--quick`` passes ``--quick`` to the
scripts that have it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
SCRIPTS = ["bench_torch.py", "bench_core.py", "bench_ensemble.py", "bench_sweep.py",
           "bench_analysis.py", "bench_cli.py"]
QUICK = {"bench_ensemble.py", "bench_sweep.py", "bench_analysis.py", "bench_cli.py"}


def load(name: str) -> dict | None:
    path = OUT / name
    return json.loads(path.read_text()) if path.exists() else None


def targets() -> list[tuple[str, str, str, bool | None]]:
    """(target, required, measured, met) rows from the JSON files."""
    rows = []
    torch = load("bench_torch.json")
    if torch:
        for r in torch["rows"]:
            ours = r["lcnrun"]["steps_per_s"]
            if r["torch"].get("available"):
                rows.append((f"(1) {r['label']}: vs PyTorch", ">= 200x",
                             f"{ours:,.0f} vs {r['torch']['steps_per_s']:.1f} steps/s = {r['speedup']:,.0f}x, "
                             f"loss diff {r['check_rel_diff']:.0e}", r["speedup"] >= 200 and r["check_ok"]))
            else:
                rows.append((f"(1) {r['label']}: vs PyTorch", ">= 200x", "torch not installed", None))
            if r["problem"] == "ii":
                rows.append(("(1) (ii) single-run steps/s", ">= 20,000", f"{ours:,.0f}", ours >= 20_000))
    ens = load("bench_ensemble.json")
    if ens and "1000" in ens["ensemble"]:
        rate = ens["ensemble"]["1000"]["member_steps_per_s"]
        one = ens["one_by_one"]["member_steps_per_s"]
        prev = ens["previous"]["member_steps_per_s"]
        rows.append(("(2) 1000 members of (ii)", ">= 1,000,000 member-steps/s", f"{rate:,.0f}", rate >= 1e6))
        rows.append(("(2) vs one by one (single runs, same code)", ">= 50x", f"{rate / one:.1f}x", rate / one >= 50))
        rows.append(("(2) vs one by one, previous implementation", "(>= 50x)", f"{rate / prev:,.0f}x", rate / prev >= 50))
        e = ens["end_to_end"]
        ratio = e["execute_each"]["seconds"] / e["execute_ensemble"]["seconds"]
        rows.append(("(2) end to end: 50 x execute vs execute_ensemble", "(>= 50x)", f"{ratio:.0f}x", ratio >= 50))
    sweep = load("bench_sweep.json")
    if sweep:
        o = sweep["overhead"]
        ms = o["sweep_j2_overhead_ms_per_run"]
        rows.append((f"(4) sweep -j 2 overhead per run, {o['runs']} runs", "< 20 ms", f"{ms:.1f} ms (all in)", ms < 20))
    plots = load("bench_analysis.json")
    if plots:
        worst = max(plots["plot_lines_seconds"], plots["plot_heatmap_seconds"])
        rows.append((f"(14) lcnrun plot over {plots['files']:,} run files", f"< {plots['target_seconds']:g} s",
                     f"lines {plots['plot_lines_seconds']:.1f} s, heatmap {plots['plot_heatmap_seconds']:.1f} s",
                     worst < plots["target_seconds"]))
    rows += cli_targets(load("bench_cli.json"))
    return rows


def cli_targets(cli: dict | None) -> list[tuple[str, str, str, bool | None]]:
    """Issue 13's command-line targets from bench_cli.json."""
    if not cli:
        return []
    rows = []
    for name in ("lcnrun --help", "lcnrun validate", "lcnrun status", "lcnrun summary --csv"):
        v = cli["startup"][name]
        rows.append((f"(13) start-up: {name}", "<= 2.5x import numpy, yaml",
                     f"{v['wall_ratio']:.2f}x wall, {v['cpu_ratio']:.2f}x cpu", v["cpu_ratio"] <= 2.5))
    if "dry_run" in cli:
        d = cli["dry_run"]
        rows.append((f"(13) sweep --dry-run, {d['points']:,} points", "< 10 s, < 300 MB",
                     f"{d['wall_s']:.1f} s ({d['cpu_s']:.1f} s cpu), {d['peak_rss_mb']:.0f} MiB",
                     d["points"] >= 100_000 and d["cpu_s"] < 10 and d["peak_rss_mb"] < 300))
    if "run_index" in cli:
        x = cli["run_index"]["completed"]
        rows.append(("(13) run --index 5 of 10,000 points, above start-up", "< 0.5 s",
                     f"+{x['above_startup_wall_s']:.2f} s wall, +{x['above_startup_cpu_s']:.2f} s cpu",
                     x["above_startup_cpu_s"] < 0.5))
    if "many_files" in cli:
        m = cli["many_files"]
        worst = max(m["status_next_s"], m["summary_csv_next_s"])
        rows.append((f"(13) status / summary --csv, {m['files']:,} run files", "< 5 s",
                     f"{m['status_next_s']:.2f} / {m['summary_csv_next_s']:.2f} s (first: "
                     f"{m['status_first_s']:.1f} / {m['summary_csv_first_s']:.1f} s)",
                     m["files"] >= 100_000 and worst < 5))
    return rows


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    code = 0
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    for name in SCRIPTS:
        path = HERE / name
        if not path.exists():
            continue
        print(f"\n== {name} ==", flush=True)
        args = [sys.executable, str(path)] + (["--quick"] if quick and name in QUICK else [])
        code |= subprocess.call(args, env=env)
    rows = targets()
    print("\n== targets (this machine, 2 cores shared with other jobs; best of repeats) ==")
    width = max((len(r[0]) for r in rows), default=10)
    for target, required, measured, met in rows:
        verdict = {True: "met", False: "MISSED", None: "-"}[met]
        print(f"{target:<{width}}  {required:>28s}  {measured:<55s} {verdict}")
    OUT.mkdir(exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(
        [{"target": t, "required": r, "measured": m, "met": ok} for t, r, m, ok in rows], indent=2) + "\n")
    print(f"wrote {(OUT / 'summary.json').relative_to(HERE.parent)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
