"""`lcnrun sweep`: refusals, dry run, failures as data, resuming, killing, concurrency, claims.

Sweeps run for real (tiny LCNs, gradient descent) in worker processes; the tests that kill or race
sweeps run `lcnrun` in subprocesses of their own session, so that a signal reaches the whole sweep
as it would from a terminal or a batch system.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from lcnrun.cli import app
from lcnrun.store import read_run, read_run_status
from lcnrun.store.claims import claim_path, claimed_runs, try_claim
from lcnrun.store.experiment import ExperimentDir

from barriers import Barrier, wait_gone

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

HEAD = """\
name: {name}
model: {{kind: lcn, filters: [3, 2], strides: [2, 1]}}
data: {{kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}}
init: {{kind: gaussian, scale: 0.3, seed: 1}}
dynamics: {{kind: gradient_descent, lr: 0.01, steps: {steps}}}
record: {{points: 12}}
"""


def write_spec(tmp_path: Path, sweep: str, name: str = "demo", steps: int = 100) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(HEAD.format(name=name, steps=steps) + textwrap.dedent(sweep))
    return p


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


MAIN = "import sys; from lcnrun.cli import main; sys.argv[0] = 'lcnrun'; main()"


def lcnrun(*args, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``lcnrun ARGS`` in a subprocess of its own session (its own process group); ``env``: extra
    environment variables (e.g. a :class:`Barrier`'s)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen([sys.executable, "-c", MAIN, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **{"preexec_fn": _default_sigint, **kwargs})


def _default_sigint() -> None:
    # as from a terminal: a test runner's worker (pytest-xdist) may ignore SIGINT, and a child
    # inherits that, so Ctrl-C would not reach the sweep at all
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def leftovers(xdir: ExperimentDir) -> list[str]:
    """Hidden files in runs/ (temporaries, claim files), not the checkpoints of stopped runs."""
    return sorted(n for n in os.listdir(xdir.runs_dir)
                  if n.startswith(".") and not n.endswith(".checkpoint.npz"))


def checkpointed(xdir: ExperimentDir) -> list[str]:
    """Ids of the runs with a checkpoint (``runs/.<run_id>.checkpoint.npz``)."""
    return sorted(n[1:-len(".checkpoint.npz")] for n in os.listdir(xdir.runs_dir)
                  if n.startswith(".") and n.endswith(".checkpoint.npz"))


def run_ids(xdir: ExperimentDir) -> list[str]:
    """Ids of the run files under their final names (not the hidden temporaries)."""
    if not xdir.runs_dir.is_dir():
        return []
    return sorted(n[:-3] for n in os.listdir(xdir.runs_dir) if n.endswith(".h5") and not n.startswith("."))


def manifest_ids(xdir: ExperimentDir) -> list[str]:
    return [row.run_id for row in xdir.read_manifest()]


def ran_now(output: str) -> int:
    m = re.search(r"\((\d+) run now", output)
    return int(m.group(1)) if m else 0


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table in ``output``, as lists of stripped cells."""
    return [[c.strip() for c in line.strip().strip("│").split("│")]
            for line in output.splitlines() if line.strip().startswith("│")]


FOUR = "sweep:\n  grid: {init.seed: [0, 1, 2, 3]}\n"  # two ensembles of 2 points with -j 2


def paused_sweep(tmp_path: Path, phase: str, *args, **kwargs):
    """A sweep of :data:`FOUR` with ``-j 2`` whose two workers wait at barrier ``phase``:
    ``(spec, results, xdir, barrier, sweep process, worker pids)``."""
    spec = write_spec(tmp_path, FOUR)
    results = tmp_path / "results"
    barrier = Barrier(tmp_path, phase)
    proc = lcnrun("sweep", spec, "-j", "2", "--results", results, *args, env=barrier.env, **kwargs)
    return spec, results, ExperimentDir(results / "demo"), barrier, proc, barrier.wait(2, proc)


