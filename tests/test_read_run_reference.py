"""``read_run`` (h5py's low-level API) gives exactly what the high-level reader it replaced gave.

The reference below is that reader as it was (``lcnrun/store/runfile.py`` at 80a4d4b: ``h5py.File``,
``attrs.items()``, ``visititems``, ``dset[()]``), kept here and nowhere in the package. Both read
run files of many kinds: a sweep's (LCN and DLN, gradient descent and flow, an ensemble, a
diverged run, diagnostics with arrays and scalars, one without diagnostics), a failed run written
by the runner (no trajectory), the test helpers' records (big-endian, Fortran-ordered, strided,
compressed, complex, 0-d and empty arrays, bool/int8/int16/float32 attributes, non-ASCII text), and
files changed afterwards as foreign tools may change them (attribute creation order tracked,
array, fixed-length, byte-string and empty attributes, 0-d and empty datasets, deep groups, a
name that is not UTF-8). The comparison is field by field (``sameness.assert_same``): types and
values of scalars (floats bit for bit), dtype, shape and bytes of each array, and the key order of
every dict.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml
from sameness import assert_same
from test_store import make_record

from lcnrun import workflow
from lcnrun.spec import load_experiment
from lcnrun.store import RunFileError, RunRecord, read_run, write_run
from lcnrun.store.index import unreadable_mark
from lcnrun.store.runfile import RESERVED_ROOT_ATTRS, RunData, _check_format, _python_scalar


# -- the reference: the high-level reader as it was ------------------------------------------------
# (with the helpers it called, which are unchanged: ``_python_scalar``, ``_check_format``)
def _ref_read_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            value = obj[()]
            out[name] = value if isinstance(value, np.ndarray) else np.asarray(value, obj.dtype)

    group.visititems(visit)
    return out


def _ref_scalars(attrs) -> dict[str, Any]:
    return {k: _python_scalar(v) for k, v in attrs.items()}


def reference_read_run(path: Path) -> RunData:
    with h5py.File(path, "r", locking=False) as f:
        root = _ref_scalars(f.attrs)
        _check_format(path, root.get("format"), root.get("format_version"))
        diagnostics = {}
        if "diagnostics" in f:
            for name, group in f["diagnostics"].items():
                diagnostics[name] = {"arrays": _ref_read_arrays(group),
                                     "scalars": _ref_scalars(group.attrs)}
        final = f["final"] if "final" in f else None
        return RunData(
            run_id=root["run_id"], status=root["status"],
            spec_text=f["spec"].asstr()[()],
            provenance=json.loads(f["provenance"].asstr()[()]),
            trajectory=_ref_read_arrays(f["trajectory"]) if "trajectory" in f else {},
            final_arrays=_ref_read_arrays(final) if final is not None else {},
            final_attrs=_ref_scalars(final.attrs) if final is not None else {},
            diagnostics=diagnostics,
            attrs={k: v for k, v in root.items() if k not in RESERVED_ROOT_ATTRS},
            path=path, format_version=root["format_version"],
            lcnrun_version=root["lcnrun_version"])


def assert_reads_like_the_reference(path: Path) -> RunData:
    got, want = read_run(path), reference_read_run(path)
    assert_same(got, want, path.name)
    return got


# -- files of many kinds ---------------------------------------------------------------------------
SWEEP = """\
name: kinds
model: {kind: lcn, filters: [3, 2], strides: [2, 1]}
data: {kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 40}
record: {points: 6}
diagnostics: [critical_points, data_condition]
sweep:
  points:
    - {init.seed: 0}
    - {init.seed: 1}
    - {dynamics.lr: 1000.0}
    - {dynamics: {kind: gradient_flow, t_max: 2.0}}
    - {model: {kind: dense, widths: [12, 3, 2]}, diagnostics: [critical_points]}
    - {model: {kind: dense, widths: [12, 3, 2]}, dynamics: {kind: gradient_flow, t_max: 2.0},
       diagnostics: []}
