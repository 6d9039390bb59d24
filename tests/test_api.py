"""The Python API (lcnrun.open / Experiment / Run / lcnrun.run) against independent readings of the
same files: `lcnrun summary --csv` for the tables, h5py for trajectories and runs, the CLI's own
run for `lcnrun.run`; and `import lcnrun` stays free of the heavy libraries."""
from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

import lcnrun
from lcnrun.cli import app
from lcnrun.report.summary import QueryError

runner = CliRunner()

SPEC = """\
name: api
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 60}
record: {points: 10}
diagnostics: [parametrization_rank]
sweep:
  grid: {init.seed: [0, 1], model.strides: [[1, 1], [2, 1]], dynamics.lr: [0.01, 0.05]}
"""

ONE = """\
name: single
model: {kind: dense, widths: [3, 4, 2]}
data: {kind: gaussian, n_samples: 10, input_size: 3, seed: 2}
init: {kind: gaussian, scale: 0.5, seed: 3}
dynamics: {kind: gradient_flow, t_max: 2.0}
record: {points: 12}
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """An 8-run sweep (some diverge): (results folder, experiment folder, spec path)."""
    tmp = tmp_path_factory.mktemp("api")
    spec = tmp / "api.yaml"
    spec.write_text(SPEC)
    r = invoke("sweep", spec, "-j", "2", "--results", tmp / "results")
    assert r.exit_code in (0, 1), r.output
    return tmp / "results", tmp / "results" / "api", spec


def cli_csv(*args) -> tuple[list[str], list[list[str]]]:
    r = invoke("summary", *args, "--csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.output)))
    return rows[0], rows[1:]


def same(text: str, value) -> bool:
    """A CSV cell (the CLI's exact format) against a DataFrame value."""
    if text == "":  # the CSV writes a missing value and an empty text alike
        return value is None or value == "" or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, (list, tuple)):
        return json.loads(text) == list(value)
    if isinstance(value, (bool, np.bool_)):
        return text == ("true" if value else "false")
    if isinstance(value, (int, np.integer)):
        return int(text) == value
    if isinstance(value, (float, np.floating)):
        return float(text) == value or (math.isnan(float(text)) and math.isnan(value))
    return text == str(value)


@pytest.mark.parametrize("options", [
    {},
    {"filter": "status==completed", "sort": "final.loss"},
    {"group_by": "model.strides"},
    {"columns": "all"},
    {"filter": ["dynamics.lr<0.02", "init.seed!=1"], "columns": ["+final.n_steps", "+message"]},
])
def test_summary_equals_the_cli_csv_for_every_run(sweep, options):
    results, folder, spec = sweep
    args = []
    for f in [options["filter"]] if isinstance(options.get("filter"), str) else options.get("filter", []):
        args += ["--filter", f]
    if "sort" in options:
        args += ["--sort", options["sort"]]
    if "group_by" in options:
        args += ["--group-by", options["group_by"]]
    if "columns" in options:
        cols = options["columns"]
        args += ["--columns", cols if isinstance(cols, str) else ",".join(cols)]
    header, rows = cli_csv(folder, *args)
    df = lcnrun.open(folder).summary(**options)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == header
    assert len(df) == len(rows) > 0
    for i, row in enumerate(rows):
        for column, text in zip(header, row):
            assert same(text, df[column].iloc[i]), (i, column, text, df[column].iloc[i])


def test_open_by_spec_file_and_by_name_give_the_same_table(sweep, monkeypatch):
    results, folder, spec = sweep
    by_folder = lcnrun.open(folder).summary()
    pd.testing.assert_frame_equal(lcnrun.open(spec, results=results).summary(), by_folder)
    pd.testing.assert_frame_equal(lcnrun.open("api", results=results).summary(), by_folder)
    exp = lcnrun.open(folder)
    assert len(exp) == 8 and exp.root == folder
    assert sum(exp.status().values()) == 8


def test_trajectories_equal_what_h5py_reads(sweep):
    results, folder, spec = sweep
    exp = lcnrun.open(folder)
    df = exp.trajectories("loss", "grad_norm", "invariants", "params/layer_0")
    varying = ["init.seed", "model.strides", "dynamics.lr"]
    assert list(df.columns[:4]) == ["run_id", "t", "loss", "grad_norm"]
    assert list(df.columns[-3:]) == varying
    manifest = {m.run_id: m.overrides for m in exp.source.points}
    seen = set()
    for run_id, part in df.groupby("run_id", sort=False):
        seen.add(run_id)
        with h5py.File(folder / "runs" / f"{run_id}.h5", "r", locking=False) as f:
            traj = f["trajectory"]
            for name in ("t", "loss", "grad_norm"):
                np.testing.assert_array_equal(part[name].to_numpy(), traj[name][()])
            inv = traj["invariants"][()]
            for j in range(inv.shape[1]):
                np.testing.assert_array_equal(part[f"invariants[{j}]"].to_numpy(), inv[:, j])
            w0 = traj["params/layer_0"][()]
            for j in range(w0.shape[1]):
                np.testing.assert_array_equal(part[f"params/layer_0[{j}]"].to_numpy(), w0[:, j])
        for key in varying:
            value = manifest[run_id][key]
            assert set(part[key]) == {tuple(value) if isinstance(value, list) else value}
    assert seen == set(manifest)
    only = exp.trajectories("loss", filter="status==completed", keys=["final.loss"])
    assert list(only.columns) == ["run_id", "t", "loss", "final.loss"]
    completed = set(exp.summary(filter="status==completed")["run_id"])
    assert set(only["run_id"]) == completed


