"""Hostile and damaged input (issue 11): one clear message and exit code 2, nothing written outside
the results folder, nothing computed on content its run id does not name; and the one policy that
decides whether a point runs (issue 12.2), from file content, never file times."""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
import yaml

from lcnrun import policy, workflow
from lcnrun.cli import app
from lcnrun.spec import SpecError, load_experiment
from lcnrun.spec.yamlio import MAX_ALIAS_NODES, load_yaml
from lcnrun.store.experiment import ExperimentDir
from lcnrun.store.runfile import RunRecord, read_run, read_run_attrs, write_run

from test_cli_run import GOOD, invoke, write  # noqa: E402  (the tiny valid spec, CliRunner)


def assert_one_message(result, code: int = 2, fragment: str = "") -> str:
    """Exit ``code``, no traceback, ``fragment`` in what was printed."""
    out = result.output
    assert result.exit_code == code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out and "Exception ignored" not in out, out
    assert fragment in out, out
    return out


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -------------------------------------------------------------------------------------------------
# 11.1 names that would leave the results folder
@pytest.mark.parametrize("name, fragment", [
    ("..", "must not start with '.'"), (".", "must not start with '.'"),
    (".hidden", "must not start with '.'"), ("a/b", "letters, digits"), ("../x", "letters, digits"),
    ("a\\\\b", "letters, digits"), ("x" * 300, "at most 100"),
])
def test_a_name_outside_the_results_folder_is_refused(tmp_path, monkeypatch, name, fragment):
    monkeypatch.chdir(tmp_path)
    spec = write(tmp_path, GOOD.replace("name: tiny", f"name: {yaml.safe_dump(name).strip()}"
                                        .replace("\n...", "")))
    before = listing(tmp_path)
    assert_one_message(invoke("validate", spec), 2, fragment)
    assert_one_message(invoke("run", spec, "--results", tmp_path / "results"), 2, fragment)
    assert listing(tmp_path) == before  # nothing written anywhere


@pytest.mark.parametrize("name", ["..", ".", "a/../..", "/etc"])
def test_prepare_never_leaves_the_results_folder(tmp_path, name):
    """The last guard, should a name ever bypass the spec layer."""
    import dataclasses

    from lcnrun.spec import ExperimentSpec
    from lcnrun.store.experiment import ExperimentDirError

    exp = load_experiment(write(tmp_path, GOOD))
    point = dataclasses.replace(exp.points[0], run_spec=dataclasses.replace(exp.points[0].run_spec,
                                                                            name=name))
    bad = ExperimentSpec(exp.path, exp.raw, exp.lines, exp.base, (point,))
    before = listing(tmp_path)
    with pytest.raises(ExperimentDirError, match="not a folder name"):
        workflow.prepare(bad, tmp_path / "results")
    assert listing(tmp_path) == before


# -------------------------------------------------------------------------------------------------
# 11.2 YAML that expands or nests without bound, and other unreadable text
def laughs(levels: int, width: int) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def laughs_size(levels: int, width: int) -> tuple[int, int]:
    """Closed form of (nodes as written, nodes expanded) of :func:`laughs`: level 0 is a list of
    ``width`` scalars (1 + width nodes), level i a list of ``width`` copies of level i - 1; the
    root mapping adds itself and one key scalar per level."""
    expanded = [1 + width]
    for _ in range(1, levels):
        expanded.append(1 + width * expanded[-1])
    written = 1 + levels + (1 + width) + (levels - 1) * 1  # aliases share their anchor's node
    return written, 1 + levels + sum(expanded)


def test_billion_laughs_is_refused_at_once(tmp_path):
    spec = write(tmp_path, "name: x\n" + laughs(10, 10))
    out = assert_one_message(invoke("validate", spec), 2, "YAML aliases expand this spec")
    written, expanded = laughs_size(10, 10)
    written += 2  # the key 'name' and its value
    expanded += 2
    assert f"{expanded:,} nodes ({written:,} as written)" in out


def test_a_few_aliases_are_fine_and_the_bound_is_on_what_they_add():
    # 3 levels of 10: 1,111 more nodes than written: allowed, and the data is the expansion
    data, _ = load_yaml("name: x\n" + laughs(3, 10))
    assert len(data["a2"]) == 10 and data["a2"][3][4] == ["lol"] * 10
    written, expanded = laughs_size(6, 10)
    assert expanded - written > MAX_ALIAS_NODES  # just past the bound
    with pytest.raises(SpecError, match="aliases expand"):
        load_yaml(laughs(6, 10))


