"""``lcnrun.core`` is numpy/scipy only: importing every module under it (in a fresh interpreter)
must not pull in the CLI, terminal, YAML or HDF5 libraries, nor the layers above the core."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ["typer", "rich", "yaml", "h5py", "click", "matplotlib",
             "lcnrun.spec", "lcnrun.store", "lcnrun.cli", "lcnrun.runner", "lcnrun.schedule", "lcnrun.report"]

SCRIPT = """
import importlib, json, pkgutil, sys
import numba  # the compiled kernels' dependency: what it imports itself (it reads an optional
third_party = set(sys.modules)  # YAML config file) is not the core's doing
import lcnrun.core
names = ["lcnrun.core"] + [m.name for m in pkgutil.walk_packages(lcnrun.core.__path__, "lcnrun.core.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(set(sys.modules) - third_party)}))
"""


def test_core_imports_no_ui_storage_or_upper_layers():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"lcnrun.core.models", "lcnrun.core.dynamics", "lcnrun.core.losses"} <= set(result["imported"])
    loaded = set(result["modules"])
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"lcnrun.core pulled in {bad}"
