"""Start-up of the CLI is a matter of structure: what a verb imports. ``lcnrun --help``,
``validate``, ``status`` and ``summary`` must not import the libraries only other verbs use
(scipy, numba, matplotlib, pandas; h5py where the run index answers; pydantic, which typer 0.29
pulls into every command). ``--help`` loads no numpy and no layer below the CLI at all (every verb
module imports what its verb uses inside the verb), and ``validate`` writing to a file or a pipe
does not load rich. Each case runs in a fresh interpreter and reads ``sys.modules`` after the
command; the speed itself is measured in benchmarks/bench_cli.py, never here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("scipy", "numba", "matplotlib", "h5py", "pandas", "pydantic")

PROBE = """
import json, sys
from lcnrun.cli import main
sys.argv = ["lcnrun", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
loaded = sorted({m.split('.')[0] for m in sys.modules})
sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""

SPEC = """\
name: startup
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 12, seed: 0}
dynamics: {kind: gradient_flow, t_max: 1.0}
diagnostics: [critical_points]
sweep:
  grid: {init.seed: [0, 1, 2]}
"""


def loaded_by(args: list[str], cwd: Path, full: bool = False) -> tuple[int, set[str]]:
    """Exit code and the top-level packages (``full``: every module) loaded by ``lcnrun ARGS``
    in a fresh interpreter, its output not a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    out = subprocess.run([sys.executable, "-c", PROBE.replace("m.split('.')[0]", "m") if full else PROBE,
                          json.dumps(args)], capture_output=True, text=True, cwd=cwd, timeout=300, env=env)
    line = [x for x in out.stderr.splitlines() if x.startswith("MODULES ")]
    assert line, out.stderr
    doc = json.loads(line[-1][len("MODULES "):])
    return doc["code"], set(doc["loaded"])


def test_probe_sees_what_a_verb_imports(tmp_path):
    """The probe itself: a verb that computes (``run`` of a flow) does load scipy and h5py, so
    their absence below means something."""
    spec = tmp_path / "one.yaml"
    spec.write_text(SPEC.replace("sweep:\n  grid: {init.seed: [0, 1, 2]}\n", "")
                    .replace("diagnostics: [critical_points]\n", ""))
    code, loaded = loaded_by(["run", str(spec), "--results", str(tmp_path / "results"), "-q"], tmp_path)
    assert code == 0
    assert {"scipy", "h5py"} <= loaded


@pytest.mark.parametrize("args", [["--help"], ["validate", "SPEC"], ["status", "--help"],
                                  ["summary", "--help"], ["sweep", "--help"]])
def test_light_verbs_import_no_heavy_library(tmp_path, args):
    spec = tmp_path / "startup.yaml"
    spec.write_text(SPEC)
    code, loaded = loaded_by([str(spec) if a == "SPEC" else a for a in args], tmp_path)
    assert code == 0
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_loads_no_layer_below_the_cli(tmp_path):
    """``lcnrun --help`` builds the help of every verb from the verb modules alone: no numpy, no
    YAML, nothing of lcnrun outside ``lcnrun.cli`` but the diff's default tolerances."""
    code, loaded = loaded_by(["--help"], tmp_path, full=True)
    assert code == 0
    assert "lcnrun.cli.sweep" in loaded and "lcnrun.cli.report" in loaded  # the probe sees the verbs
    assert not {"numpy", "yaml"} & loaded, sorted({"numpy", "yaml"} & loaded)
    below = sorted(m for m in loaded if m.startswith("lcnrun.") and not m.startswith("lcnrun.cli")
                   and m not in ("lcnrun.report", "lcnrun.report.tolerance"))
    assert not below, below


def test_validate_to_a_pipe_needs_no_rich(tmp_path):
    """``validate`` prints one line: to a file or a pipe (no colour there) it is written without
    rich; a bad spec still ends with its message and exit code 2."""
    spec = tmp_path / "startup.yaml"
    spec.write_text(SPEC)
    code, loaded = loaded_by(["validate", str(spec)], tmp_path)
    assert code == 0
    assert "rich" not in loaded and "lcnrun" in loaded
    spec.write_text(SPEC.replace("t_max: 1.0", "t_max: -1.0"))
    code, _ = loaded_by(["validate", str(spec)], tmp_path)
    assert code == 2


def test_status_and_summary_answered_by_the_index_need_no_hdf5(tmp_path):
    """Run files written through the store are journaled in the run index: ``status`` and
    ``summary`` then read the index, not the HDF5 files (h5py is not even imported)."""
    from lcnrun.store import RunRecord, write_run
    from lcnrun.store.experiment import ExperimentDir

    xdir = ExperimentDir(tmp_path / "results" / "idx").create()
    for i, status in enumerate(("completed", "failed")):
        write_run(xdir.run_path(f"run{i}"), RunRecord(f"run{i}", status, f"name: idx\ninit:\n  seed: {i}\n",
                                                      final_attrs={"loss": 0.5 * i}), fsync=False)
    xdir.write_manifest([(0, "run0", {"init.seed": 0}), (1, "run1", {"init.seed": 1})])
    for args in (["status", str(xdir.root)], ["summary", str(xdir.root), "--csv"]):
        code, loaded = loaded_by(args, tmp_path)
        assert code == 0
        assert not loaded & set(HEAVY), (args, sorted(loaded & set(HEAVY)))
