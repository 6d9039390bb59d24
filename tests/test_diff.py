"""`lcnrun diff`: identical sweeps (-j 1 vs -j 2) are bitwise identical; a changed lr is found and
named; tolerances; time grids; pairing when run ids change; exit codes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lcnrun.cli import app
from lcnrun.report.diff import DEFAULT_ATOL, DEFAULT_RTOL, compare_values
from lcnrun.store import RunRecord, read_run, write_run
from lcnrun.store.experiment import ExperimentDir

runner = CliRunner()

SPEC = """\
name: pair
model: {{kind: lcn, filters: [3, 2], strides: [2, 1]}}
data: {{kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}}
init: {{kind: gaussian, scale: 0.3, seed: 1}}
dynamics: {{kind: gradient_descent, lr: 0.01, steps: 80}}
record: {{points: 15}}
sweep:
{sweep}
"""
GRID = "  grid: {init.seed: [0, 1, 2], dynamics.lr: [0.01, 0.02]}"
# the same six points written out, the lr of the last one changed
ONE_CHANGED = ("  points: [" + ", ".join(f"{{init.seed: {s}, dynamics.lr: {lr}}}" for s in (0, 1, 2)
                                         for lr in (0.01, 0.02))[:-len("0.02}")] + "0.021}]")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def diff_json(*args) -> tuple[int, dict]:
    r = invoke("diff", *args, "--json")
    return r.exit_code, json.loads(r.output)


def sweep(tmp: Path, folder: str, block: str = GRID, jobs: int = 2) -> ExperimentDir:
    spec = tmp / f"{folder}.yaml"
    spec.write_text(SPEC.format(sweep=block))
    r = invoke("sweep", spec, "-j", jobs, "--results", tmp / folder)
    assert r.exit_code == 0, r.output
    return ExperimentDir(tmp / folder / "pair")


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same sweep run twice, with one and with two workers."""
    tmp = tmp_path_factory.mktemp("diff")
    return tmp, sweep(tmp, "one", jobs=1), sweep(tmp, "two", jobs=2)


def rewrite(source: Path, target: Path, **changes) -> None:
    """Write a copy of run file ``source`` to ``target`` with fields of its record replaced."""
    data = read_run(source)
    record = RunRecord(data.run_id, data.status, data.spec_text, data.provenance, data.trajectory,
                       data.final_arrays, data.final_attrs, data.diagnostics, data.attrs)
    for key, value in changes.items():
        setattr(record, key, value)
    write_run(target, record, fsync=False)


def test_the_same_sweep_twice_is_bitwise_identical(twins):
    tmp, one, two = twins
    r = invoke("diff", one.root, two.root)
    assert r.exit_code == 0, r.output
    assert "identical: 6 pairs of runs bitwise identical" in r.output
    code, doc = diff_json(one.root, two.root, "--rtol", "0", "--atol", "0")
    assert code == 0 and doc["equal"] and doc["bitwise"]
    assert doc["pairs_compared"] == 6 and doc["paired_by"] == {"run id": 6} and doc["pairs"] == []
    code, doc = diff_json(one.root, two.root, "--all")
    keys = {i["key"] for i in doc["pairs"][0]["items"]}
    assert {"spec.dynamics.lr", "status", "final.loss", "final/end_to_end", "trajectory/loss",
            "trajectory/params/layer_0", "trajectory/t"} <= keys
    assert all(i["bitwise"] for p in doc["pairs"] for i in p["items"] if i["counts"])
    # two run files, and the spec files naming the experiments
    rid = one.read_manifest()[4].run_id
    assert invoke("diff", one.run_path(rid), two.run_path(rid)).exit_code == 0
    assert invoke("diff", tmp / "one.yaml", tmp / "two.yaml", "--results", tmp / "one").exit_code == 0