def test_run_reads_what_h5py_reads(sweep):
    results, folder, spec = sweep
    exp = lcnrun.open(folder)
    runs = exp.runs()
    assert [r.run_id for r in runs] == exp.run_ids
    run = exp.run(3)
    assert run.run_id == exp.run_ids[3] and exp.run(run.run_id).index == 3
    with h5py.File(run.path, "r", locking=False) as f:  # read first: HDF5 refuses a second
        h5 = {"status": f.attrs["status"],                # open of a file with other settings
              "spec": f["spec"].asstr()[()], "provenance": f["provenance"].asstr()[()],
              "loss": f["final"].attrs["loss"], "end_to_end": f["final/end_to_end"][()],
              "rank": dict(f["diagnostics/parametrization_rank"].attrs),
              "t": f["trajectory/t"][()], "traj_loss": f["trajectory/loss"][()],
              "params": {k: f[f"trajectory/params/{k}"][()] for k in f["trajectory/params"]}}
    assert run.status == h5["status"]
    assert run.spec == yaml.safe_load(h5["spec"])
    assert run.provenance == json.loads(h5["provenance"])
    assert run.final["loss"] == h5["loss"]
    np.testing.assert_array_equal(run.final["end_to_end"], h5["end_to_end"])
    assert h5["rank"]
    np.testing.assert_equal({k: run.diagnostics["parametrization_rank"][k] for k in h5["rank"]},
                            h5["rank"])
    ds = run.trajectory
    assert isinstance(ds, xr.Dataset)
    np.testing.assert_array_equal(ds["t"].to_numpy(), h5["t"])
    np.testing.assert_array_equal(ds["loss"].to_numpy(), h5["traj_loss"])
    assert sorted(h5["params"]) == ["layer_0", "layer_1"]
    for layer, values in h5["params"].items():
        np.testing.assert_array_equal(ds[layer].to_numpy(), values)
        assert ds[layer].dims[0] == "t"
    assert run.spec["model"]["strides"] == exp.source.points[3].overrides["model.strides"]
    diverged = exp.runs(filter="status==diverged")
    assert diverged and all(r.status == "diverged" and "exceeded" in r.message for r in diverged)


def test_lcnrun_run_writes_the_file_the_cli_writes(tmp_path, monkeypatch):
    spec = tmp_path / "single.yaml"
    spec.write_text(ONE)
    r = invoke("run", spec, "--results", tmp_path / "cli", "--quiet")
    assert r.exit_code == 0, r.output
    cli_file = Path(r.output.strip())
    from_text = lcnrun.run(ONE, results=tmp_path / "text")
    from_dict = lcnrun.run(yaml.safe_load(ONE), results=tmp_path / "dict")
    from_path = lcnrun.run(spec, results=tmp_path / "path")
    for run in (from_text, from_dict, from_path):
        assert run.run_id == cli_file.stem and run.status == "completed"
        assert run.path.relative_to(run.path.parents[2]) == cli_file.relative_to(cli_file.parents[2])
        r = invoke("diff", cli_file, run.path, "--rtol", "0", "--atol", "0")
        assert r.exit_code == 0, r.output
        assert "bitwise identical" in r.output
        assert (run.path.parents[1] / "manifest.tsv").read_text() == \
            (cli_file.parents[1] / "manifest.tsv").read_text()
    assert (from_text.path.parents[1] / "experiment.yaml").read_text() == ONE
    mtime = from_text.path.stat().st_mtime_ns
    assert lcnrun.run(ONE, results=tmp_path / "text").path.stat().st_mtime_ns == mtime  # kept


def test_lcnrun_run_of_a_sweep_needs_an_index(tmp_path):
    with pytest.raises(ValueError, match="8 sweep points"):
        lcnrun.run(SPEC, results=tmp_path)
    run = lcnrun.run(SPEC, index=2, results=tmp_path)
    points = lcnrun.open(tmp_path / "api").source.points
    assert run.run_id == points[2].run_id and run.index == 2


def test_errors_are_clear(sweep, tmp_path):
    results, folder, spec = sweep
    exp = lcnrun.open(folder)
    with pytest.raises(QueryError, match="did you mean final.loss"):
        exp.summary(filter="final.los<1")
    with pytest.raises(QueryError, match="did you mean loss"):
        exp.trajectories("lss")
    with pytest.raises(KeyError, match="sweep points 0..7"):
        exp.run(8)
    with pytest.raises(KeyError, match="no run of this experiment"):
        exp.run("000000000000")
    with pytest.raises(ValueError, match="no such experiment"):
        lcnrun.open(tmp_path / "nothing")
    from lcnrun.spec import SpecError
    with pytest.raises(SpecError, match="model"):
        lcnrun.run("name: x\nmodel: {kind: nope}\n", results=tmp_path)
    assert not (tmp_path / "x").exists()


def test_import_lcnrun_is_cheap():
    heavy = ["pandas", "scipy", "numba", "h5py", "matplotlib", "xarray", "numpy"]
    code = ("import sys, lcnrun; lcnrun.open; lcnrun.Run; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
