"""`make bench`: every benchmark script in this folder, one after another (tables on stdout,
JSON under benchmarks/out/). Speed targets live here, never in timed unit tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["bench_core.py", "bench_sweep.py"]


def main() -> int:
    code = 0
    for name in SCRIPTS:
        path = HERE / name
        if not path.exists():
            continue
        print(f"\n== {name} ==", flush=True)
        code |= subprocess.call([sys.executable, str(path)])
    return code


if __name__ == "__main__":
    sys.exit(main())