def test_a_changed_lr_is_found_and_named(twins, tmp_path):
    tmp, one, _ = twins
    assert "0.021}]" in ONE_CHANGED and ONE_CHANGED.count("0.02}") == 2
    changed = sweep(tmp_path, "changed", ONE_CHANGED, jobs=1)
    code, doc = diff_json(one.root, changed.root)
    assert code == 1 and not doc["equal"]
    assert doc["paired_by"] == {"run id": 5, "sweep index": 1}  # five runs are the same runs
    assert doc["pairs_differing"] == 1 and doc["only_a"] == doc["only_b"] == []
    for pair in doc["pairs"]:
        assert pair["index_a"] == 5 and pair["paired_by"] == "sweep index"
        items = {i["key"]: i for i in pair["items"]}
        assert items["spec.dynamics.lr"]["a"] == 0.02 and items["spec.dynamics.lr"]["b"] == 0.021
        for key in ("trajectory/loss", "trajectory/t", "final.grad_norm", "final.t", "final/end_to_end"):
            assert key in items and items[key]["max_abs"] > 0, key
        assert "spec.init.seed" not in items and "status" not in items  # only what differs
        # t = step * lr: the series are compared on the common time axis, B interpolated
        assert "time grids differ" in items["trajectory/t"]["note"]
        assert "interpolated" in items["trajectory/loss"]["note"]
    r = invoke("diff", one.root, changed.root)
    assert r.exit_code == 1
    assert "1 of 6 pairs differ" in r.output and "spec.dynamics.lr" in r.output
    assert "trajectory/loss" in r.output and "paired by sweep index" in r.output


def test_two_run_files_with_different_lr(twins):
    _, one, _ = twins
    rows = one.read_manifest()
    a, b = one.run_path(rows[0].run_id), one.run_path(rows[1].run_id)  # lr 0.01 and 0.02
    r = invoke("diff", a, b)
    assert r.exit_code == 1
    assert "the two runs differ" in r.output and "spec.dynamics.lr" in r.output
    code, doc = diff_json(a, b)
    assert code == 1 and doc["mode"] == "runs"
    assert "spec.dynamics.lr" in doc["differing_keys"] and "trajectory/loss" in doc["differing_keys"]
    assert "spec.init.seed" not in doc["differing_keys"]


def test_tolerances(twins, tmp_path):
    _, one, _ = twins
    src = one.run_path(one.read_manifest()[0].run_id)
    data = read_run(src)
    for rel, equal_by_default in ((1e-12, True), (1e-6, False)):
        target = tmp_path / f"{rel}" / src.name
        traj = dict(data.trajectory, loss=data.trajectory["loss"] * (1 + rel))
        rewrite(src, target, trajectory=traj)
        code, doc = diff_json(src, target)
        assert code == (0 if equal_by_default else 1) and doc["bitwise"] is False
        (pair,) = doc["pairs"] if not equal_by_default else [None]
        if pair:
            (item,) = pair["items"]
            assert item["key"] == "trajectory/loss"
            assert item["max_rel"] == pytest.approx(rel / (1 + rel), rel=1e-9)  # relative to max(|a|, |b|)
            big = np.abs(data.trajectory["loss"]).max()
            assert item["max_abs"] == pytest.approx(big * rel, rel=1e-6)
        # zero tolerance: any change differs; a looser one admits it
        assert invoke("diff", src, target, "--rtol", "0", "--atol", "0").exit_code == 1
        assert invoke("diff", src, target, "--rtol", "1e-5").exit_code == 0
    r = invoke("diff", src, tmp_path / "1e-12" / src.name)
    assert "equal within rtol=1e-09, atol=1e-12" in r.output
    assert (DEFAULT_RTOL, DEFAULT_ATOL) == (1e-9, 1e-12)


def test_different_time_grids_are_compared_on_the_common_times(twins, tmp_path):
    _, one, _ = twins
    src = one.run_path(one.read_manifest()[0].run_id)
    data = read_run(src)
    keep = np.arange(0, len(data.trajectory["t"]), 2)  # A stores every other time of B
    sub = tmp_path / "sub.h5"
    rewrite(src, sub, trajectory={k: v[keep] for k, v in data.trajectory.items()})
    code, doc = diff_json(sub, src, "--all")
    assert code == 1
    items = {i["key"]: i for i in doc["pairs"][0]["items"]}
    t_item = items["trajectory/t"]
    assert not t_item["equal"] and "shapes differ" in t_item["note"]
    assert "time grids differ" in t_item["note"] and f"interpolated onto A's {len(keep)} times" in t_item["note"]
    for key in ("trajectory/loss", "trajectory/params/layer_0", "trajectory/end_to_end"):
        assert items[key]["equal"] and "B interpolated onto A's times" in items[key]["note"], key
    assert doc["differing_keys"] == ["trajectory/t"]