"""
@pytest.fixture(scope="module")
def sweep_files(tmp_path_factory) -> list[Path]:
    """The run files of a small sweep (computed as an ensemble where it can be) and a failed run."""
    from typer.testing import CliRunner

    from lcnrun.cli import app

    tmp = tmp_path_factory.mktemp("kinds")
    (tmp / "kinds.yaml").write_text(SWEEP)
    r = CliRunner().invoke(app, ["sweep", str(tmp / "kinds.yaml"), "-j", "1",
                                 "--results", str(tmp / "results")])
    assert r.exit_code == 1 and "1 diverged" in r.output, r.output  # the diverged point
    files = sorted((tmp / "results" / "kinds" / "runs").glob("[!.]*.h5"))
    # a failed run, as the runner writes it: the data file changed after the run id was made
    rng = np.random.default_rng(0)
    np.savez(tmp / "d.npz", X=rng.standard_normal((6, 3)), Y=rng.standard_normal((6, 2)))
    (tmp / "f.yaml").write_text(yaml.safe_dump({
        "name": "f", "model": {"kind": "dense", "widths": [3, 2]},
        "data": {"kind": "file", "path": str(tmp / "d.npz")},
        "init": {"kind": "gaussian", "scale": 0.3, "seed": 1},
        "dynamics": {"kind": "gradient_descent", "lr": 0.01, "steps": 10},
        "record": {"points": 3, "spacing": "linear"}}))
    exp = load_experiment(tmp / "f.yaml")
    xdir = workflow.prepare(exp, tmp / "results")
    np.savez(tmp / "d.npz", X=rng.standard_normal((6, 3)), Y=rng.standard_normal((6, 2)))
    assert workflow.run_point(exp, xdir, exp.points[0]).status == "failed"
    return files + [xdir.run_path(exp.points[0].run_id)]


def test_run_files_of_a_sweep_and_a_failed_run_read_as_before(sweep_files):
    datas = [assert_reads_like_the_reference(path) for path in sweep_files]
    statuses = [d.status for d in datas]
    assert statuses.count("diverged") == 1 and statuses[-1] == "failed"
    assert not datas[-1].trajectory  # the failed run: no trajectory
    kinds = {(d.attrs["model_kind"], d.attrs["dynamics_kind"]) for d in datas[:-1]}
    assert kinds == {(m, k) for m in ("lcn", "dense") for k in ("gradient_descent", "gradient_flow")}
    assert any(d.provenance.get("ensemble_size", 1) > 1 for d in datas)  # an ensemble's runs
    with_diagnostics = [d for d in datas if d.diagnostics]
    assert with_diagnostics and any(not d.diagnostics for d in datas)
    for d in with_diagnostics:
        for parts in d.diagnostics.values():
            assert parts["arrays"] and parts["scalars"]
    assert any("params/layer_0" in d.trajectory for d in datas)  # nested groups


def test_the_test_helpers_records_read_as_before(tmp_path):
    records = [
        make_record(),  # every dtype, order and attribute type the writer takes
        make_record("nodiag", diagnostics={}, final_arrays={}, final_attrs={}),
        make_record("notraj", status="failed", trajectory={}, attrs={"message": ""}),
        make_record("bare", trajectory={}, final_arrays={}, final_attrs={}, diagnostics={},
                    attrs={}),
        RunRecord("garble", "completed", "x: 1\n",  # the hostile tests' record
                  trajectory={"t": np.linspace(0.0, 1.0, 300_000), "loss": np.zeros(3)}),
        RunRecord("zerod", "stopped", "a: 1\n", trajectory={"t": np.zeros(0), "x": np.array(3.5)},
                  final_arrays={"deep/er/still": np.ones((2, 0, 3), np.int8)},
                  diagnostics={"d": {"arrays": {"a/b": np.arange(3)}, "scalars": {}}}),
    ]
    for record in records:
        assert_reads_like_the_reference(write_run(tmp_path / f"{record.run_id}.h5", record,
                                                  fsync=False))


def test_files_changed_by_other_tools_read_as_before(tmp_path):
    path = write_run(tmp_path / "foreign.h5", make_record(), fsync=False)
    with h5py.File(path, "a") as f:
        f.attrs["array_attr"] = np.arange(4, dtype=np.int32)
        f.attrs["fixed_bytes"] = np.bytes_(b"abc")
        f.attrs["empty"] = h5py.Empty("f8")
        f.attrs["utf8_array"] = np.array(["α", "b"], dtype=h5py.string_dtype())
        f.attrs["float16"] = np.float16(1.5)
        f["final"].attrs["complex"] = np.complex128(1 + 2j)
        f["final"].attrs["uint"] = np.uint64(2**63 + 1)
        f["final"].attrs["nan"] = np.nan
        ordered = f["diagnostics"].create_group("ordered", track_order=True)
        for name in ("zeta", "alpha", "mid"):  # creation order, not the names' order
            ordered.attrs[name] = len(name)
        ordered["zero_d"] = np.float32(2.5)
        ordered["empty"] = np.zeros((0,), ">i2")
        ordered["a/b/c/d"] = np.arange(6).reshape(2, 3)
        f["trajectory"].create_group("z_group_without_datasets")
        f["trajectory/compressed_small"] = np.arange(5.0)
        f["trajectory"].create_dataset("chunked", data=np.arange(40.0).reshape(8, 5),
                                       chunks=(3, 2), compression="gzip", shuffle=True)
        h5py.h5a.create(f["final"].id, b"not\xffutf8", h5py.h5t.STD_I64LE,
                        h5py.h5s.create(h5py.h5s.SCALAR)).write(np.array(5, "<i8"))
        bad = h5py.h5a.create(f["final"].id, b"bad_text", h5py.h5t.py_create(
            h5py.string_dtype(), logical=True), h5py.h5s.create(h5py.h5s.SCALAR))
        bad.write(np.array(b"ok \xff", dtype=h5py.string_dtype()))  # not UTF-8
    got = assert_reads_like_the_reference(path)
    assert list(got.diagnostics["ordered"]["scalars"]) == ["zeta", "alpha", "mid"]
    assert isinstance(got.attrs["array_attr"], np.ndarray) and got.attrs["fixed_bytes"] == "abc"
    assert b"not\xffutf8" in got.final_attrs and got.final_attrs["bad_text"] == "ok \udcff"


def test_format_errors_are_those_of_the_reference(tmp_path):
    good = write_run(tmp_path / "good.h5", make_record(), fsync=False)
    cases = {"other": tmp_path / "other.h5", "newer": tmp_path / "newer.h5",
             "no_run_id": tmp_path / "no_run_id.h5"}
    with h5py.File(cases["other"], "w") as f:
        f.attrs["format"] = "something-else"
    shutil.copy(good, cases["newer"])
    with h5py.File(cases["newer"], "a") as f:
        f.attrs["format_version"] = 99
    shutil.copy(good, cases["no_run_id"])
    with h5py.File(cases["no_run_id"], "a") as f:
        del f.attrs["run_id"]
    for name, path in cases.items():
        with pytest.raises((RunFileError, KeyError)) as want:
            reference_read_run(path)
        with pytest.raises(RunFileError) as got:
            read_run(path)
        if isinstance(want.value, RunFileError):  # the format checks: the very message
            assert got.value.reason == want.value.reason, name
        else:  # a missing attribute: the reference raised KeyError, which read_run wrapped
            assert "unreadable run file (KeyError" in got.value.reason, name


def test_unreadable_files_are_marked_as_before(tmp_path):
    """Not HDF5, truncated, a damaged data region: ``RunFileError`` and the file marked
    unreadable for every reader; a missing file: ``RunFileError``, no mark."""
    runs = tmp_path / "x" / "runs"  # an experiment's runs folder: marks go to x/.index
    big = np.linspace(0.0, 1.0, 300_000)
    good = write_run(runs / "good.h5", RunRecord("good", "completed", "x: 1\n",
                                                  trajectory={"t": big}), fsync=False)
    text, truncated, garbled = runs / "text.h5", runs / "truncated.h5", runs / "garbled.h5"
    text.write_text("status: completed\n")
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    shutil.copy(good, garbled)
    with h5py.File(garbled, "r") as f:
        info = f["trajectory/t"].id.get_chunk_info(0)
    with open(garbled, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\x5a" * info.size)
    for path, fragment in ((text, r"unreadable run file \(OSError: .*file signature not found"),
                           (truncated, r"unreadable run file \(OSError: .*truncated file"),
                           (garbled, r"unreadable run file \(OSError: .*")):
        assert unreadable_mark(path) is None
        with pytest.raises(RunFileError, match=fragment) as info:
            read_run(path)
        assert info.value.path == path and unreadable_mark(path) == info.value.reason
        with pytest.raises(OSError) as want:  # the reason the high-level reader gave
            reference_read_run(path)
        assert info.value.reason == f"unreadable run file (OSError: {want.value})"
    with pytest.raises(RunFileError, match="no such file"):
        read_run(runs / "missing.h5")
    assert unreadable_mark(good) is None
    assert_reads_like_the_reference(good)