def wait_until(condition, proc: subprocess.Popen, timeout: float = 60.0, every: float = 0.02) -> None:
    """Poll ``condition`` while ``proc`` (a sweep) runs; fail with its output if it ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended first:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)




# -- refusals: nothing runs, one message, exit 2 ---------------------------------------------------
@pytest.mark.parametrize("sweep, fragment", [
    ("sweep:\n  grid: {init.seed: [0, 1], model.stride: [[1, 1]]}\n",
     "model.stride: unknown key 'stride' (did you mean 'strides'?)"),
    ("sweep:\n  zip: {init.seed: [0, 1, 2], data.seed: [0, 1]}\n", "same length"),
    ("sweep:\n  grid: {data.input_size: [12, 3]}\n", "sweep point 1 (data.input_size=3)"),
    ("sweep:\n  grid: {model.strides: [[2, 1], [0, 1]]}\n", "must be a positive integer"),
])
def test_invalid_sweeps_are_refused_before_anything_runs(tmp_path, sweep, fragment):
    spec = write_spec(tmp_path, sweep)
    for args in (["sweep", spec], ["sweep", spec, "--dry-run"], ["run", spec, "--index", "0"]):
        r = invoke(*args, "--results", tmp_path / "results")
        assert r.exit_code == 2, r.output
        assert fragment in r.output and "Traceback" not in r.output
        assert str(spec) in r.output  # the message names the file
    assert not (tmp_path / "results").exists()


def test_bad_jobs_is_a_usage_error(tmp_path):
    spec = write_spec(tmp_path, "sweep:\n  grid: {init.seed: [0, 1]}\n")
    r = invoke("sweep", spec, "-j", "0", "--results", tmp_path / "results")
    assert r.exit_code == 2 and "--jobs" in r.output


# -- dry run, manifest, one point alone ------------------------------------------------------------
def test_dry_run_manifest_and_index(tmp_path):
    spec = write_spec(tmp_path, """\
        sweep:
          grid: {init.seed: [0, 1], model.strides: [[1, 1], [2, 1]]}
          zip: {dynamics.lr: [0.01, 0.005], dynamics.steps: [50, 80]}
          points: [{data.noise: 0.0}, {data.noise: 0.1}]
        """)
    results = tmp_path / "results"
    r = invoke("sweep", spec, "--dry-run", "--results", results)
    assert r.exit_code == 0, r.output
    assert not results.exists()  # a dry run writes nothing
    rows = table_rows(r.output)
    assert len(rows) == 16 and [int(i) for i, *_ in rows] == list(range(16))
    assert {state for _, _, state, _ in rows} == {"pending"}
    assert "init.seed=1 model.strides=[2, 1] dynamics.lr=0.005 dynamics.steps=80 data.noise=0.1" in rows[15][3]
    assert "16 pending; `lcnrun sweep` would run 16" in r.output

    # one point alone, as a cluster array task runs it
    r = invoke("run", spec, "--index", "13", "--results", results)
    assert r.exit_code == 0, r.output
    xdir = ExperimentDir(results / "demo")
    manifest = xdir.read_manifest()
    assert [m.index for m in manifest] == list(range(16))
    assert [m.run_id for m in manifest] == [rid for _, rid, _, _ in rows]
    assert manifest[13].overrides == {"init.seed": 1, "model.strides": [2, 1], "dynamics.lr": 0.01,
                                      "dynamics.steps": 50, "data.noise": 0.1}
    assert os.listdir(xdir.runs_dir) == [f"{manifest[13].run_id}.h5"]
    r = invoke("sweep", spec, "--dry-run", "--results", results)
    states = {index: state for index, _, state, _ in table_rows(r.output)}
    assert states["13"] == "completed" and list(states.values()).count("pending") == 15
    assert "15 pending" in r.output and "would run 15" in r.output

    # the sweep runs the 15 others and keeps point 13's file as it was
    before = xdir.run_path(manifest[13].run_id).stat().st_mtime_ns
    r = invoke("sweep", spec, "-j", "2", "--results", results)
    assert r.exit_code == 0, r.output
    assert "15 run now" in r.output and "16 completed" in r.output
    assert xdir.run_path(manifest[13].run_id).stat().st_mtime_ns == before
    assert sorted(os.listdir(xdir.runs_dir)) == sorted(f"{m.run_id}.h5" for m in manifest)
    for m in manifest:
        data = read_run(xdir.run_path(m.run_id))
        assert data.status == "completed" and data.run_id == m.run_id
        if m.index != 13:  # run by a sweep worker: one BLAS thread (threadpoolctl's or the variables' word)
            threads = data.provenance["blas_threads"]
            assert threads and set(threads.values()) <= {1, "1"}, threads


# -- failures are data -----------------------------------------------------------------------------
def test_a_diverging_point_does_not_stop_the_others(tmp_path):
    spec = write_spec(tmp_path, """\
        sweep:
          points: [{init.seed: 0}, {init.seed: 1}, {init.seed: 2, dynamics.lr: 1000.0}, {init.seed: 3}]
        """)
    results = tmp_path / "results"
    r = invoke("sweep", spec, "-j", "2", "--results", results)
    assert r.exit_code == 1, r.output
    xdir = ExperimentDir(results / "demo")
    ids = manifest_ids(xdir)
    statuses = [read_run_status(xdir.run_path(i)) for i in ids]
    assert statuses == ["completed", "completed", "diverged", "completed"]
    # the failing point is named, with its overrides and the reason
    assert re.search(rf"#2 {ids[2]} diverged \(init\.seed=2 dynamics\.lr=1000\.0\): loss .* exceeded",
                     r.output), r.output
    assert "3 completed, 1 diverged" in r.output and "1 point did not complete" in r.output
    with h5py.File(xdir.run_path(ids[2]), "r") as f:
        assert f.attrs["status"] == "diverged" and "exceeded" in f.attrs["message"]

    # resuming: nothing runs again, still exit 1 (the experiment is not all completed)
    r = invoke("sweep", spec, "--results", results)
    assert r.exit_code == 1 and "nothing to run" in r.output and "from earlier sweeps" in r.output
    stamps = {i: xdir.run_path(i).stat().st_mtime_ns for i in ids}
    # --rerun-failed runs the diverged point only
    r = invoke("sweep", spec, "--rerun-failed", "-j", "1", "--results", results)
    assert r.exit_code == 1 and "1 run now" in r.output
    changed = {i for i in ids if xdir.run_path(i).stat().st_mtime_ns != stamps[i]}
    assert changed == {ids[2]}
    # --force runs everything; -q prints only what did not complete, on stderr
    r = invoke("sweep", spec, "--force", "-q", "-j", "1", "--results", results)
    assert r.exit_code == 1
    assert "run now" not in r.output and "1 point did not complete" in r.output
    assert all(xdir.run_path(i).stat().st_mtime_ns != stamps[i] for i in ids)
    assert leftovers(xdir) == []


def test_a_run_that_raises_is_recorded_as_failed(tmp_path):
    """Point 1 reads a data file that is valid when the sweep starts (the spec is checked then)
    and garbage by the time the run reads it: the run raises, its file says failed and why."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", X=rng.standard_normal((8, 12)), Y=rng.standard_normal((8, 4)))
    spec = write_spec(tmp_path, "sweep:\n  points: [{init.seed: 0}, {data: {kind: file, path: data.npz}}, "
                                "{init.seed: 2}]\n")
    results = tmp_path / "results"
    xdir = ExperimentDir(results / "demo")
    # every point alone (--ensemble 1), one worker: point 1 reads its data only when point 0 is
    # done, and point 0 waits at the barrier while the file is spoilt
    barrier = Barrier(tmp_path, "computing")
    proc = lcnrun("sweep", spec, "-j", "1", "--ensemble", "1", "--results", results, env=barrier.env)
    barrier.wait(1, proc)
    (tmp_path / "data.npz").write_bytes(b"not an npz file any more")
    barrier.release()
    rc, out = finish(proc)
    assert rc == 1, out
    ids = manifest_ids(xdir)
    assert [read_run_status(xdir.run_path(i)) for i in ids] == ["completed", "failed", "completed"]
    failed = read_run(xdir.run_path(ids[1]))
    assert failed.provenance["error"] and "Traceback" in failed.provenance["error"]
    assert failed.attrs["message"] and f"#1 {ids[1]} failed" in out
    assert failed.attrs["message"] in out