@pytest.mark.parametrize("text, fragment", [
    ("name: x\nmodel: &m {a: [*m]}\n", "recursive alias"),
    ("name: x\nd: " + "[" * 5000 + "]" * 5000 + "\n", "5000 levels deep"),
    ("name: x\nd:\n" + "- " * 3000 + "x\n", "nested too deeply"),  # block lists, no brackets
    ("name: x\ndescription: a\x07b\n", "character #x0007"),
    ("name: x\ndescription: a\x00b\n", "character #x0000"),
])
def test_unreadable_yaml_is_one_message(tmp_path, text, fragment):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    assert_one_message(invoke("validate", spec), 2, fragment)


def test_bytes_that_are_not_utf8_and_links_that_loop(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"name: x\ndescription: caf\xe9\n")
    assert_one_message(invoke("validate", spec), 2, "spec.yaml:2: not UTF-8 text (byte 0xe9")
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert_one_message(invoke("validate", tmp_path / "a.yaml"), 2, "a loop of symbolic links")
    (tmp_path / "c.yaml").symlink_to(tmp_path / "missing.yaml")
    assert_one_message(invoke("validate", tmp_path / "c.yaml"), 2, "symbolic link to a missing file")
    os.mkfifo(tmp_path / "fifo.yaml")  # never opened (it would block)
    assert_one_message(invoke("validate", tmp_path / "fifo.yaml"), 2, "not a regular file")


