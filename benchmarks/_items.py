"""Helpers of the benchmark scripts: run one item in a fresh subprocess (its peak RSS is its own),
best-of-repeats timing, machine description."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best_time(fn, repeats: int) -> float:
    """The smallest wall time of ``repeats`` calls of ``fn`` (the machine is shared: the best run is
    the one least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_item(script: Path, *args: str, timeout: float = 3600) -> dict:
    """Run ``script --item ARGS`` in a fresh interpreter; it prints one JSON object as its last line."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, str(script), "--item", *args], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd=str(REPO))
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} --item {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def emit(result: dict) -> None:
    """What an item prints: its result plus its peak RSS."""
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def machine() -> dict:
    return {"host": platform.node(), "python": platform.python_version(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average": list(os.getloadavg()), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_json(name: str, doc: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
