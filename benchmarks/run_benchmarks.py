"""`make bench`: every benchmark script in this folder, one after another (tables on stdout, JSON
under benchmarks/out/), then one summary table of the speed targets (benchmarks/out/summary.json).
Speed targets live here, never in timed unit tests.

Scripts: bench_torch.py (single-run gradient descent against the PyTorch peer), bench_core.py
(single-run steps/s against N, compile cost), bench_losses.py (separable losses against the
numpy BLAS peer: descent, flow, ensembles, the memory-bandwidth limit), bench_kernels.py (the same
comparisons interleaved in one process in CPU time, the core's dgemm peak and the physical bounds
of the ensemble and DLN targets; printed, no JSON), bench_ensemble.py
(ensembles, gradient flow), bench_sweep.py (sweep overhead, reading 10,000 run files),
bench_analysis.py (plot, report and the Python API over 10,000 run files), bench_cli.py (start-up,
sweep --dry-run of 100,000 points, run --index, status/summary over 100,000 run files),
bench_task_start.py (a bundled task's CPU up to its first point, 20,000- and 100,000-point grids;
printed), bench_flows.py (the repeated-filters figure's long-horizon LSODA runs, CPU per run against before). Every row
of the targets table carries the peak RSS of the process(es) it was measured in where the script
records it (ours / peer's). ``--quick`` passes ``--quick`` to the
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
SCRIPTS = ["bench_torch.py", "bench_core.py", "bench_losses.py", "bench_kernels.py", "bench_ensemble.py",
           "bench_sweep.py", "bench_analysis.py", "bench_cli.py", "bench_task_start.py", "bench_flows.py"]
QUICK = {"bench_ensemble.py", "bench_sweep.py", "bench_losses.py", "bench_analysis.py", "bench_cli.py"}
#: single-run DLN 5x20 square-loss descent before the compiled DLN kernel (issue 13: "today")
DLN_BEFORE = 19_000


def load(name: str) -> dict | None:
    path = OUT / name
    return json.loads(path.read_text()) if path.exists() else None


def rss(*items) -> str:
    """Peak RSS of the items' processes, ``ours / peer`` in MiB."""
    return " / ".join(f"{i['peak_rss_mb']:.0f}" for i in items if i and "peak_rss_mb" in i) or "-"


def targets() -> list[tuple[str, str, str, bool | None, str]]:
    """(target, required, measured, met, peak RSS) rows from the JSON files."""
    rows = []
    torch = load("bench_torch.json")
    if torch:
        for r in torch["rows"]:
            ours = r["lcnrun"]["steps_per_s"]
            if r["torch"].get("available"):
                rows.append((f"(1) {r['label']}: vs PyTorch", ">= 200x",
                             f"{ours:,.0f} vs {r['torch']['steps_per_s']:.1f} steps/s = {r['speedup']:,.0f}x, "
                             f"loss diff {r['check_rel_diff']:.0e}", r["speedup"] >= 200 and r["check_ok"],
                             rss(r["lcnrun"], r["torch"])))
            else:
                rows.append((f"(1) {r['label']}: vs PyTorch", ">= 200x", "torch not installed", None, rss(r["lcnrun"])))
            if r["problem"] == "ii":
                rows.append(("(1) (ii) single-run steps/s", ">= 20,000", f"{ours:,.0f}", ours >= 20_000, rss(r["lcnrun"])))
    core = load("bench_core.json")
    if core:
        for r in core["rows"]:
            if r["problem"] == "dln":
                rate = r["steps_per_s"]
                rows.append((f"(13) DLN 5x20 descent, N = {r['n_samples']}: vs before ({DLN_BEFORE:,})", ">= 10x",
                             f"{rate:,.0f} steps/s = {rate / DLN_BEFORE:.1f}x", rate >= 10 * DLN_BEFORE, rss(r)))
    losses = load("bench_losses.json")
    if losses:
        for loss, r in losses["rows"].items():
            o, p = r["gd"]["lcnrun"], r["gd"]["numpy"]
            x = o["steps_per_s"] / p["steps_per_s"]
            rows.append((f"(13) {loss} descent on (ii) vs numpy peer", ">= 2x",
                         f"{o['steps_per_s']:.1f} vs {p['steps_per_s']:.1f} steps/s = {x:.2f}x", x >= 2, rss(o, p)))
            o, p = r["flow"]["lcnrun"], r["flow"]["numpy"]
            x = p["seconds"] / o["seconds"]
            rows.append((f"(13) {loss} flow on (ii) vs numpy peer", ">= 2x",
                         f"{o['seconds']:.1f} vs {p['seconds']:.1f} s = {x:.2f}x", x >= 2, rss(o, p)))
            e, one = r["ensemble"]["ensemble"], r["ensemble"]["one_by_one"]
            x = e["member_steps_per_s"] / one["member_steps_per_s"]
            rows.append((f"(13) {loss}: 100 members vs one by one", ">= 10x",
                         f"{e['member_steps_per_s']:.1f} vs {one['member_steps_per_s']:.1f} member-steps/s = {x:.2f}x",
                         x >= 10, rss(e, one)))
    ens = load("bench_ensemble.json")
    if ens and "1000" in ens["ensemble"]:
        rate = ens["ensemble"]["1000"]["member_steps_per_s"]
        one = ens["one_by_one"]["member_steps_per_s"]
        prev = ens["previous"]["member_steps_per_s"]
        big = ens["ensemble"]["1000"]
        rows.append(("(2) 1000 members of (ii)", ">= 1,000,000 member-steps/s", f"{rate:,.0f}", rate >= 1e6, rss(big)))
        rows.append(("(2) vs one by one (single runs, same code)", ">= 50x", f"{rate / one:.1f}x", rate / one >= 50,
                     rss(big, ens["one_by_one"])))
        rows.append(("(2) vs one by one, previous implementation", "(>= 50x)", f"{rate / prev:,.0f}x", rate / prev >= 50,
                     rss(big, ens["previous"])))
        e = ens["end_to_end"]
        ratio = e["execute_each"]["seconds"] / e["execute_ensemble"]["seconds"]
        rows.append(("(2) end to end: 50 x execute vs execute_ensemble", "(>= 50x)", f"{ratio:.0f}x", ratio >= 50,
                     rss(e["execute_ensemble"], e["execute_each"])))
    sweep = load("bench_sweep.json")
    if sweep:
        o = sweep["overhead"]
        ms = o["sweep_j2_overhead_ms_per_run"]
        rows.append((f"(4) sweep -j 2 overhead per run, {o['runs']} runs", "< 20 ms", f"{ms:.1f} ms (all in)", ms < 20,
                     "-"))
    plots = load("bench_analysis.json")
    if plots:
        worst = max(plots["plot_lines_seconds"], plots["plot_heatmap_seconds"])
        rows.append((f"(14) lcnrun plot over {plots['files']:,} run files", f"< {plots['target_seconds']:g} s",
                     f"lines {plots['plot_lines_seconds']:.1f} s, heatmap {plots['plot_heatmap_seconds']:.1f} s",
                     worst < plots["target_seconds"], "-"))
    rows += cli_targets(load("bench_cli.json"))
    flows = load("bench_flows.json")
    if flows and flows.get("before_ms"):
        x = flows["before_ms"] / flows["per_run_ms"]
        rows.append(("(13) repeated-filters runs (LSODA to 1e5) vs before", ">= 3x",
                     f"{flows['per_run_ms']:.0f} vs {flows['before_ms']:.0f} ms CPU per run = {x:.2f}x", x >= 3, "-"))
    return rows


