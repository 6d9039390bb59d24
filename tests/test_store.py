"""The store: run files (round trip, layout, atomicity, fast listing), the experiment folder,
provenance."""
from __future__ import annotations

import json
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from lcnrun import provenance
from lcnrun.store import (ExperimentDir, RunFileError, RunRecord, clean_stale_temporaries,
                          is_complete_run, read_run, read_run_attrs, read_run_status, runfile,
                          write_run)
from lcnrun.store.atomic import TEMPORARY_PATTERN, host_tag

REPO = Path(__file__).resolve().parents[1]


def temporaries(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if TEMPORARY_PATTERN.match(n))


def make_record(run_id: str = "a1b2c3", **changes) -> RunRecord:
    rng = np.random.default_rng(7)
    T = 5
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1 / 3])
    record = RunRecord(
        run_id=run_id, status="completed",
        spec_text="name: strides-σ\nmodel: {kind: lcn, filters: [4, 3], strides: [2, 1]}\n",
        provenance=provenance.finish_provenance(
            provenance.collect_provenance({"init": 1, "data": np.int64(0)}), None),
        trajectory={
            "t": np.linspace(0.0, 1.0, T), "loss": rng.random(T), "grad_norm": rng.random(T),
            "end_to_end": rng.random((T, 6)),
            "params/layer_0": rng.random((T, 4)), "params/layer_1": rng.random((T, 3)),
            "invariants": rng.random((T, 1)), "rank_D": np.array([3, 3, 2, 2, 2], np.int32),
            "special": special, "big_endian": rng.random(T).astype(">f8"),
            "fortran": np.asfortranarray(rng.random((3, 4))), "strided": rng.random(20)[::3],
            "large": rng.random(300_000),  # > 1 MB: the compressed path
        },
        final_arrays={"end_to_end": rng.random(6), "params/layer_0": rng.random(4),
                      "params/layer_1": rng.random(3), "scalar": np.array(2.5, np.float32),
                      "empty": np.zeros((0, 3)), "mask": np.array([True, False, True])},
        final_attrs={"loss": 0.125, "grad_norm": np.float64(1e-300), "t": 1.0, "steps": 400,
                     "h": np.float32(0.1), "n_int8": np.int8(-3), "converged": True,
                     "flag": np.bool_(False), "zero_d": np.array(7, np.int16), "unset": None},
        diagnostics={
            "function_space": {"arrays": {"K": rng.random((6, 6)),
                                          "eig": rng.random(6).astype(np.float32),
                                          "z": rng.random(3) + 1j * rng.random(3)},
                               "scalars": {"rank_K": 6, "cond": 12.5, "note": "ρ ≥ 0"}},
            "critical_point": {"arrays": {}, "scalars": {"is_critical": False}},
        },
        attrs={"message": "Ünïcödé ✓", "model_kind": "lcn", "dynamics_kind": "gradient_flow",
               "invariant_drift": 3e-15, "seed_sum": 4, "nothing": None},
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def assert_arrays_identical(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        want = np.asarray(want)
        assert got[key].dtype == want.dtype, key
        assert got[key].shape == want.shape, key
        assert np.ascontiguousarray(got[key]).tobytes() == np.ascontiguousarray(want).tobytes(), key


def expected_scalars(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


# -- run files -------------------------------------------------------------------------------------
def test_round_trip_is_exact(tmp_path):
    record = make_record()
    path = write_run(tmp_path / "runs" / "a1b2c3.h5", record)
    assert os.listdir(path.parent) == ["a1b2c3.h5"]
    data = read_run(path)
    assert (data.run_id, data.status, data.spec_text) == (record.run_id, "completed",
                                                          record.spec_text)
    assert data.provenance == json.loads(json.dumps(record.provenance, default=int))
    assert_arrays_identical(data.trajectory, record.trajectory)
    assert_arrays_identical(data.final_arrays, record.final_arrays)
    assert data.final_attrs == expected_scalars(record.final_attrs)
    with h5py.File(path) as f:
        assert f["final"].attrs["zero_d"].dtype == np.int16
    assert type(data.final_attrs["steps"]) is int and type(data.final_attrs["converged"]) is bool
    assert data.final_attrs["h"] == float(np.float32(0.1))
    assert data.attrs == expected_scalars(record.attrs)
    assert sorted(data.diagnostics) == sorted(record.diagnostics)
    for name, parts in record.diagnostics.items():
        assert_arrays_identical(data.diagnostics[name]["arrays"], parts["arrays"])
        assert data.diagnostics[name]["scalars"] == parts["scalars"]
    assert data.format_version == 1 and data.lcnrun_version == provenance.lcnrun_version()
    # the large series went through the compressed path, the small ones did not
    with h5py.File(path) as f:
        assert f["trajectory/large"].compression == "gzip"
        assert f["trajectory/loss"].compression is None


def test_read_run_attrs_matches_the_attributes(tmp_path):
    record = make_record()
    path = write_run(tmp_path / "a1b2c3.h5", record, fsync=False)
    fast = read_run_attrs(path)
    assert fast == read_run_attrs(path, walk=True)  # the index agrees with the attributes
    token = fast["write_token"]  # random, one per write: which file this is
    assert re.fullmatch(r"[0-9a-f]{16}", token)
    assert read_run_attrs(write_run(tmp_path / "b.h5", record, fsync=False))["write_token"] != token
    expected = {"format": "lcnrun-run", "format_version": 1, "run_id": "a1b2c3",
                "status": "completed", "lcnrun_version": provenance.lcnrun_version(),
                "write_token": token, **expected_scalars(record.attrs), "spec": record.spec_text}
    expected.update({f"final.{k}": v for k, v in expected_scalars(record.final_attrs).items()})
    for name, parts in record.diagnostics.items():
        expected.update({f"diagnostics.{name}.{k}": v for k, v in parts["scalars"].items()})
    assert fast == expected
    assert [type(fast[k]) for k in ("final.steps", "final.converged", "final.h")] == \
        [int, bool, float]
    # a file without the index (written by other means) is read by walking the attributes
    with h5py.File(path, "a") as f:
        del f.attrs["attrs_json"]
    assert read_run_attrs(path) == expected
    assert read_run_status(path) == "completed" and is_complete_run(path)


def test_file_has_every_name_of_the_spec(tmp_path):
    path = write_run(tmp_path / "a1b2c3.h5", make_record(), fsync=False)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "lcnrun-run"
        assert isinstance(f.attrs["format_version"], np.integer) and f.attrs["format_version"] == 1
        assert f.attrs["run_id"] == "a1b2c3" and f.attrs["status"] == "completed"
        assert isinstance(f.attrs["lcnrun_version"], str) and f.attrs["lcnrun_version"]
        assert f.attrs["message"] == "Ünïcödé ✓"
        assert isinstance(f.attrs["invariant_drift"], np.float64)
        assert "nothing" not in f.attrs  # None is not stored
        for name in ("spec", "provenance"):
            assert f[name].shape == () and h5py.check_string_dtype(f[name].dtype).encoding == "utf-8"
        assert "strides-σ" in f["spec"].asstr()[()]
        prov = json.loads(f["provenance"].asstr()[()])
        for key in ("git_commit", "git_dirty", "versions", "host", "start_utc", "end_utc",
                    "seeds", "blas_threads", "slurm", "error", "wall_seconds", "pid", "platform"):
            assert key in prov, key
        assert {"job_id", "array_job_id", "array_task_id"} <= set(prov["slurm"])
        assert {"python", "numpy", "scipy", "h5py", "lcnrun"} <= set(prov["versions"])
        for name in ("t", "loss", "grad_norm", "end_to_end", "params/layer_0", "invariants",
                     "rank_D"):
            assert isinstance(f["trajectory"][name], h5py.Dataset), name
        assert f["trajectory/end_to_end"].shape == (5, 6)
        for key in ("loss", "grad_norm", "t"):
            assert isinstance(f["final"].attrs[key], np.float64)
        assert f["final/end_to_end"].shape == (6,)
        assert isinstance(f["final"].attrs["converged"], np.bool_)
        assert set(f["diagnostics"]) == {"function_space", "critical_point"}
        assert f["diagnostics/function_space/K"].shape == (6, 6)
        assert f["diagnostics/function_space"].attrs["note"] == "ρ ≥ 0"


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "a1b2c3.h5"
    bad = make_record()
    bad.trajectory = dict(bad.trajectory, zz_objects=np.array([{}, None], dtype=object))
    with pytest.raises(TypeError, match="zz_objects"):
        write_run(path, bad, fsync=False)
    assert os.listdir(tmp_path) == []
    # an existing run file is kept as it was; the failure happens with the temporary on disk
    write_run(path, make_record(), fsync=False)
    before = path.read_bytes()
    seen_during_write = []
    original = runfile._write_dataset

    def failing(group, key, value, where):
        if key == "invariants":
            seen_during_write.extend(temporaries(tmp_path))
            raise KeyboardInterrupt  # not even an Exception
        original(group, key, value, where)

    monkeypatch.setattr(runfile, "_write_dataset", failing)
    with pytest.raises(KeyboardInterrupt):
        write_run(path, make_record(status="failed"), fsync=False)
    assert seen_during_write == []  # the file is made in memory: nothing on disk yet
    assert os.listdir(tmp_path) == ["a1b2c3.h5"] and path.read_bytes() == before
    # a failure while the bytes go to disk (a full disk) removes the temporary, keeps the file
    monkeypatch.setattr(runfile, "_write_dataset", original)

    def disk_full(fh, image):
        fh.write(image[:100])
        fh.flush()
        seen_during_write.extend(temporaries(tmp_path))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runfile, "_write_image", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_run(path, make_record(status="failed"), fsync=False)
    assert len(seen_during_write) == 1
    assert os.listdir(tmp_path) == ["a1b2c3.h5"] and path.read_bytes() == before


@pytest.mark.parametrize("changes, error", [
    ({"status": "done"}, ValueError), ({"run_id": "a/b"}, ValueError),
    ({"attrs": {"status": "x"}}, ValueError), ({"final_attrs": {"v": np.ones(3)}}, TypeError),
    ({"attrs": {"d": {"a": 1}}}, TypeError), ({"diagnostics": {"a.b": {}}}, ValueError),
    ({"provenance": {"x": object()}}, TypeError),
])
def test_invalid_records_are_refused_without_leftovers(tmp_path, changes, error):
    with pytest.raises(error):
        write_run(tmp_path / "a1b2c3.h5", make_record(**changes), fsync=False)
    assert os.listdir(tmp_path) == []


def run_child(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            env=env, stdout=subprocess.PIPE, text=True, **kwargs)


KILLED_WRITER = """
    import sys
    import numpy as np
    from lcnrun.store import runfile
    path = sys.argv[1]
    def record(value):
        return runfile.RunRecord("killme", "completed", "x: 1\\n",
                                 trajectory={"t": np.full(300_000, value), "loss": np.ones(10)})
    runfile.write_run(path, record(1.0))  # a whole first version
    def stall(fh, image):
        fh.write(image[: len(image) // 2])
        fh.flush()
        print("writing", flush=True)
        sys.stdin.read()  # a barrier that is never released: the test kills the writer here
    runfile._write_image = stall
    runfile.write_run(path, record(2.0))
"""


def test_sigkill_mid_write_keeps_the_whole_file_and_leaves_a_cleanable_temporary(tmp_path):
    path = tmp_path / "killme.h5"
    child = run_child(KILLED_WRITER, path, stdin=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "writing"
        left = temporaries(tmp_path)
        assert len(left) == 1 and TEMPORARY_PATTERN.match(left[0])["pid"] == str(child.pid)
        # a live writer's temporary is never swept
        assert clean_stale_temporaries(tmp_path, older_than_seconds=0) == []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stdin.close()
    data = read_run(path)
    assert np.all(data.trajectory["t"] == 1.0) and data.trajectory["t"].shape == (300_000,)
    assert clean_stale_temporaries(tmp_path, older_than_seconds=3600) == []  # too recent
    assert [p.name for p in clean_stale_temporaries(tmp_path, older_than_seconds=0)] == left
    assert os.listdir(tmp_path) == ["killme.h5"]


LOOPING_WRITER = """
    import sys
    import numpy as np
    from lcnrun.store import write_run, RunRecord
    for i in range(10_000):
        write_run(sys.argv[1], RunRecord("loop", "completed", f"i: {i}\\n", attrs={"i": i},
                                         trajectory={"t": np.full(400_000, float(i))}))
        print(i, flush=True)
"""


def test_sigkill_at_an_arbitrary_moment_leaves_nothing_or_a_whole_file(tmp_path):
    path = tmp_path / "loop.h5"
    child = run_child(LOOPING_WRITER, path)
    try:
        child.stdout.readline()
        deadline = time.monotonic() + 30
        while not temporaries(tmp_path) and time.monotonic() < deadline and child.poll() is None:
            pass  # kill while a write is under way (most likely)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    data = read_run(path)
    i = data.attrs["i"]
    assert data.spec_text == f"i: {i}\n" and np.all(data.trajectory["t"] == float(i))
    clean_stale_temporaries(tmp_path, older_than_seconds=0)
    assert os.listdir(tmp_path) == ["loop.h5"]


CONCURRENT_WRITER = """
    import sys
    import numpy as np
    from lcnrun.store import write_run, RunRecord
    writer = int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(25):
        v = writer * 1000 + i
        write_run(sys.argv[1], RunRecord("same", "completed", f"v: {v}\\n", attrs={"writer": writer},
                  trajectory={"t": np.full(20_000, float(v)), "loss": np.full(7, float(v))},
                  final_attrs={"v": v}))
"""


def test_concurrent_writers_of_one_run_end_with_one_whole_file(tmp_path):
    path = tmp_path / "same.h5"
    children = [run_child(CONCURRENT_WRITER, path, w, stdin=subprocess.PIPE) for w in (1, 2)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:  # start both at once
        child.stdin.write("go\n")
        child.stdin.close()
    for child in children:
        assert child.wait(timeout=120) == 0
        child.stdout.close()
    data = read_run(path)
    v = data.final_attrs["v"]
    assert data.attrs["writer"] == v // 1000 and data.spec_text == f"v: {v}\n"
    assert np.all(data.trajectory["t"] == v) and np.all(data.trajectory["loss"] == v)
    assert os.listdir(tmp_path) == ["same.h5"]


def test_clean_stale_temporaries_only_removes_dead_writers_of_this_host(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "dead": f".r1.{host_tag()}.{dead.pid}.00ff.tmp.h5",
        "alive": f".r2.{host_tag()}.{os.getpid()}.00ff.tmp.h5",
        "other_host": f".r3.{host_tag()}x.{dead.pid}.00ff.tmp.h5",
        "run": "r4.h5",
        "hidden": ".r5.h5",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"")
    removed = clean_stale_temporaries(tmp_path, older_than_seconds=0)
    assert [p.name for p in removed] == [names["dead"]]
    assert sorted(os.listdir(tmp_path)) == sorted(v for k, v in names.items() if k != "dead")


def test_read_run_attrs_reads_no_array(tmp_path):
    path = write_run(tmp_path / "a1b2c3.h5", make_record(), fsync=False)
    external = tmp_path / "external.bin"
    n = 10**9  # 8 GB of float64 stored in a file that does not exist
    with h5py.File(path, "a") as f:
        for group in ("trajectory", "final", "diagnostics/function_space"):
            f[group].create_dataset("trap", shape=(n,), dtype="f8",
                                    external=[(str(external), 0, 8 * n)])
    with pytest.raises(RunFileError):  # reading an array does fail
        read_run(path)
    assert read_run_attrs(path)["final.loss"] == 0.125
    assert read_run_attrs(path, walk=True)["final.loss"] == 0.125
    assert read_run_status(path) == "completed"


def test_run_file_error_names_the_path(tmp_path):
    good = write_run(tmp_path / "good.h5", make_record(), fsync=False)
    cases = {"missing": tmp_path / "missing.h5", "text": tmp_path / "text.h5",
             "other_hdf5": tmp_path / "other.h5", "truncated": tmp_path / "truncated.h5",
             "newer": tmp_path / "newer.h5", "no_status": tmp_path / "no_status.h5"}
    cases["text"].write_text("status: completed\n")
    with h5py.File(cases["other_hdf5"], "w") as f:
        f["x"] = np.arange(3)
        f.attrs["format"] = "something-else"
    cases["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    shutil.copy(good, cases["newer"])
    with h5py.File(cases["newer"], "a") as f:
        f.attrs["format_version"] = 99
        del f.attrs["attrs_json"]
    shutil.copy(good, cases["no_status"])
    with h5py.File(cases["no_status"], "a") as f:
        del f.attrs["status"]
    for name, path in cases.items():
        readers = [read_run, read_run_status] + ([] if name == "no_status" else [read_run_attrs])
        for reader in readers:
            with pytest.raises(RunFileError) as info:
                reader(path)
            assert str(path) in str(info.value) and info.value.path == path, (name, reader)
        assert not is_complete_run(path), name
    with pytest.raises(RunFileError, match="not an lcnrun run file"):
        read_run_attrs(cases["other_hdf5"])
    with pytest.raises(RunFileError, match="newer lcnrun"):
        read_run_attrs(cases["newer"])


def test_fast_readers_release_their_files(tmp_path):
    path = write_run(tmp_path / "a1b2c3.h5", make_record(), fsync=False)
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("no /proc")
    before = len(os.listdir(fd_dir))
    for _ in range(50):
        read_run_attrs(path)
        read_run_status(path)
        with pytest.raises(RunFileError):
            read_run_attrs(tmp_path)  # a folder: open fails
    assert len(os.listdir(fd_dir)) == before


# -- the experiment folder -------------------------------------------------------------------------
def test_manifest_round_trip(tmp_path):
    exp = ExperimentDir(tmp_path / "exp")
    rows = [(0, "aa11", {"init.seed": 0, "model.strides": [1, 1, 1]}),
            (1, "bb22", '{"init.seed": 1, "model.strides": [2, 2, 1]}'),
            (2, "cc33", {"data.kind": "fïlé\tname", "lr": 1e-3, "x": None, "nested": {"b": 1, "a": 2}})]
    exp.write_manifest(rows)
    lines = exp.manifest_tsv.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "index\trun_id\toverrides"
    assert lines[2] == '1\tbb22\t{"init.seed":1,"model.strides":[2,2,1]}'
    assert all(line.count("\t") == 2 for line in lines)
    back = exp.read_manifest()
    assert [tuple(r) for r in back] == [
        (i, rid, json.loads(o) if isinstance(o, str) else o) for i, rid, o in rows]
    assert list(back[2].overrides["nested"]) == ["b", "a"]  # order kept
    exp.manifest_tsv.write_text(exp.manifest_tsv.read_text() + "3\tdd44\n")
    with pytest.raises(ValueError, match=r"manifest.tsv:5"):
        exp.read_manifest()
    with pytest.raises(ValueError):
        exp.write_manifest([(0, "a\tb", {})])


def test_experiment_yaml_is_rewritten_only_when_changed(tmp_path):
    exp = ExperimentDir(tmp_path / "exp")
    assert exp.write_experiment_yaml("name: exp\n")
    stat = exp.experiment_yaml.stat()
    assert not exp.write_experiment_yaml("name: exp\n")
    again = exp.experiment_yaml.stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert exp.write_experiment_yaml("name: exp # ü\n")
    assert exp.experiment_yaml.read_text(encoding="utf-8") == "name: exp # ü\n"
    assert [n for n in os.listdir(exp.root) if n.startswith(".")] == []


def test_existing_runs_reads_statuses(tmp_path):
    exp = ExperimentDir(tmp_path / "exp").create()
    assert exp.existing_runs() == {}
    for run_id, status in [("r1", "completed"), ("r2", "diverged"), ("r3", "failed")]:
        write_run(exp.run_path(run_id), make_record(run_id, status=status), fsync=False)
    exp.run_path("junk").write_text("not hdf5")
    (exp.runs_dir / f".r4.{host_tag()}.{os.getpid()}.0a.tmp.h5").write_bytes(b"")
    (exp.runs_dir / "notes.txt").write_text("")
    assert exp.existing_runs() == {"r1": "completed", "r2": "diverged", "r3": "failed",
                                   "junk": "unreadable"}
    assert exp.run_path("r1") == tmp_path / "exp" / "runs" / "r1.h5"


def test_lock_is_exclusive(tmp_path):
    exp = ExperimentDir(tmp_path / "exp")
    with exp.lock():
        with pytest.raises(TimeoutError):
            with exp.lock(timeout=0.1):
                pass
        got = []

        def wait_for_lock():
            with exp.lock(timeout=30):
                got.append("locked")

        waiter = threading.Thread(target=wait_for_lock)
        waiter.start()
        assert got == []  # the lock is held here: the waiter cannot have it
    waiter.join(timeout=30)
    assert got == ["locked"]


# -- provenance ------------------------------------------------------------------------------------
def test_provenance_fields(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    prov = provenance.collect_provenance({"init": 3})
    assert prov["seeds"] == {"init": 3} and prov["pid"] == os.getpid()
    assert prov["slurm"] == {"job_id": None, "array_job_id": "4242", "array_task_id": "7",
                             "cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK")}
    assert prov["versions"]["numpy"] == np.__version__
    assert prov["versions"]["h5py"] == h5py.__version__
    assert prov["start_utc"].endswith("+00:00")
    git = shutil.which("git")
    if git and (REPO / ".git").exists():
        head = subprocess.run([git, "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert prov["git_commit"] == head and isinstance(prov["git_dirty"], bool)
    provenance.finish_provenance(prov, "ValueError: boom")
    assert prov["error"] == "ValueError: boom" and prov["end_utc"] >= prov["start_utc"]
    assert 0 <= prov["wall_seconds"] < 60
    assert json.loads(json.dumps(prov)) == prov


def test_provenance_lookups_are_cached(monkeypatch):
    first = provenance.collect_provenance({})

    def no_subprocess(*args, **kwargs):
        raise AssertionError("git was run again")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    second = provenance.collect_provenance({})
    assert second["git_commit"] == first["git_commit"]
    assert second["versions"] == first["versions"] and second["versions"] is not first["versions"]


def _reference_image(record: RunRecord) -> bytes:
    """The run file of ``record`` as h5py's high-level API writes it (``attrs[k] = v``,
    ``create_dataset``): the writer before issue 13's pass, kept here as the reference."""
    index = {}

    def attrs(manager, values, prefix):
        for key, value in values.items():
            stored = runfile._attr_value(prefix + key, value)
            if stored is not None:
                manager[key] = stored
                index[prefix + key] = runfile._python_scalar(stored)

    def arrays(group, values):
        for key, value in values.items():
            arr = np.asarray(value)
            if arr.ndim and arr.nbytes >= runfile.COMPRESS_MIN_BYTES:
                group.create_dataset(key, data=arr, chunks=True, compression="gzip",
                                     compression_opts=1, shuffle=True)
            else:
                group.create_dataset(key, data=arr)

    string = h5py.string_dtype("utf-8")
    with h5py.File(f"ref-{record.run_id}", "w", driver="core", backing_store=False,
                   locking=False) as f:
        attrs(f.attrs, {"format": "lcnrun-run", "format_version": 1, "run_id": record.run_id,
                        "status": record.status, "lcnrun_version": provenance.lcnrun_version(),
                        "write_token": "0123456789abcdef", **record.attrs}, "")
        f.create_dataset("spec", data=record.spec_text, dtype=string)
        f.create_dataset("provenance", dtype=string, data=json.dumps(
            record.provenance, sort_keys=True, ensure_ascii=False, default=runfile._json_default))
        arrays(f.create_group("trajectory"), record.trajectory)
        final = f.create_group("final")
        arrays(final, record.final_arrays)
        attrs(final.attrs, record.final_attrs, "final.")
        diagnostics = f.create_group("diagnostics")
        for name, parts in record.diagnostics.items():
            group = diagnostics.create_group(name)
            arrays(group, parts["arrays"])
            attrs(group.attrs, parts["scalars"], f"diagnostics.{name}.")
        f.attrs["attrs_json"] = json.dumps(index, ensure_ascii=False, separators=(",", ":"))
        f.flush()
        return f.id.get_file_image()


def _everything(path: Path) -> dict:
    """Every attribute and dataset of an HDF5 file, read with h5py's high-level API:
    ``{path: (kind, dtype, shape, bytes or value)}``."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            for key, value in obj.attrs.items():
                a = np.asarray(value)
                out[f"{name}@{key}"] = (obj.attrs.get_id(key).dtype.str, a.shape,
                                        value if a.dtype.kind == "O" else a.tobytes())
            if isinstance(obj, h5py.Dataset):
                value = obj[()]
                out[name] = (obj.dtype.str, obj.shape, obj.chunks, obj.compression,
                             value if obj.dtype.kind == "O" else np.ascontiguousarray(value).tobytes())
            else:
                out[name] = ("group",)
        visit("/", f)
        f.visititems(visit)
    return out


def test_writer_gives_the_bytes_of_h5pys_high_level_api(tmp_path, monkeypatch):
    """The low-level writer (attributes and small datasets through h5a/h5d) makes the very file
    h5py's ``attrs[...] =`` / ``create_dataset`` make: same bytes, so the same names, types,
    shapes and values for every reader."""
    monkeypatch.setattr(runfile.secrets, "token_hex", lambda n: "0123456789abcdef"[:2 * n])
    record = make_record()
    record.trajectory["deep/nested/σ"] = np.arange(4.0)  # a non-ASCII name, two new groups
    record.diagnostics["function_space"]["scalars"]["ρ_max"] = np.float32(2.0)
    record.attrs["ñame"] = "x"
    image, _ = runfile._file_image(record)
    reference = _reference_image(record)
    assert image == reference
    (tmp_path / "new.h5").write_bytes(image)
    (tmp_path / "ref.h5").write_bytes(reference)
    new, ref = _everything(tmp_path / "new.h5"), _everything(tmp_path / "ref.h5")
    assert new == ref and "trajectory/deep/nested/σ" in new and "/@ñame" in new
    assert new["trajectory/large"][3] == "gzip" and new["trajectory/loss"][2:4] == (None, None)
