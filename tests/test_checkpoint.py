"""Checkpoints and resume: a run stopped by SIGTERM (at the ``computing`` barrier: the K-th poll of
a process, between two steps) keeps its state beside its future run file; the next ``lcnrun run``
or ``sweep`` of the point resumes from it. The independent value each resumed run is compared
with is the same run computed without interruption, in another results folder: bitwise equal for
gradient descent and the explicit Runge-Kutta methods, however often stopped; within the
tolerance for LSODA (a fresh solver). No sleeps, no step counts calibrated to a machine: where a
process stops is fixed by the barrier's poll count.
"""
from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lcnrun.cli import app
from lcnrun.store import read_run
from lcnrun.store.checkpoint import Checkpoint, checkpoint_path, read_checkpoint, write_checkpoint
from lcnrun.store.experiment import ExperimentDir

from barriers import Barrier, wait_gone
from test_sweep import finish, lcnrun

runner = CliRunner()

LCN = """\
name: {name}
model: {{kind: lcn, filters: [3, 2], strides: [2, 1]}}
data: {{kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}}
init: {{kind: gaussian, scale: 0.3, seed: 1}}
record: {{points: 30}}
"""

#: the compiled kernel polls between chunks of KERNEL_CHUNK = 200,000 member-steps: 7 polls
DESCENT = "dynamics: {kind: gradient_descent, lr: 0.01, steps: 1200000}\n"
#: the numpy step loop (a non-quadratic loss has no compiled form) polls at every step
DESCENT_NUMPY = "loss: {kind: lp, p: 3}\ndynamics: {kind: gradient_descent, lr: 0.0005, steps: 300}\n"
DOP853 = "dynamics: {kind: gradient_flow, t_max: 40.0, method: DOP853}\n"
LSODA = "dynamics: {kind: gradient_flow, t_max: 40.0, method: LSODA, rtol: 1.0e-9, atol: 1.0e-11}\n"


def write_spec(folder: Path, body: str, sweep: str = "", name: str = "ck") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.yaml"
    p.write_text(LCN.format(name=name) + body + textwrap.dedent(sweep))
    return p


def only_run(results: Path, name: str = "ck") -> Path:
    runs = [p for p in (results / name / "runs").glob("*.h5")]
    assert len(runs) == 1, runs
    return runs[0]


def stop_at(tmp_path: Path, round_: int, nth: int, *args, signum=signal.SIGTERM, env=None) -> str:
    """``lcnrun ARGS`` stopped by ``signum`` at its ``nth`` poll; its output."""
    folder = tmp_path / f"round{round_}"
    folder.mkdir()
    barrier = Barrier(folder, "computing", nth=nth)
    proc = lcnrun(*args, env={**barrier.env, **(env or {})})
    pids = barrier.wait(1, proc)
    os.killpg(proc.pid, signum)
    rc, out = finish(proc)
    assert rc != 0, out
    wait_gone(pids)
    return out


def diff_exit(a: Path, b: Path, *tol: str) -> tuple[int, str]:
    result = runner.invoke(app, ["diff", str(a), str(b), *tol])
    return result.exit_code, result.output


def resume_to_the_end(spec: Path, results: Path, ref: Path):
    """Run ``spec`` to its end; its run file must be bitwise ``ref``'s; returns it (read)."""
    rc, out = finish(lcnrun("run", spec, "--results", results))
    assert rc == 0, out
    path = only_run(results)
    code, text = diff_exit(ref, path, "--rtol", "0", "--atol", "0")
    assert code == 0, text
    return read_run(path)


def uninterrupted(tmp_path: Path, body: str, sweep: str = "") -> Path:
    spec = write_spec(tmp_path / "ref", body, sweep)
    results = tmp_path / "ref" / "results"
    rc, out = finish(lcnrun("sweep" if sweep else "run", spec, "--results", results))
    assert rc == 0, out
    return results / "ck"


@pytest.mark.parametrize("body, polls", [(DESCENT, (2, 3, 2)), (DESCENT_NUMPY, (40, 7, 100)),
                                         (DOP853, (30, 5, 60))],
                         ids=["descent-compiled", "descent-numpy", "DOP853"])
