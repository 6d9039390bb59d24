"""`lcnrun status` and `lcnrun summary`: rows and columns, filters, sorting, grouping, formats,
errors; the status seam for schedulers; the fast spec flattening against a full YAML parse."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from lcnrun.cli import app
from lcnrun.report.source import flatten, flatten_spec_text, open_experiment, read_runs
from lcnrun.report.status import experiment_status
from lcnrun.report.summary import FIGURES, QueryError, load_runs, parse_filter, summarize, summary_table
from lcnrun.store.claims import try_claim
from lcnrun.store import RunRecord, write_run
from lcnrun.store.experiment import ExperimentDir

runner = CliRunner()

SPEC = """\
name: grid
description: |
  A 3 x 2 x 2 grid.
  Second line of the description.
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 60}
record: {points: 10}
sweep:
  grid: {init.seed: [0, 1, 2], model.strides: [[1, 1], [2, 1]], data.noise: [0.0, 0.1]}
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A swept experiment of 12 completed runs: (spec path, results folder, experiment folder)."""
    tmp = tmp_path_factory.mktemp("summary")
    spec = tmp / "grid.yaml"
    spec.write_text(SPEC)
    r = invoke("sweep", spec, "-j", "2", "--results", tmp / "results")
    assert r.exit_code == 0, r.output
    return spec, tmp / "results", ExperimentDir(tmp / "results" / "grid")


def read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def summary_csv(folder, *args) -> tuple[list[str], list[dict[str, str]]]:
    r = invoke("summary", folder, "--csv", *args)
    assert r.exit_code == 0, r.output
    return read_csv(r.output)


# -- rows and columns ------------------------------------------------------------------------------
def test_csv_has_one_row_per_run_and_the_varying_columns(experiment):
    spec, results, xdir = experiment
    header, rows = summary_csv(xdir.root)
    assert header == ["index", "run_id", "init.seed", "model.strides", "data.noise", "status", *FIGURES]
    manifest = xdir.read_manifest()
    assert [r["run_id"] for r in rows] == [m.run_id for m in manifest]
    assert [int(r["index"]) for r in rows] == list(range(12))
    for row, m in zip(rows, manifest):
        assert int(row["init.seed"]) == m.overrides["init.seed"]
        assert json.loads(row["model.strides"]) == m.overrides["model.strides"]
        assert float(row["data.noise"]) == m.overrides["data.noise"]
        assert row["status"] == "completed"
        with h5py.File(xdir.run_path(m.run_id), "r") as f:  # the figures, read independently
            for fig in FIGURES:
                assert float(row[fig]) == float(f["final"].attrs[fig.split(".", 1)[1]])  # full precision
    # the spec file names the same experiment
    assert summary_csv(spec, "--results", results) == (header, rows)


def test_filters_select_rows_and_keep_the_columns(experiment):
    _, _, xdir = experiment
    every_header, every = summary_csv(xdir.root)
    header, rows = summary_csv(xdir.root, "--filter", "model.strides==[2,1]")
    assert header == every_header  # the columns do not depend on the filters
    assert rows == [r for r in every if r["model.strides"] == "[2,1]"] and len(rows) == 6
    header, rows = summary_csv(xdir.root, "-f", "model.strides == [2, 1]", "-f", "data.noise>0")
    assert rows == [r for r in every if r["model.strides"] == "[2,1]" and r["data.noise"] == "0.1"]
    assert len(rows) == 3
    losses = sorted(float(r["final.loss"]) for r in every)
    cut = losses[5]
    _, low = summary_csv(xdir.root, "--filter", f"final.loss<{cut!r}")
    assert len(low) == 5 and all(float(r["final.loss"]) < cut for r in low)
    _, low_eq = summary_csv(xdir.root, "--filter", f"final.loss<={cut!r}")
    assert len(low_eq) == 6
    _, none = summary_csv(xdir.root, "--filter", "status!=completed")
    assert none == []
    _, seeds = summary_csv(xdir.root, "--filter", "init.seed=1")  # '=' is '=='
    assert {r["init.seed"] for r in seeds} == {"1"} and len(seeds) == 4


def test_sorting(experiment):
    _, _, xdir = experiment
    _, rows = summary_csv(xdir.root, "--sort", "final.loss")
    losses = [float(r["final.loss"]) for r in rows]
    assert losses == sorted(losses)
    _, rows = summary_csv(xdir.root, "--sort", "final.loss", "--reverse")
    assert [float(r["final.loss"]) for r in rows] == sorted(losses, reverse=True)
    _, rows = summary_csv(xdir.root, "--sort", "data.noise,init.seed")
    keys = [(float(r["data.noise"]), int(r["init.seed"])) for r in rows]
    assert keys == sorted(keys)


def test_group_by_aggregates_over_seeds(experiment):
    _, _, xdir = experiment
    _, every = summary_csv(xdir.root)
    header, groups = summary_csv(xdir.root, "--group-by", "model.strides", "-g", "data.noise")
    assert header[:4] == ["model.strides", "data.noise", "runs", "completed"]
    assert header[4:9] == [f"final.loss.{s}" for s in ("mean", "std", "min", "max", "count")]
    assert len(groups) == 4
    for g in groups:
        members = [r for r in every if r["model.strides"] == g["model.strides"]
                   and r["data.noise"] == g["data.noise"]]
        assert int(g["runs"]) == len(members) == 3 and int(g["completed"]) == 3
        for fig in FIGURES:
            x = np.array([float(m[fig]) for m in members])
            assert float(g[f"{fig}.mean"]) == pytest.approx(x.mean(), rel=1e-12, abs=1e-300)
            assert float(g[f"{fig}.std"]) == pytest.approx(x.std(ddof=1), rel=1e-9, abs=1e-15)
            assert float(g[f"{fig}.min"]) == x.min() and float(g[f"{fig}.max"]) == x.max()
            assert int(g[f"{fig}.count"]) == 3
    r = invoke("summary", xdir.root, "-g", "model.strides")  # the rich table
    assert r.exit_code == 0 and "mean ± std" in r.output and "2 groups" in r.output


def test_formats(experiment):
    _, _, xdir = experiment
    header, rows = summary_csv(xdir.root)
    r = invoke("summary", xdir.root, "--json")
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert [d["run_id"] for d in doc] == [row["run_id"] for row in rows]
    assert list(doc[0]) == header and doc[3]["model.strides"] == json.loads(rows[3]["model.strides"])
    assert doc[3]["final.loss"] == float(rows[3]["final.loss"])
    r = invoke("summary", xdir.root, "--md")
    lines = r.output.strip().splitlines()
    assert lines[0] == "| " + " | ".join(header) + " |" and len(lines) == 2 + 12
    assert set(lines[1]) <= set("|-:")
    r = invoke("summary", xdir.root)
    assert r.exit_code == 0 and all(row["run_id"] in r.output for row in rows)
    assert "the same in every run" in r.output and "dynamics.lr=0.01" in r.output
    r = invoke("summary", xdir.root, "--columns", "init.seed,final.loss", "--csv")
    assert read_csv(r.output)[0] == ["run_id", "init.seed", "final.loss"]
    r = invoke("summary", xdir.root, "--columns", "+final.n_steps,+message", "--csv")
    assert r.exit_code == 0 and read_csv(r.output)[0][-1] == "message"
    assert invoke("summary", xdir.root, "--csv", "--json").exit_code == 2


@pytest.mark.parametrize("args, fragment", [
    (["--filter", "modle.strides==[2,1]"], "did you mean model.strides"),
    (["--filter", "model.strides"], "expected KEY==VALUE"),
    (["--filter", "status<3"], "cannot order"),
    (["--sort", "final.los"], "did you mean final.loss"),
    (["--group-by", "init.sed"], "did you mean init.seed"),
    (["--columns", "nope"], "no run has a key 'nope'"),
])
def test_bad_queries_exit_2(experiment, args, fragment):
    _, _, xdir = experiment
    r = invoke("summary", xdir.root, *args)
    assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output


def test_bad_folders_exit_2(tmp_path, experiment):
    _, _, xdir = experiment
    assert "no such experiment" in invoke("summary", tmp_path / "nope").output
    (tmp_path / "empty").mkdir()
    for verb in ("summary", "status"):
        r = invoke(verb, tmp_path / "empty")
        assert r.exit_code == 2 and "not an experiment folder" in r.output
        r = invoke(verb, xdir.manifest_tsv)
        assert r.exit_code == 2 and "not a file" in r.output
    # an experiment name relative to --results
    r = invoke("status", "grid", "--results", xdir.root.parent)
    assert r.exit_code == 0 and "completed" in r.output


# -- status ----------------------------------------------------------------------------------------
def test_status_counts_every_state(tmp_path, monkeypatch):
    spec = tmp_path / "mixed.yaml"
    spec.write_text(SPEC.replace("name: grid", "name: mixed").replace(
        "grid: {init.seed: [0, 1, 2], model.strides: [[1, 1], [2, 1]], data.noise: [0.0, 0.1]}",
        "grid: {init.seed: [0, 1, 2], dynamics.lr: [0.01, 1000.0]}"))
    results = tmp_path / "results"
    r = invoke("sweep", spec, "-j", "2", "--results", results)
    assert r.exit_code == 1
    xdir = ExperimentDir(results / "mixed")
    ids = [m.run_id for m in xdir.read_manifest()]
    # point 4 not run yet, point 2 being run by some process, a file from an older spec
    (xdir.run_path(ids[4])).unlink()
    shutil.copy(xdir.run_path(ids[0]), xdir.runs_dir / "0123456789ab.h5")
    claim = try_claim(xdir.runs_dir, ids[2])
    try:
        r = invoke("status", xdir.root, "--json")
        doc = json.loads(r.output)
        assert doc["counts"] == {"completed": 1, "diverged": 3, "running": 1, "pending": 1}
        assert doc["total"] == 6 and doc["orphans"] == 1
        listed = {d["index"]: d for d in doc["not_completed"]}
        assert set(listed) == {1, 2, 3, 4, 5}
        assert "exceeded" in listed[1]["message"] and listed[1]["overrides"] == {"init.seed": 0,
                                                                                 "dynamics.lr": 1000.0}
        assert listed[2]["state"] == "running" and str(os.getpid()) in listed[2]["holder"].split()
        # the seam for a cluster scheduler: its word on live work comes after local claims
        st = experiment_status(open_experiment(xdir.root), scheduler={ids[4]: "queued", ids[2]: "queued"})
        assert st.counts() == {"completed": 1, "diverged": 3, "running": 1, "queued": 1}
        r = invoke("status", spec, "--results", results, "--list")
        assert r.exit_code == 0
        assert "running" in r.output and "pending" in r.output and "not points of this experiment" in r.output
        # a scheduler module plugs in a probe; one that fails is a warning, not an error
        def broken(source):
            raise ConnectionError("squeue: cannot reach the controller")
        monkeypatch.setattr("lcnrun.cli.report.STATUS_PROBES",
                            [lambda source: {ids[4]: "queued"}, broken])
        doc = json.loads(invoke("status", xdir.root, "--json").output)
        assert doc["counts"] == {"completed": 1, "diverged": 3, "running": 1, "queued": 1}
        assert "cannot reach the controller" in doc["scheduler_problems"][0]
    finally:
        claim.release()
    r = invoke("summary", xdir.root, "--csv")
    assert "1 point without a run file" not in r.output  # notes are for the table, not the csv
    header, rows = read_csv(r.output)
    assert len(rows) == 5 and "dynamics.lr" in header
    assert {row["status"] for row in rows} == {"completed", "diverged"}
    _, rows = summary_csv(xdir.root, "--all-files")
    assert len(rows) == 6 and rows[-1]["run_id"] == "0123456789ab" and rows[-1]["index"] == ""
    r = invoke("summary", xdir.root)
    assert "1 point without a run file yet" in r.output and "--all-files" in r.output


# -- the machinery ---------------------------------------------------------------------------------
def test_spec_flattening_matches_a_full_parse(experiment):
    _, _, xdir = experiment
    texts = [h5py.File(p, "r")["spec"].asstr()[()] for p in sorted(xdir.runs_dir.glob("[!.]*.h5"))]
    tricky = textwrap.dedent("""\
        description: 'first line

          second: not a key

          '
        diagnostics:
        - a
        - b
        model:
          filters:
          - - 3
            - 3
          kind: lcn
        name: x
        """)
    for text in texts + [tricky, "a: 1\n", "x: {}\n"]:
        assert flatten_spec_text(text) == flatten(yaml.safe_load(text))
    assert flatten_spec_text(tricky)["model.filters"] == [[3, 3]]
    assert flatten_spec_text(tricky)["diagnostics"] == ["a", "b"]


def test_parallel_reading_gives_the_same_rows(experiment):
    _, _, xdir = experiment
    src = open_experiment(xdir.root)
    files = src.run_files()
    one = read_runs(files, processes=1)
    two = read_runs(files, processes=2)
    assert [(i.run_id, i.attrs, i.spec) for i in one] == [(i.run_id, i.attrs, i.spec) for i in two]
    assert summarize(load_runs(src, processes=2)).rows == summarize(load_runs(src, processes=1)).rows


def test_filter_values_are_read_as_yaml():
    f = parse_filter("dynamics.lr >= 1e-3")
    assert (f.key, f.op, f.value) == ("dynamics.lr", ">=", 1e-3)
    assert parse_filter("model.strides==[2,2,1]").value == [2, 2, 1]
    assert parse_filter("data.target.model==null").value is None
    assert parse_filter("status==completed").matches({"status": "completed"})
    assert not parse_filter("model.strides==[2,2,1]").matches({"model.strides": [2, 2]})
    assert parse_filter("x!=1").matches({})  # a missing key is null
    assert not parse_filter("x<1").matches({})
    with pytest.raises(QueryError):
        parse_filter("==3")


def test_csv_fast_path_writes_what_exact_writes():
    """``csv_rows`` passes floats, ints, strings and None through to csv as they are: the bytes
    must be those of ``exact`` applied to every cell (bools and lists still go through it)."""
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    from lcnrun.cli.report import csv_rows, exact  # noqa: PLC0415
    from lcnrun.report.summary import SummaryTable  # noqa: PLC0415

    shared = [2, 1]  # one object in several rows (a constant column from the index), then changed
    plain = [0.1, 1e-05, float("nan"), float("inf"), -0.0, 3, "a,b", None, 1 / 3, 2.5e300, 1, 2]
    mixed = [True, shared, None, 0.5, {"k": 1}, "x", False, shared, -1e-300, "", [2, 1.0], shared]
    for columns in (["p"], ["p", "m"]):
        for table in (SummaryTable(columns, [{"p": p, "m": m} for p, m in zip(plain, mixed)]),
                      SummaryTable(columns, cells=[{"p": plain, "m": mixed}[c] for c in columns])):
            fast, slow = io.StringIO(), io.StringIO()
            csv.writer(fast, lineterminator="\n").writerows(csv_rows(table))
            csv.writer(slow, lineterminator="\n").writerows(
                [exact(r[c]) for c in columns] for r in table.rows)
            assert fast.getvalue() == slow.getvalue()
            assert '"[2,1.0]"' in fast.getvalue() or columns == ["p"]


def test_default_table_from_the_index_columns_is_the_table_of_the_rows(tmp_path):
    """``summary_table`` with no query makes its table column by column from the run index when
    it can (``_table_from_columns``); it must be exactly the table ``summarize`` makes of the
    rows (the rows built from each run's dict): columns, rows, varying and constant keys, notes.
    Run ids in another order than the sweep's indices, a spec key named like an attribute
    (``name``), an attribute only some runs have, diagnostics, nan and inf, a pending point and
    an orphan file; and no column table (``None``) where a spec key is missing in some runs."""
    import numpy as np

    from lcnrun.report import summary as S
    from lcnrun.store.index import INDEX_DIR

    xdir = ExperimentDir(tmp_path / "results" / "cols").create()
    rows = []
    for i in range(9):
        rid = f"{(7 * i) % 9:02d}run"  # not in index order
        text = (f"name: cols\ninit:\n  kind: gaussian\n  seed: {i // 3}\ndynamics:\n  kind: gradient_descent\n"
                f"  lr: {[0.1, 0.2, float('nan')][i % 3]}\n  steps: 10\n")
        final = {"loss": [0.5, np.inf, np.nan][i % 3] if i != 4 else 1e-3, "grad_norm": float(i), "t": 10.0,
                 **({"extra": i} if i % 2 else {})}
        write_run(xdir.run_path(rid), RunRecord(rid, "completed" if i % 4 else "diverged", text,
                                                final_attrs=final, attrs={"name": f"run {i}"},
                                                diagnostics={"g": {"arrays": {}, "scalars": {
                                                    "r": i / 7, **({"odd": i} if i % 2 else {})}}}),
                  fsync=False)
        rows.append((i, rid, {"init.seed": i // 3, "dynamics.lr": [0.1, 0.2, 0.3][i % 3]}))
    rows.append((9, "pending1", {"init.seed": 3, "dynamics.lr": 0.1}))
    xdir.write_manifest(rows)
    write_run(xdir.run_path("orphan"), RunRecord("orphan", "completed", "name: cols\n"), fsync=False)

    def both():
        src = open_experiment(xdir.root)
        return S._table_from_columns(src), S.summarize(S.load_runs(src))

    fast, slow = both()  # the journals, merged into the columns by this first reader
    assert fast is not None and repr(fast) == repr(slow)
    fast, slow = both()  # the snapshot's columns
    assert fast is not None and repr(fast) == repr(slow)  # repr: nan is no nan (==) of another read
    assert fast.varying == ["init.seed", "dynamics.lr", "name"] and fast.notes == slow.notes and len(fast.notes) == 2
    assert [r["index"] for r in fast.rows] == list(range(9))
    assert fast.rows[0]["name"] == "run 0" and fast.rows[1]["diagnostics.g.odd"] == 1
    assert fast.rows[0]["diagnostics.g.odd"] is None
    assert repr(summary_table(open_experiment(xdir.root))) == repr(slow)
    queries = [dict(filters=["status==completed"]), dict(filters=["final.loss<1"], sort=["final.loss"]),
               dict(sort=["final.loss", "init.seed"], reverse=True), dict(filters=["diagnostics.g.odd>=3"]),
               dict(filters=["init.seed==7"]), dict(sort=["diagnostics.g.odd"]), dict(filters=["message==x"]),
               dict(filters=["diagnostics.g.odd==null"]),  # only runs without it: no such column
               dict(filters=["name!=run 3", "init.seed<=1"], sort=["name"], reverse=True),
               dict(sort=["status", "final.grad_norm"], reverse=True), dict(sort=["dynamics.lr"]),
               dict(group_by=["init.seed"]), dict(group_by=["name"]), dict(group_by=["diagnostics.g.odd"]),
               dict(group_by=["dynamics.lr", "status"], filters=["final.loss<1"], sort=["final.loss.mean"],
                    reverse=True),
               dict(group_by=["init.seed"], filters=["init.seed==7"]),
               dict(columns=["all"]), dict(columns=["all"], filters=["diagnostics.g.odd==null"]),
               dict(columns=["final.loss", "run_id", "message"], sort=["init.seed"], reverse=True),
               dict(columns=["+diagnostics.g.odd", "+index"], filters=["init.seed==7"]),
               dict(columns=["name", "+final.extra"], group_by=["init.seed"])]
    src = open_experiment(xdir.root)

    def fast_table(q):
        return S._table_from_columns(src, q.get("filters", ()), q.get("sort", ()), q.get("reverse", False),
                                     q.get("group_by", ()), q.get("columns"))

    for q in queries:  # filters, sorts, groups and columns: the same table from the columns
        fast = fast_table(q)
        slow = S.summarize(S.load_runs(src), **q)
        assert fast is not None and repr(fast) == repr(slow), q
        assert fast.rows == [dict(zip(fast.columns, vals)) for vals in zip(*map(fast.column, fast.columns))]
    assert S._table_from_columns(src, ["init.seed==7"]).rows == []
    for bad in (dict(filters=["nosuch==1"]), dict(sort=["nosuch"]), dict(filters=["x"]),
                dict(group_by=["nosuch"]), dict(columns=["nosuch"]), dict(columns=["+nosuch"]),
                dict(group_by=["init.seed"], sort=["final.loss"]),  # no such column of the groups
                dict(filters=["nosuch==1"], group_by=["other"], columns=["third"], sort=["fourth"]),
                dict(group_by=["other"], columns=["third"], sort=["fourth"]),
                dict(columns=["third"], sort=["fourth"])):
        with pytest.raises(QueryError) as fast_err:
            fast_table(bad)
        with pytest.raises(QueryError) as slow_err:
            S.summarize(S.load_runs(src), **bad)
        assert str(fast_err.value) == str(slow_err.value)
    # a spec key in some runs only: the rows make the table
    write_run(xdir.run_path("00run"), RunRecord("00run", "completed", "name: cols\nextra: 1\n"), fsync=False)
    both()  # merges the journal
    fast, slow = both()
    assert fast is None
    shutil.rmtree(xdir.root / INDEX_DIR)
    assert S._table_from_columns(open_experiment(xdir.root)) is None  # files read: the rows


def test_a_finished_sweep_leaves_its_runs_merged_in_the_index(tmp_path):
    """``lcnrun sweep`` merges the workers' journals into the snapshot when it ends: the next
    reader finds every run file there, with its identity (no journal line and no file to read),
    and answers what reading the files answers."""
    from lcnrun.store import index

    spec = tmp_path / "grid.yaml"
    spec.write_text(SPEC.replace("init.seed: [0, 1, 2], ", ""))
    r = invoke("sweep", spec, "-j", "2", "--results", tmp_path / "results")
    assert r.exit_code == 0, r.output
    xdir = ExperimentDir(tmp_path / "results" / "grid")
    snap = index._load_snapshot(xdir.root / index.INDEX_DIR)
    files = index.run_file_stats(xdir.runs_dir)
    assert len(files) == 4 and snap.ids == list(files)
    assert not index._read_journals(xdir.root / index.INDEX_DIR, snap)  # nothing left to merge
    known = snap.identity_and_status()
    assert all(known[rid][0] == index.identity(st) for rid, (_, st) in files.items())
    assert [known[rid][1] for rid in files] == [read_runs({rid: p}, processes=1)[0].status
                                                for rid, (p, _) in files.items()]


def test_groups_keep_apart_values_that_compare_equal_and_stats_skip_non_finite():
    """``_grouped`` puts rows in one group exactly when the JSON of their group values is the
    same (``1``, ``1.0``, ``True``, ``"1"``, ``0.0`` and ``-0.0`` are all apart; every ``nan`` is
    one group), in first-seen order; each figure's statistics are those of its finite numbers
    (a bool counts as 0/1), sums exact (``math.fsum``). Checked against the definition written
    out here."""
    import json
    import math
    import statistics

    from lcnrun.report import summary as S

    values = [1, 1.0, True, "1", 0.0, -0.0, float("nan"), None, [1], [1.0], False, 0, 2 ** 70, "a"]
    figures = [0.5, float("inf"), 1e-300, -2.5, float("nan"), True, 3, 1e300, 1e-16, -1e300, 7.0, None, 4.0, 1.0]
    rows = [{"k": values[(3 * i) % len(values)], "j": (i // len(values)) % 2, "status": "completed" if i % 3 else "diverged",
             "fig": figures[(5 * i) % len(figures)]} for i in range(5 * len(values))]
    table = S._grouped(rows, ["k", "j"], ["k", "j", "status", "fig"], set(), [], {}, [])
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(json.dumps([r["k"], r["j"]], sort_keys=True, default=str), []).append(r)
    assert len(table.rows) == len(groups) == 2 * len(values)
    for got, members in zip(table.rows, groups.values()):
        assert json.dumps([got["k"], got["j"]], default=str) == json.dumps([members[0]["k"], members[0]["j"]],
                                                                        default=str)
        assert got["runs"] == len(members)
        assert got["completed"] == sum(m["status"] == "completed" for m in members)
        finite = [float(m["fig"]) for m in members if isinstance(m["fig"], (int, float)) and math.isfinite(m["fig"])]
        assert got["fig.count"] == len(finite)
        if finite:
            assert got["fig.mean"] == math.fsum(finite) / len(finite)
            assert repr((got["fig.min"], got["fig.max"])) == repr((min(finite), max(finite)))
        if len(finite) > 1 and max(map(abs, finite)) < 1e100:
            assert got["fig.std"] == pytest.approx(statistics.stdev(finite), rel=1e-12)
    # a column of floats only (the fast path) and the same with a None (the general path)
    floats = [0.1, float("inf"), 0.2, float("-inf"), float("nan"), 0.30000000000000004, -0.0]
    assert S._stats(floats) == S._stats([*floats, None])
    assert S._stats(floats)["mean"] == math.fsum([0.1, 0.2, 0.30000000000000004]) / 4
    assert S._stats([*floats, 1])["count"] == 5 and repr(S._stats([*floats, 1])["max"]) == "1.0"
