"""`lcnrun validate` and `lcnrun run` through typer's CliRunner: exit codes, messages, the run file."""
from __future__ import annotations

import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from lcnrun.cli import app

runner = CliRunner()

GOOD = """\
name: tiny
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 16, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 50}
record: {points: 10, spacing: linear}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_validate_ok(tmp_path):
    r = invoke("validate", write(tmp_path, GOOD))
    assert r.exit_code == 0, r.output
    assert "valid" in r.output and "tiny" in r.output


def test_run_writes_every_dataset_of_the_contract(tmp_path):
    spec = write(tmp_path, GOOD)
    r = invoke("run", spec, "--results", tmp_path / "results")
    assert r.exit_code == 0, r.output
    files = list((tmp_path / "results" / "tiny" / "runs").glob("*.h5"))
    assert len(files) == 1
    assert (tmp_path / "results" / "tiny" / "experiment.yaml").read_text() == spec.read_text()
    manifest = (tmp_path / "results" / "tiny" / "manifest.tsv").read_text().splitlines()
    assert manifest[0].split("\t") == ["index", "run_id", "overrides"]
    assert manifest[1].split("\t")[1] == files[0].stem
    with h5py.File(files[0], "r") as f:
        for key in ("format", "format_version", "run_id", "status", "lcnrun_version"):
            assert key in f.attrs, key
        assert f.attrs["format"] == "lcnrun-run"
        assert f.attrs["status"] == "completed"
        assert f.attrs["run_id"] == files[0].stem
        for name in ("spec", "provenance", "trajectory/t", "trajectory/loss", "trajectory/grad_norm",
                     "trajectory/end_to_end", "trajectory/params/layer_0", "trajectory/params/layer_1",
                     "trajectory/invariants", "final"):
            assert name in f, name
        for key in ("loss", "grad_norm", "t"):
            assert key in f["final"].attrs, key
        t = f["trajectory/t"][()]
        # 50 steps of lr 0.01, 10 linear points: t = 0 .. 0.5
        assert t[0] == 0 and np.isclose(t[-1], 0.5) and len(t) == 10
        assert f["trajectory/end_to_end"].shape == (10, 5)  # k = 1 + (3-1)*1 + (2-1)*2
        spec_back = yaml.safe_load(f["spec"][()].decode() if isinstance(f["spec"][()], bytes) else f["spec"][()])
        assert spec_back["dynamics"]["lr"] == 0.01
    # same spec again: skipped, same file untouched
    mtime = files[0].stat().st_mtime_ns
    r = invoke("run", spec, "--results", tmp_path / "results")
    assert r.exit_code == 0 and "already completed" in r.output
    assert files[0].stat().st_mtime_ns == mtime


BAD = [
    ("unknown top-level key", "modle: {kind: lcn}\n", "modle"),
    ("strides entry zero", GOOD.replace("strides: [2, 1]", "strides: [2, 0]"), "model.strides[1]"),
    ("strides length", GOOD.replace("strides: [2, 1]", "strides: [2, 1, 1]"), "model.strides"),
    ("unknown model kind", GOOD.replace("kind: lcn", "kind: lcnn"), "model.kind"),
    ("filter longer than input", GOOD.replace("input_size: 16", "input_size: 2"), "model.filters[0]"),
    ("string for float", GOOD.replace("lr: 0.01", "lr: fast"), "dynamics.lr"),
    ("negative lr", GOOD.replace("lr: 0.01", "lr: -0.01"), "dynamics.lr"),
    ("bool for int", GOOD.replace("steps: 50", "steps: true"), "dynamics.steps"),
    ("missing steps", GOOD.replace(", steps: 50", ""), "dynamics.steps"),
    ("unknown solver method", GOOD.replace("{kind: gradient_descent, lr: 0.01, steps: 50}",
                                           "{kind: gradient_flow, t_max: 1.0, method: RK99}"), "dynamics.method"),
    ("missing data file", GOOD.replace("{kind: gaussian, n_samples: 8, input_size: 16, noise: 0.01, seed: 0}",
                                       "{kind: file, path: nothere.npz}"), "data.path"),
    ("explicit init of wrong shape", GOOD.replace("{kind: gaussian, scale: 0.3, seed: 1}",
                                                  "{kind: explicit, layers: [[1, 2], [1, 2]]}"), "init.layers"),
    ("unknown record spacing", GOOD.replace("spacing: linear", "spacing: cubic"), "record.spacing"),
    ("teacher output mismatch", GOOD.replace("noise: 0.01", "noise: 0.01, target: {kind: teacher, "
                                             "model: {kind: lcn, filters: [2], strides: [1]}}"), "data.target.model"),
    ("zip of different lengths", GOOD + "sweep:\n  zip: {init.seed: [1, 2], dynamics.lr: [0.1]}\n", "sweep.zip"),
    ("yaml syntax", GOOD.replace("model: {", "model: {{"), "spec.yaml"),
]


@pytest.mark.parametrize("what,text,key", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_exit_2_naming_the_key(tmp_path, what, text, key):
    spec = write(tmp_path, text)
    for verb in ("validate", "run"):
        r = invoke(verb, spec, *(("--results", tmp_path / "results") if verb == "run" else ()))
        assert r.exit_code == 2, (what, r.output)
        assert key in r.output, (what, r.output)
        assert "Traceback" not in r.output
        assert f"{spec}:" in r.output or "spec.yaml" in r.output
    # never a result file for a bad spec
    assert not list((tmp_path / "results").rglob("*.h5")) if (tmp_path / "results").exists() else True


def test_missing_spec_file_exit_2(tmp_path):
    r = invoke("run", tmp_path / "nope.yaml")
    assert r.exit_code == 2 and "nope.yaml" in r.output and "Traceback" not in r.output


def test_sweep_spec_needs_index(tmp_path):
    spec = write(tmp_path, GOOD + "sweep:\n  grid: {init.seed: [1, 2, 3]}\n")
    r = invoke("run", spec, "--results", tmp_path / "r")
    assert r.exit_code == 2 and "--index" in r.output
    r = invoke("run", spec, "--index", 7, "--results", tmp_path / "r")
    assert r.exit_code == 2 and "out of range" in r.output
    r = invoke("run", spec, "--index", 2, "--results", tmp_path / "r")
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "r" / "tiny" / "manifest.tsv").read_text().splitlines()[1:]
    assert len(rows) == 3
    run_id = rows[2].split("\t")[1]
    assert (tmp_path / "r" / "tiny" / "runs" / f"{run_id}.h5").exists()
    assert len(list((tmp_path / "r" / "tiny" / "runs").glob("*.h5"))) == 1


def test_diverging_run_is_recorded_and_exits_1(tmp_path):
    spec = write(tmp_path, GOOD.replace("lr: 0.01", "lr: 50.0"))
    r = invoke("run", spec, "--results", tmp_path / "r")
    assert r.exit_code == 1, r.output
    assert "diverged" in r.output
    (f,) = (tmp_path / "r" / "tiny" / "runs").glob("*.h5")
    with h5py.File(f, "r") as h:
        assert h.attrs["status"] == "diverged"
        assert len(h["trajectory/t"]) >= 1
        assert "exceeded" in h.attrs["message"] or "non-finite" in h.attrs["message"]


def test_run_is_bitwise_reproducible(tmp_path):
    spec = write(tmp_path, GOOD)
    for out in ("a", "b"):
        assert invoke("run", spec, "--results", tmp_path / out).exit_code == 0
    (fa,) = (tmp_path / "a" / "tiny" / "runs").glob("*.h5")
    (fb,) = (tmp_path / "b" / "tiny" / "runs").glob("*.h5")
    assert fa.name == fb.name
    with h5py.File(fa, "r") as a, h5py.File(fb, "r") as b:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name != "provenance":
                assert np.array_equal(obj[()], b[name][()]), name
        a.visititems(visit)