def test_stopped_three_times_and_resumed_is_bitwise_the_uninterrupted_run(tmp_path, body, polls):
    ref = only_run(uninterrupted(tmp_path, body).parent)
    spec = write_spec(tmp_path / "work", body)
    results = tmp_path / "work" / "results"
    steps = []
    for i, nth in enumerate(polls):
        stop_at(tmp_path, i, nth, "run", spec, "--results", results)
        path = only_run(results)
        assert read_run(path).status == "stopped"
        found, why = read_checkpoint(checkpoint_path(path))
        assert found is not None, why
        steps.append(found.state["step"] if "step" in found.state else found.state["t"])
    assert steps == sorted(steps) and steps[0] > 0 and len(set(steps)) == 3  # progress kept each time
    data = resume_to_the_end(spec, results, ref)
    assert data.status == "completed"
    assert not checkpoint_path(only_run(results)).exists()  # a completed run removes its checkpoint
    resumed = data.provenance["resumed_from"]
    assert len(resumed) == 3 and all("at" in r for r in resumed)
    assert [r.get("step", r["t"]) for r in resumed] == steps


def test_lsoda_resumes_with_a_fresh_solver_within_tolerance_and_says_so(tmp_path):
    ref = only_run(uninterrupted(tmp_path, LSODA).parent)
    spec = write_spec(tmp_path / "work", LSODA)
    results = tmp_path / "work" / "results"
    stop_at(tmp_path, 0, 25, "run", spec, "--results", results)
    stop_at(tmp_path, 1, 10, "run", spec, "--results", results)
    rc, out = finish(lcnrun("run", spec, "--results", results))
    assert rc == 0, out
    data = read_run(only_run(results))
    resumed = data.provenance["resumed_from"]
    assert len(resumed) == 2 and all("fresh solver" in r["note"] for r in resumed)
    assert 0 < resumed[0]["t"] < resumed[1]["t"] < 40.0
    a, b = read_run(ref), data
    np.testing.assert_array_equal(a.trajectory["t"], b.trajectory["t"])
    # a restart is a new integration from a state accurate to the tolerance: of its order
    scale = np.max(np.abs(a.trajectory["params/layer_0"]))
    np.testing.assert_allclose(b.trajectory["params/layer_0"], a.trajectory["params/layer_0"],
                               rtol=0, atol=1e-6 * scale)


def test_sigterm_during_an_ensemble_keeps_every_members_progress(tmp_path):
    """Three points of one DOP853 ensemble (one worker: all members step together), of different
    lengths: the SIGTERM at the 60th poll leaves each member a checkpoint of its own progress
    (the short one: its end); the next sweep resumes every member, each bitwise its
    uninterrupted run."""
    sweep = "sweep:\n  zip: {init.seed: [1, 2, 3], dynamics.t_max: [2.0, 40.0, 20.0]}\n"
    ref = uninterrupted(tmp_path, DOP853, sweep)
    spec = write_spec(tmp_path / "work", DOP853, sweep)
    results = tmp_path / "work" / "results"
    stop_at(tmp_path, 0, 60, "sweep", spec, "-j", "1", "--results", results)
    xdir = ExperimentDir(results / "ck")
    ids = sorted(p.stem for p in xdir.runs_dir.glob("*.h5"))
    assert len(ids) == 3
    states = {}
    for rid in ids:
        assert read_run(xdir.run_path(rid)).status == "stopped"
        found, why = read_checkpoint(checkpoint_path(xdir.run_path(rid)))
        assert found is not None, why
        states[rid] = found.state
    assert all(s["t"] > 0 for s in states.values())
    ended = [s for s in states.values() if not s["running"]]
    assert len(ended) == 1 and ended[0]["t"] == 2.0  # the short member had reached its end
    rc, out = finish(lcnrun("sweep", spec, "-j", "1", "--results", results))
    assert rc == 0, out
    for rid in ids:
        data = read_run(xdir.run_path(rid))
        assert data.status == "completed" and len(data.provenance["resumed_from"]) == 1
        code, text = diff_exit(ref / "runs" / f"{rid}.h5", xdir.run_path(rid), "--rtol", "0", "--atol", "0")
        assert code == 0, text


@pytest.mark.parametrize("setting", ["option", "spec"])
def test_checkpoints_every_poll_survive_a_kill(tmp_path, setting):
    """With ``--checkpoint-every 0`` (or the spec's ``record: {checkpoint_every: 0}``) a checkpoint
    is written at every poll: a ``kill -9`` (no chance to save anything) still leaves the state of
    the poll before, and the run resumes from it, bitwise. The spec key says how the run is kept,
    not what it computes: the run id is that of the spec without it."""
    ref = only_run(uninterrupted(tmp_path, DOP853).parent)
    spec = write_spec(tmp_path / "work", DOP853)
    option = ["--checkpoint-every", "0"]
    if setting == "spec":
        option = []
        spec.write_text(spec.read_text().replace("record: {points: 30}",
                                                 "record: {points: 30, checkpoint_every: 0}"))
    results = tmp_path / "work" / "results"
    stop_at(tmp_path, 0, 40, "run", spec, "--results", results, *option, signum=signal.SIGKILL)
    runs = results / "ck" / "runs"
    assert not list(runs.glob("*.h5"))  # killed: no run file
    cks = list(runs.glob(".*.checkpoint.npz"))
    assert [c.name for c in cks] == [f".{ref.stem}.checkpoint.npz"]  # the same run id
    found, why = read_checkpoint(cks[0])
    assert found is not None and found.state["t"] > 0, why
    data = resume_to_the_end(spec, results, ref)
    assert data.provenance["resumed_from"][0]["t"] == found.state["t"]
    assert ("checkpoint_every: 0" in data.spec_text) == (setting == "spec")


