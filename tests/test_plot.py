"""`lcnrun plot`: what is drawn against numpy over the run files read with h5py (medians, thin
lines, heatmap means and counts), the axis defaults, that only attributes and the drawn series are
read, the output files and the error messages; and examples/analysis.py run as a user would."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from typer.testing import CliRunner

from lcnrun.cli import app
from lcnrun.report.plots import heatmap, line_plot
from lcnrun.report.source import open_experiment

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: plots
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 80}
record: {points: 12, spacing: SPACING}
sweep:
  grid: {model.strides: [[1, 1], [2, 1]], init.scale: [0.1, 0.5], init.seed: [0, 1, 2]}
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def make(tmp: Path, spacing: str) -> Path:
    spec = tmp / f"plots-{spacing}.yaml"
    spec.write_text(SPEC.replace("SPACING", spacing).replace("name: plots", f"name: plots-{spacing}"))
    r = invoke("sweep", spec, "-j", "2", "--results", tmp / "results")
    assert r.exit_code == 0, r.output
    return tmp / "results" / f"plots-{spacing}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make(tmp_path_factory.mktemp("plots"), "log")


def h5_runs(folder: Path) -> list[dict]:
    """Every run of the folder as h5py reads it: overrides, t, loss, final loss."""
    import json  # noqa: PLC0415
    out = []
    for line in (folder / "manifest.tsv").read_text().splitlines()[1:]:
        index, run_id, overrides = line.split("\t")
        with h5py.File(folder / "runs" / f"{run_id}.h5", "r", locking=False) as f:
            out.append({"run_id": run_id, **json.loads(overrides), "t": f["trajectory/t"][()],
                        "loss": f["trajectory/loss"][()], "final.loss": f["final"].attrs["loss"]})
    return out


def test_medians_and_thin_lines_are_those_of_the_runs(folder):
    fig = line_plot(open_experiment(folder), "loss", color="init.scale", facet="model.strides")
    runs = h5_runs(folder)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["model.strides = [1,1]", "model.strides = [2,1]"]
    for ax, strides in zip(axes, ([1, 1], [2, 1])):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        thin = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert sum(len(c.get_segments()) for c in thin) == 6
        for scale in (0.1, 0.5):
            members = [r for r in runs if r["model.strides"] == strides and r["init.scale"] == scale]
            (line,) = [ln for ln in ax.get_lines() if ln.get_label() == f"{scale:g} (n=3)"]
            np.testing.assert_array_equal(line.get_xdata(), members[0]["t"])
            np.testing.assert_allclose(line.get_ydata(),
                                       np.median([m["loss"] for m in members], axis=0), rtol=1e-12)


def test_heatmap_cells_are_means_with_counts(folder):
    fig = heatmap(open_experiment(folder), "final.loss", "model.strides", "init.scale")
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    runs = h5_runs(folder)
    for i, scale in enumerate((0.1, 0.5)):
        for j, strides in enumerate(([1, 1], [2, 1])):
            values = [r["final.loss"] for r in runs if r["init.scale"] == scale
                      and r["model.strides"] == strides]
            assert image[i, j] == pytest.approx(np.mean(values), rel=1e-12)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 4 and all(t.endswith("n=3") for t in texts)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["[1,1]", "[2,1]"]


def test_linear_record_grid_gives_a_linear_time_axis(tmp_path):
    fig = line_plot(open_experiment(make(tmp_path, "linear")), "grad_norm")
    assert fig.axes[0].get_xscale() == "linear"
    fig = line_plot(open_experiment(make(tmp_path, "linear")), "grad_norm", logx=True, logy=False)
    assert (fig.axes[0].get_xscale(), fig.axes[0].get_yscale()) == ("log", "linear")


def test_plot_reads_only_attributes_and_the_drawn_series(folder, monkeypatch):
    import lcnrun.store.runfile as runfile  # noqa: PLC0415

    def refuse(*args, **kwargs):
        raise AssertionError("a plot must not read whole run files")

    monkeypatch.setattr(runfile, "read_run", refuse)
    read = []
    import lcnrun.report.trajectories as trajectories  # noqa: PLC0415
    original = trajectories.read_series
    monkeypatch.setattr(trajectories, "read_series",
                        lambda path, keys, **kw: read.append(tuple(keys)) or original(path, keys, **kw))
    line_plot(open_experiment(folder), "invariants[0]", color="init.scale", processes=1)
    assert read == [("t", "invariants")] * 12
    read.clear()
    line_plot(open_experiment(folder), "loss", color="init.scale", processes=1)
    assert read == []  # the run index keeps t, loss and grad_norm of every run


@pytest.mark.parametrize("index", ["current", "deleted"])
def test_plot_opens_each_run_file_once(folder, tmp_path, monkeypatch, index):
    """With a current index only the series are read (one open per file; none for the loss,
    which the index keeps); without one, the attributes and the series are read in the same
    open. The heatmap opens no file at all when the index is current. Counted: the opens of
    run files by the fast reader."""
    import shutil  # noqa: PLC0415

    import lcnrun.store.runfile as runfile  # noqa: PLC0415

    copy = tmp_path / "results" / folder.name
    shutil.copytree(folder, copy)
    if index == "deleted":
        shutil.rmtree(copy / ".index")
    opened = []
    original = runfile._open_fast
    monkeypatch.setattr(runfile, "_open_fast", lambda path: opened.append(Path(path).name) or original(path))
    fig = line_plot(open_experiment(copy), "invariants[0]", color="init.scale", processes=1)
    names = sorted(p.name for p in (copy / "runs").glob("*.h5"))
    assert sorted(opened) == names  # each file once
    assert sum(len(c.get_segments()) for ax in fig.axes for c in ax.collections
               if isinstance(c, LineCollection)) == 12
    opened.clear()
    loss = line_plot(open_experiment(copy), "loss", color="init.scale", processes=1)
    assert opened == []  # kept by the index (current now in both cases)
    for ax, ax0 in zip(loss.axes, line_plot(open_experiment(folder), "loss", color="init.scale",
                                            processes=1).axes):
        assert [l.get_xydata().tolist() for l in ax.lines] == [l.get_xydata().tolist() for l in ax0.lines]
    heatmap(open_experiment(copy), "final.loss", "init.scale", "init.seed", processes=1)
    assert opened == []  # the index (current now in both cases) answers


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_cli_writes_png_and_pdf_and_says_where(folder, tmp_path, suffix, magic):
    out = tmp_path / f"loss{suffix}"
    r = invoke("plot", folder, "--y", "loss", "--color", "init.scale", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"wrote {out}"
    assert out.read_bytes()[:4] == magic
    r = invoke("plot", folder, "--heatmap", "final.loss", "--x", "model.strides", "--y",
               "init.scale")
    assert r.exit_code == 0, r.output
    path = Path(r.output.strip().removeprefix("wrote "))
    assert path.parent == folder / "plots" and path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--y", "lss"], r"no run has a trajectory series 'lss' \(did you mean loss\?\)"),
    (["--y", "loss", "--color", "init.scael"], r"--color: no run has a key 'init.scael' "
                                                r"\(did you mean init.scale"),
    (["--y", "end_to_end"], r"end_to_end has \(4,\) values per stored time: pick one"),
    (["--y", "loss", "-o", "x.svg"], r"must end in .png or .pdf"),
    (["--heatmap", "final.loss", "--x", "init.scale"], r"--heatmap needs the two keys"),
    (["--y", "loss", "--filter", "final.loss<-1"], r"no run passes the filters"),
])
def test_cli_errors_are_one_line_and_exit_2(folder, args, message):
    r = invoke("plot", folder, *args)
    assert r.exit_code == 2, r.output
    assert re.search(message, r.output), r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_the_example_analysis_runs(tmp_path):
    """examples/analysis.py end to end, checked against the run files it leaves."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "analysis.py"), "--results",
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "example-strides"
    runs = h5_runs(folder)
    ran = re.findall(r"^#(\d+) (\w+) (\w+)$", proc.stdout, re.M)
    assert [(int(i), rid) for i, rid, _ in ran] == list(enumerate(r["run_id"] for r in runs))
    best = min(runs, key=lambda r: r["final.loss"])
    assert f"lowest final loss: run {best['run_id']} " in proc.stdout
    written = re.findall(r"^wrote (.+)$", proc.stdout, re.M)
    assert len(written) == 4 and all(Path(p).stat().st_size > 1000 for p in written)
    assert written[-1] == str(folder / "report.html")