# -- killing and resuming --------------------------------------------------------------------------


def test_sigkill_mid_sweep_then_resume_runs_every_point_exactly_once(tmp_path):
    """kill -9 of the sweep and its workers while each worker holds the claim of its third point
    (two done each: every point alone, two workers); the next sweep cleans up and runs the rest."""
    spec = write_spec(tmp_path, "sweep:\n  grid: {init.seed: [0, 1, 2, 3, 4, 5, 6, 7]}\n")
    results = tmp_path / "results"
    xdir = ExperimentDir(results / "demo")
    barrier = Barrier(tmp_path, "claimed", nth=3)
    proc = lcnrun("sweep", spec, "-j", "2", "--ensemble", "1", "--results", results, env=barrier.env)
    try:
        barrier.wait(2, proc)
        assert len(claimed_runs(xdir.runs_dir)) == 2
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, at once
        finish(proc)
    ids = manifest_ids(xdir)
    done = set(run_ids(xdir))
    assert len(done) == 4
    for rid in done:  # every file under its final name is whole
        assert read_run(xdir.run_path(rid)).status == "completed"
    # what a kill -9 may leave: a temporary of a dead writer, a claim file nobody holds
    fake_pid = 4_000_000  # above pid_max: no such process
    host = re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename)
    pending = [i for i in ids if i not in done]
    (xdir.runs_dir / f".{pending[0]}.{host}.{fake_pid}.0badc0de.tmp.h5").write_bytes(b"partial")
    claim_path(xdir.runs_dir, pending[1]).write_text(f"{host} {fake_pid} x\n")
    (xdir.root / f".manifest.{host}.{fake_pid}.0badc0de.tmp.tsv").write_text("index\t")

    code, out = finish(lcnrun("sweep", spec, "-j", "2", "--results", results))
    assert code == 0, out
    assert ran_now(out) == len(ids) - len(done)  # the others, once each
    assert run_ids(xdir) == sorted(ids)
    assert leftovers(xdir) == []
    assert sorted(os.listdir(xdir.root)) == [".index", ".lock", "experiment.yaml", "manifest.tsv", "runs"]
    for rid in ids:
        assert read_run(xdir.run_path(rid)).status == "completed"


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_sweep_ends_cleanly_and_resumes(tmp_path, signum, code):
    """Ctrl-C abandons the runs in progress (no file: pending); SIGTERM lets them write
    'stopped' run files, which the next sweep runs again. The 4 points form two ensembles of 2,
    one per worker; the signal reaches both workers inside their computation (a barrier)."""
    spec, results, xdir, barrier, proc, workers = paused_sweep(tmp_path, "computing")
    os.killpg(proc.pid, signum)
    rc, out = finish(proc, timeout=120)
    assert rc == code, out
    assert "interrupted" in out and "run the same command again" in out
    wait_gone(workers)
    assert leftovers(xdir) == []
    states = [read_run_status(xdir.run_path(rid)) for rid in run_ids(xdir)]
    assert states == ([] if signum == signal.SIGINT else ["stopped"] * 4)
    # SIGTERM: each stopped run keeps its state (Ctrl-C abandons the computation)
    assert checkpointed(xdir) == ([] if signum == signal.SIGINT else run_ids(xdir))
    for rid in run_ids(xdir):  # whole files, with no trajectory: nothing was computed
        assert read_run(xdir.run_path(rid)).attrs["message"] == "stopped: received SIGTERM"
    rc, out = finish(lcnrun("sweep", spec, "-j", "1", "--results", results))
    assert rc == 0, out
    assert ran_now(out) == 4
    assert {read_run_status(xdir.run_path(i)) for i in manifest_ids(xdir)} == {"completed"}
    assert checkpointed(xdir) == []  # completed runs remove their checkpoints