# -------------------------------------------------------------------------------------------------
# 11.9 weak validation
@pytest.fixture
def npz(tmp_path):
    def make(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name
    return make


FILE_SPEC = """\
name: f
model: {kind: dense, widths: [3, 2]}
data: {kind: file, path: DATA}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.01, steps: 10}
record: {points: 3, spacing: linear}
"""


@pytest.mark.parametrize("arrays, fragment", [
    (dict(X=np.ones((0, 3)), Y=np.ones((0, 2))), "no samples"),
    (dict(X=np.ones((5, 3)) * (1 + 1j), Y=np.ones((5, 2))), "'X' has dtype complex128"),
    (dict(X=np.ones((5, 3)), Y=np.ones((5, 2)) * 1j), "'Y' has dtype complex128"),
    (dict(X=np.ones(5), Y=np.ones(5)), "sample axis and a sample shape"),
])
def test_data_files_without_real_samples_are_refused(tmp_path, npz, arrays, fragment):
    path = npz("d.npz", **arrays)
    spec = write(tmp_path, FILE_SPEC.replace("DATA", str(path)))
    out = assert_one_message(invoke("validate", spec), 2, fragment)
    assert "data.path" in out


def test_the_same_data_file_is_accepted(tmp_path, npz):  # the refusals above are about content
    path = npz("d.npz", X=np.ones((5, 3)), Y=np.ones((5, 2)))
    assert_one_message(invoke("validate", write(tmp_path, FILE_SPEC.replace("DATA", str(path)))), 0)


@pytest.mark.parametrize("key, line", [("init.seed", "init: {kind: gaussian, scale: 0.3, seed: -1}"),
                                       ("data.seed", "data: {kind: gaussian, n_samples: 8, "
                                                     "input_size: 16, seed: -1}")])
def test_negative_seeds_are_refused_at_validate(tmp_path, key, line):
    section = key.split(".")[0]
    text = "\n".join(line if ln.startswith(section + ":") else ln for ln in GOOD.splitlines()) + "\n"
    out = assert_one_message(invoke("validate", write(tmp_path, text)), 2, "must be non-negative")
    assert key in out


def _ids(tmp_path, *variants):
    return [load_experiment(write(tmp_path, v, f"v{i}.yaml")).points[0].run_id
            for i, v in enumerate(variants)]


@pytest.mark.parametrize("a, b", [
    ("model: {kind: lcn, filters: [3, 2], strides: [1, 1]}", "model: {kind: lcn, filters: [3, 2]}"),
    ("model: {kind: lcn, filters: [[3], [2]], strides: [[2], [1]]}",
     "model: {kind: lcn, filters: [3, 2], strides: [2, 1]}"),
])
def test_equal_networks_have_equal_run_ids(tmp_path, a, b):
    base = GOOD.replace("model: {kind: lcn, filters: [3, 2], strides: [2, 1]}", "MODEL")
    id_a, id_b, id_other = _ids(tmp_path, base.replace("MODEL", a), base.replace("MODEL", b),
                                base.replace("MODEL", "model: {kind: lcn, filters: [3, 2], "
                                                      "strides: [1, 2]}"))
    assert id_a == id_b != id_other


def test_equal_data_have_equal_run_ids(tmp_path):
    ids = _ids(tmp_path, GOOD, GOOD.replace("input_size: 16", "input_size: [16]"),
               GOOD.replace("input_size: 16", "input_size: 17"))
    assert ids[0] == ids[1] != ids[2]
    twod = GOOD.replace("filters: [3, 2], strides: [2, 1]", "filters: [[3, 3], [2, 2]], STRIDES")
    twod = twod.replace("input_size: 16", "input_size: [8, 8]")
    ids = _ids(tmp_path, twod.replace("STRIDES", "strides: [[2, 2], [1, 1]]"),
               twod.replace("STRIDES", "strides: [2, 1]"), twod.replace("STRIDES", "strides: [[2, 1], [1, 1]]"))
    assert ids[0] == ids[1] != ids[2]


# -------------------------------------------------------------------------------------------------
# 11.3 a data file changed after the run id was computed
def test_a_point_is_never_computed_on_content_its_run_id_does_not_name(tmp_path, npz):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    path = npz("d.npz", X=x, Y=y)
    spec = write(tmp_path, FILE_SPEC.replace("DATA", str(path)) + "sweep: {grid: {init.seed: [0, 1]}}\n")
    exp = load_experiment(spec)  # the run ids name the content read now
    xdir = workflow.prepare(exp, tmp_path / "results")
    original = path.read_bytes()
    npz("d.npz", X=x + 1.0, Y=y)  # changed between expansion and computation
    out = workflow.run_point(exp, xdir, exp.points[0])
    assert out.status == "failed" and "d.npz changed since the run id was computed" in out.attrs["message"]
    assert not read_run(xdir.run_path(exp.points[0].run_id)).trajectory  # nothing computed
    # an ensemble (both points at once, as a sweep worker computes them): every member fails
    results = list(workflow.run_points(exp, xdir, exp.points))
    assert [r.status for r in results] == ["failed", "failed"]
    # the content it names again: computed
    path.write_bytes(original)
    out = workflow.run_point(exp, xdir, exp.points[0], rerun_failed=True)
    assert out.status == "completed" and not out.skipped
    # the same spec loaded after the change names the new content: another run id, computed
    npz("d.npz", X=x + 1.0, Y=y)
    again = load_experiment(spec)
    assert again.points[0].run_id != exp.points[0].run_id
    assert workflow.run_point(again, xdir, again.points[0]).status == "completed"


# -------------------------------------------------------------------------------------------------
# 11.5 / 12.2 one policy, from content
EXPECTED = {  # (status) -> (no flag, --rerun-failed, --force): the table of lcnrun.policy, by hand
    None: (True, True, True), "pending": (True, True, True), "stopped": (True, True, True),
    "failed": (False, True, True), "diverged": (False, True, True),
    "completed": (False, False, True), "unreadable": (False, False, True),
    "queued": (False, False, False), "running": (False, False, False),
}


@pytest.mark.parametrize("status", list(EXPECTED))
def test_the_policy_table(status):
    got = (policy.should_run(status), policy.should_run(status, rerun_failed=True),
           policy.should_run(status, force=True))
    assert got == EXPECTED[status]


@pytest.mark.parametrize("status", list(EXPECTED))
def test_submit_selects_what_the_policy_says(status):
    from lcnrun.report.status import RunState
    from lcnrun.schedule.slurm.select import select_points

    for force, rerun_failed in [(False, False), (False, True), (True, False)]:
        state = RunState(0, "abc", status or "pending", "file")
        sel = select_points([state], force=force, rerun_failed=rerun_failed)
        assert bool(sel.submit) == EXPECTED[status][2 if force else int(rerun_failed)]


def _record(run_id: str, status: str) -> RunRecord:
    return RunRecord(run_id, status, "x: 1\n", attrs={"message": f"was {status}"})


def test_file_state_reads_content_not_times(tmp_path):
    path = write_run(tmp_path / "r1.h5", _record("r1", "failed"), fsync=False)
    first = policy.file_state(path)
    future = time.time() + 10 * 365 * 86400
    os.utime(path, (future, future))  # a clock ten years ahead
    assert policy.file_state(path) == first and first.status == "failed"
    write_run(path, _record("r1", "failed"), fsync=False)  # the same content, written again
    again = policy.file_state(path)
    assert again.status == "failed" and again.identity != first.identity
    assert not policy.decide(again, force=True, planned=first)  # written meanwhile: never twice
    assert policy.decide(again, force=True, planned=again)
    assert policy.file_state(tmp_path / "none.h5") == policy.NO_FILE
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    assert policy.file_state(tmp_path / "garbage.h5").status == "unreadable"
    os.mkfifo(tmp_path / "fifo.h5")  # never opened
    assert policy.file_state(tmp_path / "fifo.h5").reason == "not a regular file"


def test_a_worker_never_runs_a_point_written_since_the_sweep_planned(tmp_path):
    """Two sweeps with --force at once: the second's worker finds a file the first wrote after the
    second planned. The worker's own code (attempt_unit) is run here, in this process."""
    from lcnrun.schedule.local import attempt_unit, UnitOfWork

    spec = write(tmp_path, GOOD + "sweep: {grid: {init.seed: [0, 1]}}\n")
    exp = load_experiment(spec)
    xdir = workflow.prepare(exp, tmp_path / "results")
    planned = {i: policy.file_state(xdir.run_path(p.run_id)) for i, p in enumerate(exp.points)}
    assert all(s == policy.NO_FILE for s in planned.values())
    first = xdir.run_path(exp.points[0].run_id)
    write_run(first, _record(exp.points[0].run_id, "completed"), fsync=False)  # the other sweep
    results = list(attempt_unit(exp, xdir, UnitOfWork((0, 1), True, True, planned, False)))
    by_index = {r.index: r for r in results}
    assert by_index[0].action == "skipped" and by_index[1].action == "ran"
    assert read_run_attrs(first)["message"] == "was completed"  # not computed again
    assert by_index[1].status == "completed"


def test_future_file_times_do_not_stop_force_or_rerun_failed(tmp_path):
    from lcnrun.schedule.local import SweepObserver, run_sweep

    class Seen(SweepObserver):
        def planned(self, total, to_run, skipped, workers):
            self.plan = (total, to_run, len(skipped))

    spec = write(tmp_path, GOOD + "sweep: {grid: {init.seed: [0, 1, 2, 3]}}\n")
    exp = load_experiment(spec)
    xdir = workflow.prepare(exp, tmp_path / "results")
    for p in exp.points[:2]:
        write_run(xdir.run_path(p.run_id), _record(p.run_id, "failed"), fsync=False)
    for p in exp.points[2:]:
        write_run(xdir.run_path(p.run_id), _record(p.run_id, "completed"), fsync=False)
    future = time.time() + 86400
    for p in exp.points:
        os.utime(xdir.run_path(p.run_id), (future, future))
    seen = Seen()
    report = run_sweep(exp, xdir, jobs=1, rerun_failed=True, observer=seen)
    assert seen.plan == (4, 2, 2)
    assert sorted(r.index for r in report.ran) == [0, 1]
    seen = Seen()
    report = run_sweep(exp, xdir, jobs=1, force=True, observer=seen)
    # 4 points to run (one ensemble of 4: the count is of points, not ensembles)
    assert seen.plan == (4, 4, 0) and len(report.ran) == 4
    assert all(read_run(xdir.run_path(p.run_id)).trajectory for p in exp.points)
    seen = Seen()
    run_sweep(exp, xdir, jobs=1, observer=seen)
    assert seen.plan == (4, 0, 4)


def test_run_follows_the_policy(tmp_path):
    spec = write(tmp_path, GOOD)
    results = tmp_path / "results"
    exp = load_experiment(spec)
    path = ExperimentDir(results / "tiny").run_path(exp.points[0].run_id)
    write_run(path, _record(exp.points[0].run_id, "failed"), fsync=False)
    future = time.time() + 86400
    os.utime(path, (future, future))
    assert_one_message(invoke("run", spec, "--results", results), 0, "wrote")  # named: rerun
    assert_one_message(invoke("run", spec, "--results", results), 0, "already completed")
    path.write_bytes(b"garbage")
    assert_one_message(invoke("run", spec, "--results", results), 1, "--force replaces it")
    assert_one_message(invoke("run", spec, "--results", results, "--force"), 0, "wrote")


# -------------------------------------------------------------------------------------------------
# 11.6 results folders that cannot be written, files that cannot be read
@contextlib.contextmanager
def mounted(where: Path, options: str):
    """A tmpfs at ``where`` (root only; the test is skipped, saying so, where mount is refused)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): "
                    "needs root or a user namespace")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def test_a_read_only_results_folder(tmp_path):
    spec = write(tmp_path, GOOD)
    with mounted(tmp_path / "ro", "size=1m") as ro:
        remount(ro, "ro")  # a new experiment in a read-only folder
        assert_one_message(invoke("run", spec, "--results", ro / "results"), 2, "Read-only file system")
        remount(ro, "rw")
        assert_one_message(invoke("run", spec, "--results", ro / "results"), 0, "wrote")
        remount(ro, "ro")  # an existing one: its run's claim file cannot be created
        out = assert_one_message(invoke("run", spec, "--results", ro / "results", "--force"), 2,
                                 "Read-only file system")
        assert str(ro / "results" / "tiny") in out


def test_a_read_only_folder_seen_by_the_store(tmp_path, monkeypatch):
    """Where mount is refused: the same error (EACCES at the lock) injected at the store's open."""
    spec = write(tmp_path, GOOD)
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    out = assert_one_message(invoke("run", spec, "--results", tmp_path / "results"), 2,
                             "Permission denied")
    assert ".lock: Permission denied: no permission to write there" in out


def test_links_planted_under_lcnruns_own_names_are_never_followed(tmp_path):
    """A results folder (copied, or hostile) with symbolic links where lcnrun keeps files of its
    own under fixed names (a run's claim, the experiment's lock, the run index's clock, the log
    of submissions): lcnrun refuses with one message and never creates, truncates or appends to
    the file a link points to, outside the results folder."""
    from lcnrun.schedule.slurm.submit import append_submission  # noqa: PLC0415
    from lcnrun.store import index  # noqa: PLC0415

    spec = write(tmp_path, GOOD)
    results = tmp_path / "results"
    assert_one_message(invoke("run", spec, "--results", results), 0, "wrote")
    xdir = ExperimentDir(results / "tiny")
    (run_file,) = xdir.runs_dir.glob("*.h5")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me\n")

    # a claim: `run --force` would truncate the claim file and write its holder's line into it
    claim = xdir.runs_dir / f".{run_file.stem}.claim"
    claim.symlink_to(victim)
    out = assert_one_message(invoke("run", spec, "--results", results, "--force"), 2, "symbolic link")
    assert str(claim) in out and "remove the link" in out
    claim.unlink()
    # the experiment's lock, pointing where no file is yet: it would be created there
    (xdir.root / ".lock").unlink(missing_ok=True)  # (the lock file an earlier run left)
    (xdir.root / ".lock").symlink_to(outside / "made-by-lcnrun")
    assert_one_message(invoke("sweep", spec, "--results", results), 2, "symbolic link")
    (xdir.root / ".lock").unlink()
    # the run index's clock (written by readers that meet files with 1 s timestamps)
    (xdir.root / index.INDEX_DIR).mkdir(exist_ok=True)
    (xdir.root / index.INDEX_DIR / index.CLOCK).symlink_to(victim)
    assert index.file_system_now_ns(xdir.root / index.INDEX_DIR) is None
    # the log of Slurm submissions
    (xdir.root / "slurm").mkdir()
    (xdir.root / "slurm" / "submissions.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        append_submission(xdir, {"tag": "x"})

    assert victim.read_text() == "keep me\n"
    assert sorted(os.listdir(outside)) == ["precious.txt"]
    assert read_run(run_file).status == "completed"  # the run is as it was


def test_a_full_disk(tmp_path):
    spec = write(tmp_path, GOOD)
    with mounted(tmp_path / "full", "size=64k") as full:
        (full / "filler").write_bytes(b"\0" * (63 * 1024))
        results = full / "results"  # a new experiment: experiment.yaml cannot be written
        assert_one_message(invoke("run", spec, "--results", results), 2, "No space left on device")
        (full / "filler").unlink()
        assert_one_message(invoke("run", spec, "--results", results), 0, "wrote")
        runs = results / "tiny" / "runs"
        (full / "filler").write_bytes(b"\0" * 1)
        free = os.statvfs(full).f_bavail * os.statvfs(full).f_frsize
        (full / "filler").write_bytes(b"\0" * max(0, free - 4096))  # room for a few bytes only
        before = sorted(os.listdir(runs))
        out = assert_one_message(invoke("run", spec, "--results", results, "--force"), 2,
                                 "No space left on device")
        assert "nothing was written" in out and f"{before[0]}: No space left" in out
        assert sorted(os.listdir(runs)) == before  # the old file kept, no temporary left
        assert read_run(runs / before[0]).status == "completed"


def test_runs_is_a_file_and_texts_that_are_not_utf8(tmp_path):
    spec = write(tmp_path, GOOD)
    results = tmp_path / "results"
    (results / "tiny").mkdir(parents=True)
    (results / "tiny" / "runs").write_text("not a folder")
    assert_one_message(invoke("run", spec, "--results", results), 2, "runs is a file, not a folder")
    (results / "tiny" / "runs").unlink()
    assert_one_message(invoke("run", spec, "--results", results), 0, "wrote")
    xdir = ExperimentDir(results / "tiny")
    xdir.manifest_tsv.write_bytes(b"index\trun_id\toverrides\n0\t\xff\xfe\t{}\n")
    assert_one_message(invoke("status", xdir.root), 2, "manifest.tsv:2: not UTF-8")
    xdir.experiment_yaml.write_bytes(b"\xff\xfe garbage")
    assert_one_message(invoke("run", spec, "--results", results), 0, "already completed")
    assert xdir.experiment_yaml.read_text() == spec.read_text()  # both rewritten as they should be
    assert xdir.read_manifest()[0].run_id == load_experiment(spec).points[0].run_id


def garble_data_region(path: Path, key: str) -> None:
    """Overwrite the stored (compressed) bytes of dataset ``key``: the attributes stay readable."""
    with h5py.File(path, "r") as f:
        info = f[key].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\x5a" * info.size)


def test_diff_of_a_garbled_run_file_exits_2(tmp_path):
    big = np.linspace(0.0, 1.0, 300_000)  # > 1 MiB: chunked and compressed
    record = RunRecord("abc", "completed", "x: 1\n", trajectory={"t": big, "loss": big})
    a = write_run(tmp_path / "a.h5", record, fsync=False)
    b = write_run(tmp_path / "b.h5", record, fsync=False)
    assert_one_message(invoke("diff", a, b), 0)
    garble_data_region(b, "trajectory/loss")
    assert read_run_attrs(b)["status"] == "completed"  # only the data region is damaged
    out = assert_one_message(invoke("diff", a, b), 2, "b.h5")
    assert "unreadable" in out or "cannot" in out


# -------------------------------------------------------------------------------------------------
# property: whatever the document, validate answers 0 or 2, never a traceback
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KEYS = ["name", "description", "model", "data", "init", "loss", "dynamics", "record",
        "regularization", "diagnostics", "sweep", "kind", "filters", "strides", "widths", "seed",
        "lr", "steps", "t_max", "path", "grid", "zip", "points", "input_size", "n_samples",
        "init.seed", "model.strides", "target", "method", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.floats(allow_nan=True),
                    st.sampled_from(["lcn", "dense", "gaussian", "gradient_descent", "gradient_flow",
                                     "file", "explicit", "square", "..", "tiny", "RK45", ""]),
                    st.text(max_size=8))
documents = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.sampled_from(KEYS), children, max_size=5)), max_leaves=25)
BASE_SPEC = yaml.safe_load(GOOD)


