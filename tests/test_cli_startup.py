"""Start-up of the CLI is a matter of structure: what a verb imports. ``lcnrun --help``,
``validate``, ``status`` and ``summary`` must not import the libraries only other verbs use
(scipy, numba, matplotlib; h5py where the run index answers; pydantic, which typer 0.29 pulls
into every command). Each case runs in a fresh interpreter and reads ``sys.modules`` after the
command; the speed itself is measured in benchmarks/bench_cli.py, never here.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("scipy", "numba", "matplotlib", "h5py", "pydantic")

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
loaded = sorted({m.split(".")[0] for m in sys.modules})
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


def loaded_by(args: list[str], cwd: Path) -> tuple[int, set[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                         text=True, cwd=cwd, timeout=300)
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