def test_runs_are_paired_by_spec_values_when_ids_change(twins, tmp_path):
    """A code version that adds a spec key (with its default) changes every run id."""
    _, one, _ = twins
    new = ExperimentDir(tmp_path / "new")
    shutil.copytree(one.root, new.root)
    for row in one.read_manifest():
        path = new.run_path(row.run_id)
        data = read_run(path)
        rewrite(path, new.run_path("x" + row.run_id[1:]), run_id="x" + row.run_id[1:],
                spec_text=data.spec_text + "zz_new:\n  knob: 0.0\n")
        path.unlink()
    (new.manifest_tsv).unlink()
    code, doc = diff_json(one.root, new.root)
    assert code == 0 and doc["bitwise"], doc
    assert doc["paired_by"] == {"spec values": 6}
    assert "ignoring keys only one side has: zz_new.knob" in doc["notes"][0]
    # one run less on one side: a difference
    new.run_path("x" + one.read_manifest()[2].run_id[1:]).unlink()
    code, doc = diff_json(one.root, new.root)
    assert code == 1 and doc["only_a"] == [one.read_manifest()[2].run_id] and doc["only_b"] == []
    r = invoke("diff", one.root, new.root)
    assert "only in A (1 run)" in r.output


def test_bad_input_exits_2(twins, tmp_path):
    _, one, _ = twins
    run = one.run_path(one.read_manifest()[0].run_id)
    (tmp_path / "not_a_run.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    for args in ([run, tmp_path / "missing.h5"], [run, one.root], [one.root, tmp_path / "nowhere"],
                 [run, tmp_path / "not_a_run.h5"], [run, run, "--rtol", "-1"]):
        r = invoke("diff", *args)
        assert r.exit_code == 2, (args, r.output)
        assert "error:" in r.output and "Traceback" not in r.output


def test_many_pairs_in_worker_processes_give_the_same_report(twins):
    _, one, two = twins
    from lcnrun.report.diff import diff_experiments
    from lcnrun.report.source import open_experiment
    a, b = open_experiment(one.root), open_experiment(two.root)
    serial = diff_experiments(a, b, processes=1).to_dict(all_items=True)
    parallel = diff_experiments(a, b, processes=2).to_dict(all_items=True)
    assert serial == parallel and serial["pairs_compared"] == 6


def test_compare_values_rule():
    rt, at = 1e-9, 1e-12
    assert compare_values("x", 1.0, 1.0 + 5e-10, rt, at).equal
    assert not compare_values("x", 1.0, 1.0 + 2e-9, rt, at).equal
    assert compare_values("x", 0.0, 5e-13, rt, at).equal and not compare_values("x", 0.0, 2e-12, rt, at).equal
    nan_inf = np.array([np.nan, np.inf, -np.inf, 1.0])
    item = compare_values("x", nan_inf, nan_inf.copy(), rt, at)
    assert item.equal and item.bitwise
    item = compare_values("x", nan_inf, np.array([np.nan, np.inf, np.inf, 1.0]), rt, at)
    assert not item.equal and item.max_abs == np.inf and "[2]" in item.note
    item = compare_values("x", np.zeros((3, 2)), np.zeros((2, 3)), rt, at)
    assert not item.equal and "shapes differ" in item.note
    item = compare_values("x", np.arange(4), np.arange(4.0), rt, at)
    assert item.equal and not item.bitwise  # int and float arrays: equal values, other bytes
    assert not compare_values("s", "completed", "diverged", rt, at).equal
    item = compare_values("x", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0]), rt, at,
                          t=np.array([0.0, 0.5, 1.0]))
    assert (item.a, item.b, item.max_abs) == (2.0, 2.5, 0.5) and "t = 0.5" in item.note
    assert item.max_rel == pytest.approx(0.2)


def test_spec_values_compare_as_their_json_texts():
    """``_same_spec_value`` is the comparison of the values' JSON texts, shortcuts included."""
    import datetime

    from lcnrun.report.diff import _same_spec_value

    def reference(a, b):
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    nan = float("nan")
    values = [0, 1, -1, 2**70, 1.0, 0.0, -0.0, 0.1, 1e-300, float("inf"), nan, float("nan"), True,
              False, None, "", "a", "1", "1.0", "true", [1, 2], [1.0, 2], [], {"a": 1, "b": 2},
              {"b": 2, "a": 1}, {}, [[3, 3]], datetime.date(2001, 1, 1)]
    for a in values:
        for b in values:
            try:
                want = reference(a, b)
            except TypeError:  # a date: what JSON cannot write fails as it did
                with pytest.raises(TypeError):
                    _same_spec_value(a, b)
                continue
            assert _same_spec_value(a, b) is want, (a, b)