_COMMAND: list = []


def _validate_exit(tmp_path: Path, data: bytes) -> int:
    """``lcnrun validate`` of ``data`` through CliRunner (the click command built once: typer
    builds it anew for every invoke, 0.1 s)."""
    import typer.main
    import typer.testing

    if not _COMMAND:
        _COMMAND.append(typer.main.get_command(app))
    spec = tmp_path / "random.yaml"
    spec.write_bytes(data)
    with mock.patch.object(typer.testing, "_get_command", lambda _app: _COMMAND[0]):
        result = invoke("validate", spec)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2), result.output
    return result.exit_code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents, patch=st.dictionaries(st.sampled_from(list(BASE_SPEC) + ["sweep"]), documents,
                                            max_size=2))
def test_random_documents_never_crash_validate(tmp_path, doc, patch):
    _validate_exit(tmp_path, yaml.safe_dump(doc).encode())
    _validate_exit(tmp_path, yaml.safe_dump({**BASE_SPEC, **patch}).encode())  # near a good spec


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), cut=st.integers(0, len(GOOD)))
def test_random_bytes_never_crash_validate(tmp_path, data, cut):
    _validate_exit(tmp_path, data)
    _validate_exit(tmp_path, GOOD.encode()[:cut] + data)  # a good spec ending in garbage