def cli_targets(cli: dict | None) -> list[tuple[str, str, str, bool | None, str]]:
    """Issue 13's command-line targets from bench_cli.json."""
    if not cli:
        return []
    rows = []
    for name in ("lcnrun --help", "lcnrun validate", "lcnrun status", "lcnrun summary --csv"):
        v = cli["startup"][name]
        rows.append((f"(13) start-up: {name}", "<= 2.5x import numpy, yaml",
                     f"{v['wall_ratio']:.2f}x wall, {v['cpu_ratio']:.2f}x cpu", v["cpu_ratio"] <= 2.5, "-"))
    if "dry_run" in cli:
        d = cli["dry_run"]
        rows.append((f"(13) sweep --dry-run, {d['points']:,} points", "< 10 s, < 300 MB",
                     f"{d['wall_s']:.1f} s ({d['cpu_s']:.1f} s cpu), {d['peak_rss_mb']:.0f} MiB",
                     d["points"] >= 100_000 and d["cpu_s"] < 10 and d["peak_rss_mb"] < 300, rss(d)))
    if "run_index" in cli:
        x = cli["run_index"]["completed"]
        rows.append(("(13) run --index 5 of 10,000 points, above start-up", "< 0.5 s",
                     f"+{x['above_startup_wall_s']:.2f} s wall, +{x['above_startup_cpu_s']:.2f} s cpu",
                     x["above_startup_cpu_s"] < 0.5, "-"))
    if "many_files" in cli:
        m = cli["many_files"]
        worst = max(m["status_next_s"], m["summary_csv_next_s"])
        rows.append((f"(13) status / summary --csv, {m['files']:,} run files", "< 5 s",
                     f"{m['status_next_s']:.2f} / {m['summary_csv_next_s']:.2f} s (first, merging "
                     f"{m.get('task_journals', 1)} tasks' journals as an index job does: "
                     f"{m['status_first_s']:.1f} / {m['summary_csv_first_s']:.1f} s)",
                     m["files"] >= 100_000 and worst < 5, "-"))
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
    print(f"{'target':<{width}}  {'required':>28s}  {'measured':<60s} {'peak RSS MiB':>14s}  verdict")
    for target, required, measured, met, peak in rows:
        verdict = {True: "met", False: "MISSED", None: "-"}[met]
        print(f"{target:<{width}}  {required:>28s}  {measured:<60s} {peak:>14s}  {verdict}")
    OUT.mkdir(exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(
        [{"target": t, "required": r, "measured": m, "met": ok, "peak_rss_mb": p} for t, r, m, ok, p in rows],
        indent=2) + "\n")
    print(f"wrote {(OUT / 'summary.json').relative_to(HERE.parent)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