@pytest.mark.parametrize("key, value", [("scipy", "0.0.1"), ("source_sha256", "0" * 64),
                                        ("spec_sha256", "0" * 64)])
def test_a_checkpoint_of_another_code_version_or_spec_is_not_used(tmp_path, key, value):
    """Another numerical library version, other package sources (``provenance.source_sha256``:
    what a checkpoint records as its code, not the git commit), or another computation (the
    sha256 of the text the run id hashes): the run starts over and says why."""
    import hashlib  # noqa: PLC0415

    from lcnrun import provenance  # noqa: PLC0415
    from lcnrun.spec import canonical_json, load_experiment  # noqa: PLC0415

    ref = only_run(uninterrupted(tmp_path, DOP853).parent)
    spec = write_spec(tmp_path / "work", DOP853)
    results = tmp_path / "work" / "results"
    stop_at(tmp_path, 0, 30, "run", spec, "--results", results)
    ck = checkpoint_path(only_run(results))
    found, _ = read_checkpoint(ck)
    assert found.meta["code"]["source_sha256"] == provenance.source_sha256()
    run_spec = load_experiment(spec).points[0].run_spec
    assert found.meta["spec_sha256"] == hashlib.sha256(canonical_json(run_spec).encode()).hexdigest()
    if key == "spec_sha256":
        found.meta[key] = value
    else:
        found.meta["code"] = dict(found.meta["code"], **{key: value})
    write_checkpoint(ck, found)
    data = resume_to_the_end(spec, results, ref)
    assert "resumed_from" not in data.provenance
    said = data.provenance["checkpoint_ignored"]
    assert (f"another code version ({key}: '{value}'" in said if key != "spec_sha256"
            else "another spec (the text its run id hashes differs)" in said)
    assert "starts over" in said


def test_checkpoint_file_round_trip_is_exact(tmp_path):
    """Arrays bit for bit (NaN, inf, -0.0, ints, bools), nested lists, tuples and scalars."""
    rng = np.random.default_rng(0)
    state = {"t": 0.1 + 0.2, "y": rng.standard_normal((3, 4)), "k": np.arange(5, dtype=np.int64),
             "flags": np.array([True, False]), "odd": np.array([np.nan, np.inf, -0.0, 5e-324]),
             "nested": [{"a": 1, "b": None, "c": "x"}, (1.5, np.float64(2.5))], "empty": np.zeros((0, 4))}
    path = tmp_path / ".r.checkpoint.npz"
    write_checkpoint(path, Checkpoint(state, {"run_id": "r"}))
    back, why = read_checkpoint(path)
    assert why == "" and back.meta["run_id"] == "r"
    for key in ("y", "k", "flags", "odd", "empty"):
        assert back.state[key].dtype == state[key].dtype
        assert back.state[key].tobytes() == state[key].tobytes()
    assert back.state["t"] == state["t"] and back.state["nested"] == [{"a": 1, "b": None, "c": "x"}, (1.5, 2.5)]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    path.write_bytes(b"not a zip")
    assert read_checkpoint(path)[0] is None and "not a readable checkpoint" in read_checkpoint(path)[1]