@pytest.mark.parametrize("phase, left", [("started", []), ("claimed", ["stopped"] * 4),
                                         ("computing", ["stopped"] * 4),
                                         ("writing", ["completed"] * 4)])
def test_sigterm_at_every_phase_leaves_whole_files(tmp_path, phase, left):
    """SIGTERM to a sweep whose two workers wait at ``phase``: before a claim nothing is written;
    after the claim (provenance, set-up) and during the computation every point of the task is
    'stopped' (never computed to the end: the bug this guards against); while a file is being
    written, the computation is done and every file is written whole."""
    spec, results, xdir, barrier, proc, workers = paused_sweep(tmp_path, phase)
    os.killpg(proc.pid, signal.SIGTERM)
    rc, out = finish(proc, timeout=120)
    assert rc == 143, out
    wait_gone(workers)
    assert sorted(read_run_status(xdir.run_path(r)) for r in run_ids(xdir)) == left
    if xdir.runs_dir.is_dir():
        assert leftovers(xdir) == [] and claimed_runs(xdir.runs_dir) == {}


@pytest.mark.parametrize("phase, left", [("started", "stopped"), ("claimed", "stopped"),
                                         ("computing", "stopped"), ("writing", "completed")])
def test_sigterm_to_lcnrun_run_at_every_phase(tmp_path, phase, left):
    """`lcnrun run --index` (a Slurm task's command): a SIGTERM after its start (while the spec
    is loaded, the claim taken, the run set up) or inside the computation gives a whole
    'stopped' file; one while the file is written lets that computed file be written whole."""
    spec = write_spec(tmp_path, "sweep:\n  grid: {init.seed: [0, 1]}\n")
    results = tmp_path / "results"
    xdir = ExperimentDir(results / "demo")
    barrier = Barrier(tmp_path, phase)
    proc = lcnrun("run", spec, "--index", "1", "--results", results, env=barrier.env)
    barrier.wait(1, proc)
    os.kill(proc.pid, signal.SIGTERM)
    rc, out = finish(proc)
    assert rc == (0 if left == "completed" else 1), out
    assert [read_run_status(xdir.run_path(r)) for r in run_ids(xdir)] == [left]
    assert leftovers(xdir) == [] and claimed_runs(xdir.runs_dir) == {}


