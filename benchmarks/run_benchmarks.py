"""`make bench`: every benchmark script in this folder, one after another (tables on stdout, JSON
under benchmarks/out/), then one summary table of the speed targets (benchmarks/out/summary.json).
Speed targets live here, never in timed unit tests.

Scripts: bench_torch.py (single-run gradient descent against the PyTorch peer), bench_core.py
(single-run steps/s against N, compile cost), bench_losses.py (separable losses against the
numpy BLAS peer: descent, flow, ensembles, the memory-bandwidth limit), bench_ensemble.py
(ensembles, gradient flow), bench_sweep.py (sweep overhead, reading 10,000 run files). Every row
of the targets table carries the peak RSS of the process(es) it was measured in (ours / peer's). ``--quick`` passes ``--quick`` to the
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
SCRIPTS = ["bench_torch.py", "bench_core.py", "bench_losses.py", "bench_ensemble.py", "bench_sweep.py"]
QUICK = {"bench_ensemble.py", "bench_sweep.py", "bench_losses.py"}
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