@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA"])
def test_solver_loop_is_solve_ivp_bit_for_bit(method):
    """``SolverRun`` (the resumable loop of flows) against scipy's own ``solve_ivp``: the same
    stored states, event roots and states, status and counts, bit for bit; for the explicit
    methods a run saved and resumed midway is bitwise the same again."""
    from scipy.integrate import solve_ivp

    from lcnrun.core.dynamics.solver_loop import SolverRun

    A = np.array([[-1.0, 2.0, 0.0], [-2.0, -1.0, 0.5], [0.0, -0.5, -3.0]])

    def fun(t, y):
        return A @ y + 0.1 * np.sin(y)

    def crossing(t, y):  # non-terminal, both directions: y_0 changes sign (several times)
        return y[0]
    crossing.direction = 0.0

    def rising(t, y):  # non-terminal, upward crossings only: y_1 becomes positive
        return y[1]
    rising.direction = 1.0

    def small(t, y):  # terminal: |y| falls below 0.05
        return float(np.linalg.norm(y)) - 0.05
    small.terminal = True
    small.direction = -1.0

    y0, t_eval = np.array([1.0, 0.5, -0.3]), np.linspace(0.0, 10.0, 41)
    ref = solve_ivp(fun, (0.0, 10.0), y0, method=method, t_eval=t_eval, events=[crossing, rising, small],
                    rtol=1e-8, atol=1e-10)

    def solve(resume_at=None):
        run = SolverRun(fun, y0, 10.0, t_eval, [crossing, rising, small], method=method, rtol=1e-8, atol=1e-10)
        steps = 0
        while run.status is None:
            if steps == resume_at:
                saved = run.state()
                run = SolverRun(fun, y0, 10.0, t_eval, [crossing, rising, small], method=method, rtol=1e-8,
                                atol=1e-10)
                run.resume(saved)
            run.step()
            steps += 1
        return run

    run = solve()
    assert ref.status == run.status == 1 and run.terminated_by == 2
    assert np.asarray(run.ts).tobytes() == ref.t.tobytes()
    assert np.asarray(run.ys).tobytes() == ref.y.T.tobytes()
    for e in range(3):
        assert np.asarray(run.t_events[e]).tobytes() == ref.t_events[e].tobytes()
        assert np.asarray(run.y_events[e]).tobytes() == ref.y_events[e].tobytes()
    assert len(run.t_events[0]) >= 2 and len(run.t_events[1]) >= 1
    # the upward event saw only the upward crossings of y_1 (the state just after each is rising)
    assert all(fun(0.0, y)[1] > 0 for y in run.y_events[1])
    assert tuple(run.counts) == (ref.nfev, ref.njev, ref.nlu)
    if method in ("RK23", "RK45", "DOP853"):
        again = solve(resume_at=7)
        assert np.asarray(again.ts).tobytes() == ref.t.tobytes()
        assert np.asarray(again.ys).tobytes() == ref.y.T.tobytes()
        assert np.asarray(again.t_events[2]).tobytes() == ref.t_events[2].tobytes()
        assert tuple(again.counts) == (ref.nfev, ref.njev, ref.nlu)


def test_a_checkpoint_that_cannot_be_written_does_not_fail_the_run(tmp_path):
    """A directory where the checkpoint should go: every save fails (``checkpoint_every=0``), the
    run completes with the same numbers as without checkpoints and says so in its warnings."""
    from lcnrun.runner import execute, run_to_file
    from lcnrun.spec import load_experiment

    spec = write_spec(tmp_path, DESCENT_NUMPY)
    point = load_experiment(spec).points[0]
    path = tmp_path / "runs" / f"{point.run_id}.h5"
    checkpoint_path(path).mkdir(parents=True)
    record = run_to_file(point.run_spec, point.run_id, path, checkpoint_every=0.0)
    assert record.status == "completed"
    assert "checkpoint not written" in record.attrs["warnings"]
    plain = execute(point.run_spec, point.run_id)
    for key, value in plain.trajectory.items():
        assert np.asarray(record.trajectory[key]).tobytes() == np.asarray(value).tobytes(), key


def test_the_code_version_of_a_checkpoint_is_the_package_source(tmp_path):
    """The hash that ties a checkpoint to its code: the same for a copy of the package elsewhere
    (relative paths), changed by a one-character edit of any module or figure spec, blind to
    compiled caches."""
    import shutil  # noqa: PLC0415

    from lcnrun import provenance  # noqa: PLC0415

    copy = tmp_path / "copy" / "lcnrun"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert provenance.source_sha256(copy) == provenance.source_sha256()
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert provenance.source_sha256.__wrapped__(copy) == provenance.source_sha256()
    for name in ("core/losses.py", "figures/specs/invariants.yaml"):
        edited = tmp_path / name.replace("/", "_")
        shutil.copytree(copy, edited, ignore=shutil.ignore_patterns("__pycache__"))
        target = edited / name
        target.write_text(target.read_text() + " ")
        assert provenance.source_sha256(edited) != provenance.source_sha256()


def test_a_negative_checkpoint_interval_is_a_spec_error(tmp_path):
    spec = write_spec(tmp_path, DOP853)
    spec.write_text(spec.read_text().replace("record: {points: 30}",
                                             "record: {points: 30, checkpoint_every: -1}"))
    r = runner.invoke(app, ["validate", str(spec)])
    assert r.exit_code == 2 and "record.checkpoint_every" in r.output and "non-negative" in r.output