def test_a_sweep_that_ignores_sigint_has_workers_that_ignore_it(tmp_path):
    """A sweep started with SIGINT ignored (``cmd &`` in a script): a SIGINT to its process
    group must not kill the workers behind its back (their points would be 'lost')."""
    spec, results, xdir, barrier, proc, _ = paused_sweep(
        tmp_path, "computing", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    os.killpg(proc.pid, signal.SIGINT)
    barrier.release()
    rc, out = finish(proc)
    assert rc == 0 and ran_now(out) == 4, out
    assert [read_run_status(xdir.run_path(r)) for r in run_ids(xdir)] == ["completed"] * 4


def test_workers_of_a_killed_sweep_stop_and_release_their_claims(tmp_path):
    """kill -9 of the sweep process alone: its workers (inside their computation) are told by
    the kernel, write 'stopped' files for their whole ensembles, release the claims and exit."""
    spec, results, xdir, barrier, proc, workers = paused_sweep(tmp_path, "computing")
    os.kill(proc.pid, signal.SIGKILL)  # the sweep only, not its process group
    finish(proc)
    wait_gone(workers)
    assert sorted(read_run_status(xdir.run_path(r)) for r in run_ids(xdir)) == ["stopped"] * 4
    assert claimed_runs(xdir.runs_dir) == {}
    rc, out = finish(lcnrun("sweep", spec, "-j", "2", "--results", results))
    assert rc == 0 and ran_now(out) == 4, out


def test_two_sweeps_at_once_run_each_point_once(tmp_path):
    """Two sweeps of one experiment, each worker held right after its first claim until both
    hold one: they run at the same time, and every point is computed once."""
    spec = write_spec(tmp_path, "sweep:\n  grid: {init.seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}\n")
    results = tmp_path / "results"
    barrier = Barrier(tmp_path, "claimed")
    first = lcnrun("sweep", spec, "-j", "1", "--ensemble", "1", "--results", results, env=barrier.env)
    second = lcnrun("sweep", spec, "-j", "1", "--ensemble", "1", "--results", results, env=barrier.env)
    barrier.wait(2)
    barrier.release()
    (c1, o1), (c2, o2) = finish(first), finish(second)
    assert c1 == 0 and c2 == 0, o1 + o2
    assert ran_now(o1) + ran_now(o2) == 10, o1 + o2
    xdir = ExperimentDir(results / "demo")
    assert run_ids(xdir) == sorted(manifest_ids(xdir))
    assert leftovers(xdir) == []
    for rid in manifest_ids(xdir):
        assert read_run(xdir.run_path(rid)).status == "completed"


def test_a_killed_worker_fails_its_point_only(tmp_path):
    """The OOM killer's SIGKILL to one worker: that point is recorded failed, naming the signal,
    a new worker takes over, the sweep ends (no hang) with exit 1. (Every point alone here; a
    killed worker computing an ensemble fails the points of its ensemble: test_ensemble.py.)"""
    spec = write_spec(tmp_path, "sweep:\n  grid: {init.seed: [0, 1, 2, 3]}\n")
    results = tmp_path / "results"
    xdir = ExperimentDir(results / "demo")
    barrier = Barrier(tmp_path, "computing")
    proc = lcnrun("sweep", spec, "-j", "2", "--ensemble", "1", "--results", results, env=barrier.env)
    pids = barrier.wait(2, proc)
    held = claimed_runs(xdir.runs_dir)
    victim_run = next(r for r, h in held.items() if int(h.split()[1]) == pids[0])
    os.kill(pids[0], signal.SIGKILL)
    barrier.release()
    rc, out = finish(proc, timeout=120)
    assert rc == 1, out
    assert re.search(rf"{victim_run} failed .*killed by SIGKILL", out), out
    ids = manifest_ids(xdir)
    statuses = {i: read_run_status(xdir.run_path(i)) for i in ids}
    assert statuses[victim_run] == "failed"
    assert [s for i, s in statuses.items() if i != victim_run] == ["completed"] * 3
    assert "SIGKILL" in read_run(xdir.run_path(victim_run)).attrs["message"]
    assert leftovers(xdir) == []


# -- claims ----------------------------------------------------------------------------------------
def test_a_point_claimed_elsewhere_is_waited_for_not_run_twice(tmp_path):
    spec = write_spec(tmp_path, "sweep:\n  grid: {init.seed: [0, 1, 2]}\n")
    results = tmp_path / "results"
    invoke("sweep", spec, "--dry-run", "--results", results)
    r = invoke("run", spec, "--index", "0", "--results", results)  # creates the folder
    xdir = ExperimentDir(results / "demo")
    ids = manifest_ids(xdir)
    os.unlink(xdir.run_path(ids[0]))
    claim = try_claim(xdir.runs_dir, ids[1])  # "another sweep" is running point 1
    assert claim is not None and try_claim(xdir.runs_dir, ids[1]) is None
    status = json.loads(invoke("status", results / "demo", "--json").output)
    assert status["counts"] == {"running": 1, "pending": 2}
    proc = lcnrun("sweep", spec, "-j", "2", "--results", results)
    wait_until(lambda: xdir.run_path(ids[0]).exists() and xdir.run_path(ids[2]).exists(), proc)
    assert proc.poll() is None  # still waiting for point 1
    assert not xdir.run_path(ids[1]).exists()
    # the other process finishes point 1 (here: by writing a copy of point 0's file) and lets go
    xdir.run_path(ids[1]).write_bytes(xdir.run_path(ids[0]).read_bytes())
    claim.release()
    rc, out = finish(proc)
    assert rc == 0, out
    assert ran_now(out) == 2
    assert leftovers(xdir) == []
