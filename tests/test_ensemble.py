"""Ensembles: many trajectories in one computation, each member exactly its run alone.

- the compiled square-loss evaluation (``lcnrun.core.kernels``) equals the numpy end-to-end map and
  pull-back (the reference, itself checked against finite differences in test_models.py);
- gradient descent: each member of an ensemble with mixed step sizes, numbers of steps, stopping
  rules and record grids is bitwise its run alone, and equals plain numpy gradient descent with the
  reference gradient to 1e-12 relative; a diverging member stops, the others go on;
- gradient flow (RK23/RK45/DOP853, one step size per member): members are bitwise their runs
  alone, agree with ``solve_ivp`` to the tolerance, and a stiff member leaves its neighbours'
  steps and numbers unchanged;
- the runner: ``execute_ensemble`` gives the records ``execute`` gives; members may train on
  different data;
- the sweep: grouping points into ensembles writes the same run files (ids, layout, numbers) as
  running every point alone; ``lcnrun run --indices`` runs a group in one process;
- memory: the arrays an ensemble of 10,000 members holds are its stored trajectories, nothing that
  grows with the number of steps.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from barriers import Barrier
from lcnrun.cli import app
from lcnrun.core.data import GaussianData, TeacherTarget, build_dataset
from lcnrun.core.dynamics import COMPLETED, DIVERGED, GradientDescent, GradientFlow
from lcnrun.core.dynamics.gradient_flow import flow_trajectory
from lcnrun.core.losses import LOSSES
from lcnrun.core.models import LCN
from lcnrun.core.options import Section
from lcnrun.core.problem import Problem, ProblemEnsemble
from lcnrun.core.recording import RecordOptions, record_steps
from lcnrun.runner import ensemble_key, execute, execute_ensemble
from lcnrun.spec import load_experiment_text
from lcnrun.store import read_run
from lcnrun.store.claims import claimed_runs

cli = CliRunner()


def assert_same_trajectory(a, b):
    """Bitwise equal stored numbers, same status, message and attributes."""
    for name in ("t", "theta", "loss", "grad_norm"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.status, a.message) == (b.status, b.message)
    np.testing.assert_equal(a.attrs, b.attrs)
    np.testing.assert_equal(a.series, b.series)


# ---------------------------------------------------------------------------------------------
# the compiled evaluation
def test_compiled_value_and_grad_equals_the_numpy_reference(arch, make_model, make_problem, rng):
    model = make_model(arch)
    problem = make_problem(model, n_samples=7)
    theta = rng.standard_normal((6, model.n_params))
    loss, grad = problem.value_and_grad(theta)
    ref_loss, ref_grad = problem.numpy_value_and_grad(theta)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-14 * np.abs(ref_grad).max())
    # each member alone: bitwise the same numbers
    for b in range(len(theta)):
        l1, g1 = problem.value_and_grad(theta[b: b + 1])
        assert l1[0] == loss[b] and np.array_equal(g1[0], grad[b])


# ---------------------------------------------------------------------------------------------
# gradient descent
def descent_members():
    """(options, record) per member: mixed lrs (the last one diverges), steps, rules, grids."""
    o = GradientDescent.Options
    return [
        (o(lr=0.01, steps=300), RecordOptions(points=20)),
        (o(lr=0.015, steps=200), RecordOptions(points=50, spacing="linear")),
        (o(lr=0.005, steps=500, loss_below=None, grad_norm_below=None), RecordOptions(points=7)),
        (o(lr=0.02, steps=400, loss_below=-1.0), RecordOptions(points=30)),  # never holds
        (o(lr=6.0, steps=300), RecordOptions(points=20)),  # diverges within a few steps
    ]


@pytest.mark.parametrize("name", ["lcn-1d-k432-s221", "lcn-2d-k32.23-s21.13", "dense-2.3.3.4.2"])
def test_descent_members_equal_their_runs_alone_and_plain_numpy_descent(name, make_model, make_problem, rng):
    model = make_model(name)
    problem = make_problem(model, n_samples=6)
    members = descent_members()
    theta0 = 0.5 * rng.standard_normal((len(members), model.n_params))
    ensemble = GradientDescent.run_members(problem, theta0, [r for _, r in members], [o for o, _ in members])
    for b, ((opts, rec), traj) in enumerate(zip(members, ensemble)):
        alone = GradientDescent(opts).run(problem, theta0[b: b + 1], rec)[0]
        assert_same_trajectory(traj, alone)
        if opts.lr > 1:
            assert traj.status == DIVERGED and 0 < traj.attrs["n_steps"] < opts.steps
            continue
        assert traj.status == COMPLETED and traj.attrs["n_steps"] == opts.steps
        np.testing.assert_array_equal(traj.series["step"], record_steps(opts.steps, opts.lr, rec))
        # plain gradient descent with the numpy gradient (no kernel), at the stored steps
        theta = theta0[b: b + 1].copy()
        ref = {}
        for k in range(opts.steps + 1):
            ref[k] = theta[0].copy()
            theta = theta - opts.lr * problem.numpy_value_and_grad(theta)[1]
        expect = np.stack([ref[k] for k in traj.series["step"]])
        np.testing.assert_allclose(traj.theta, expect, rtol=1e-12, atol=1e-12 * np.abs(expect).max())


def test_a_diverged_member_stops_and_stopping_rules_apply_per_member(make_model, make_problem, rng):
    model = make_model("lcn-1d-k432-s221")
    problem = make_problem(model, n_samples=6)
    theta0 = 0.5 * rng.standard_normal((4, model.n_params))
    record = RecordOptions(points=40)
    ref = GradientDescent(GradientDescent.Options(lr=0.01, steps=400)).run(problem, theta0, record)
    level = float(np.sqrt(ref[1].loss[0] * ref[1].loss[-1]))
    gn = float(np.sqrt(ref[2].grad_norm[0] * ref[2].grad_norm.min()))
    o = GradientDescent.Options
    options = [o(lr=0.01, steps=400), o(lr=0.01, steps=400, loss_below=level),
               o(lr=0.01, steps=400, grad_norm_below=gn), o(lr=8.0, steps=400)]
    out = GradientDescent.run_members(problem, theta0, [record] * 4, options)
    assert out[0].status == COMPLETED and out[0].attrs["stop_reason"] == "" and out[0].t[-1] == pytest.approx(4.0)
    assert out[1].attrs["stop_reason"] == "loss_below" and out[1].loss[-1] <= level < out[1].loss[-2]
    assert out[2].attrs["stop_reason"] == "grad_norm_below" and out[2].grad_norm[-1] <= gn
    assert out[3].status == DIVERGED and ("exceeded" in out[3].message or "non-finite" in out[3].message)
    assert_same_trajectory(out[0], ref[0])  # its neighbours stopping changed nothing
    for b in (1, 2):  # the rules stop a member at the step its run alone stops
        assert_same_trajectory(out[b], GradientDescent(options[b]).run(problem, theta0[b: b + 1], record)[0])


# ---------------------------------------------------------------------------------------------
# gradient flow
@pytest.mark.parametrize("method", ["RK45", "DOP853"])
def test_flow_members_equal_their_runs_alone_and_solve_ivp(method, make_model, make_problem, rng):
    model = make_model("lcn-1d-k432-s221")
    problem = make_problem(model, n_samples=6)
    theta0 = 0.5 * rng.standard_normal((4, model.n_params))
    f = GradientFlow.Options
    options = [f(t_max=3.0, method=method, rtol=1e-9, atol=1e-11),
               f(t_max=1.5, method=method, rtol=1e-7, atol=1e-9),
               f(t_max=3.0, method=method, rtol=1e-9, atol=1e-11, loss_below=0.0),
               f(t_max=2.0, method=method, rtol=1e-10, atol=1e-12)]
    records = [RecordOptions(points=15), RecordOptions(points=10, spacing="linear"),
               RecordOptions(points=15), RecordOptions(points=12)]
    out = GradientFlow.run_members(problem, theta0, records, options)
    for b in range(4):
        alone = GradientFlow(options[b]).run(problem, theta0[b: b + 1], records[b])[0]
        assert_same_trajectory(out[b], alone)
        ref, res = flow_trajectory(problem, theta0[b], records[b], options[b])  # scipy's solve_ivp
        np.testing.assert_allclose(out[b].t, ref.t, rtol=1e-14)
        scale = np.abs(ref.theta).max()
        assert np.abs(out[b].theta - ref.theta).max() < 100 * options[b].rtol * scale
        assert out[b].attrs["nfev"] == pytest.approx(res.attrs["nfev"], rel=0.05)
        assert out[b].t[-1] == options[b].t_max


def test_a_stiff_member_does_not_change_its_neighbours(make_model, rng):
    """Member 1 trains on inputs 30x larger (a Gram matrix 900x stiffer): it takes many more,
    smaller steps; members 0 and 2 take exactly the steps and numbers of their runs alone."""
    model = make_model("lcn-1d-k432-s221")

    def problem(scale):
        data = build_dataset(Section("gaussian", GaussianData.Options(
            n_samples=6, input_size=(14,), input_scale=scale,
            target=Section("teacher", TeacherTarget.Options(scale=0.6)), noise=0.3, seed=0)), model)
        return Problem(model, LOSSES["square"](), data)
    easy, stiff = problem(1.0), problem(30.0)
    ens = ProblemEnsemble([easy, stiff], [0, 1, 0])
    theta0 = 0.5 * rng.standard_normal((3, model.n_params))
    opts = GradientFlow.Options(t_max=2.0, method="DOP853", rtol=1e-9, atol=1e-11)
    rec = RecordOptions(points=10)
    out = GradientFlow.run_members(ens, theta0, [rec] * 3, [opts] * 3)
    assert out[1].attrs["nfev"] > 5 * max(out[0].attrs["nfev"], out[2].attrs["nfev"])
    for b, p in ((0, easy), (1, stiff), (2, easy)):
        assert_same_trajectory(out[b], GradientFlow(opts).run(p, theta0[b: b + 1], rec)[0])
    ref = flow_trajectory(stiff, theta0[1], rec, opts)[0]  # the stiff one is accurate too
    assert np.abs(out[1].theta - ref.theta).max() < 1e-6 * np.abs(ref.theta).max()


# ---------------------------------------------------------------------------------------------
# the runner and the sweep
SPEC = """\
name: ens
model: {kind: lcn, filters: [4, 3, 2], strides: [2, 2, 1]}
data: {kind: gaussian, n_samples: 16, input_size: 30, target: {kind: teacher, scale: 0.5}, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
dynamics: {kind: gradient_descent, lr: 0.002, steps: 300}
record: {points: 25}
"""
SWEEP = SPEC + """\
sweep:
  grid: {init.seed: [0, 1, 2], dynamics.lr: [0.002, 0.005, 40.0], data.seed: [0, 1]}
"""


def test_execute_ensemble_gives_the_records_of_single_runs():
    exp = load_experiment_text(SWEEP)
    points = exp.points
    assert len({ensemble_key(p.run_spec) for p in points}) == 1
    records = execute_ensemble([p.run_spec for p in points], [p.run_id for p in points])
    statuses = set()
    for p, rec in zip(points, records):
        alone = execute(p.run_spec, p.run_id)
        assert (rec.run_id, rec.status, rec.spec_text) == (alone.run_id, alone.status, alone.spec_text)
        assert rec.attrs == alone.attrs and rec.final_attrs == alone.final_attrs
        for part in ("trajectory", "final_arrays"):
            a, b = getattr(rec, part), getattr(alone, part)
            assert sorted(a) == sorted(b)
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{part}/{k}")
        statuses.add(rec.status)
    assert statuses == {"completed", "diverged"}


def test_ensemble_keys_separate_what_cannot_be_batched():
    exp = load_experiment_text(SPEC + "sweep:\n  points: [{}, {model.strides: [1, 1, 1]}, "
                                      "{loss: {kind: log_cosh}}, {dynamics: {kind: gradient_flow, t_max: 1.0}},"
                                      "{dynamics: {kind: gradient_flow, t_max: 2.0, rtol: 1e-8}},"
                                      "{dynamics: {kind: gradient_flow, t_max: 1.0, method: Radau}}]\n")
    keys = [ensemble_key(p.run_spec) for p in exp.points]
    assert keys[0] != keys[1]  # another architecture
    assert keys[2] is not None and keys[2] != keys[0]  # a separable loss: ensembles of its own
    assert keys[5] is None  # an implicit integrator
    assert keys[3] == keys[4] and keys[3] != keys[0]  # flows: t_max and tolerances may vary
    with pytest.raises(ValueError, match="cannot form one ensemble"):
        execute_ensemble([exp.points[0].run_spec, exp.points[1].run_spec], ["a", "b"])


def read_all(folder: Path) -> dict:
    return {p.stem: read_run(p) for p in sorted(folder.glob("*.h5"))}


def test_grouped_sweep_writes_the_files_of_ungrouped_runs(tmp_path):
    spec = tmp_path / "ens.yaml"
    spec.write_text(SWEEP)
    for name, extra in (("grouped", []), ("alone", ["--ensemble", "1"])):
        r = cli.invoke(app, ["sweep", str(spec), "-j", "2", "-q", "--results", str(tmp_path / name), *extra])
        assert r.exit_code == 1, r.output  # the lr = 40 points diverge
    grouped = read_all(tmp_path / "grouped" / "ens" / "runs")
    alone = read_all(tmp_path / "alone" / "ens" / "runs")
    assert sorted(grouped) == sorted(alone) and len(grouped) == 18
    for rid, a in grouped.items():
        b = alone[rid]
        assert (a.run_id, a.status, a.spec_text, a.format_version) == (b.run_id, b.status, b.spec_text,
                                                                       b.format_version)
        assert a.attrs == b.attrs and a.final_attrs == b.final_attrs
        for part in ("trajectory", "final_arrays"):
            x, y = getattr(a, part), getattr(b, part)
            assert sorted(x) == sorted(y)
            for k in x:
                assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), (rid, part, k)
        assert a.provenance["ensemble_size"] > 1 and b.provenance["ensemble_size"] == 1
    r = cli.invoke(app, ["diff", str(tmp_path / "grouped" / "ens"), str(tmp_path / "alone" / "ens"),
                         "--rtol", "0", "--atol", "0"])
    assert r.exit_code == 0, r.output


def test_run_indices_runs_a_group_in_this_process(tmp_path):
    spec = tmp_path / "ens.yaml"
    spec.write_text(SWEEP)
    results = tmp_path / "results"
    r = cli.invoke(app, ["run", str(spec), "--indices", "0-1,6,7", "--results", str(results)])
    assert r.exit_code == 0, r.output
    exp = load_experiment_text(SWEEP)
    for i in (0, 1, 6, 7):
        rec = read_run(results / "ens" / "runs" / f"{exp.points[i].run_id}.h5")
        assert rec.status == "completed" and rec.provenance["ensemble_size"] == 4
    assert len(list((results / "ens" / "runs").glob("*.h5"))) == 4
    r = cli.invoke(app, ["run", str(spec), "--indices", "17-18", "--results", str(results)])
    assert r.exit_code == 2 and "out of range" in r.output


def test_run_indices_validates_the_whole_sweep_unless_its_folder_did(tmp_path, monkeypatch):
    """``run --indices`` makes only its points when the folder's ``experiment.yaml`` and
    ``manifest.tsv`` are this spec's (``submit``/``sweep`` wrote them after validating every
    point: the whole-sweep load is then never called); otherwise it validates the whole sweep as
    before: a spec invalid at a point not chosen is refused (exit 2), nothing written."""
    from lcnrun import workflow

    spec = tmp_path / "ens.yaml"
    results = tmp_path / "results"
    spec.write_text(SWEEP.replace("[0.002, 0.005, 40.0]", "[0.002, 0.005, -1.0]"))  # points 4, 5, 10 ...: lr < 0
    r = cli.invoke(app, ["run", str(spec), "--indices", "0-1", "--results", str(results)])
    assert r.exit_code == 2 and "sweep point 4 " in r.output and "dynamics.lr" in r.output, r.output
    assert not results.exists()
    spec.write_text(SWEEP)
    exp = load_experiment_text(SWEEP)
    r = cli.invoke(app, ["run", str(spec), "--indices", "0", "--results", str(results)])
    assert r.exit_code == 0, r.output
    assert (results / "ens" / "manifest.tsv").read_text().count("\n") == len(exp.points) + 1

    def whole_sweep(path):
        raise AssertionError("the whole sweep was loaded")
    monkeypatch.setattr(workflow, "load", whole_sweep)
    ids = ",".join(exp.points[i].run_id for i in (2, 3))
    r = cli.invoke(app, ["run", str(spec), "--indices", "2-3", "--results", str(results), "--expect-run-id", ids])
    assert r.exit_code == 0, r.output
    for i in (0, 2, 3):
        assert read_run(results / "ens" / "runs" / f"{exp.points[i].run_id}.h5").status == "completed"
    r = cli.invoke(app, ["run", str(spec), "--indices", "5", "--results", str(results),
                         "--expect-run-id", exp.points[6].run_id])
    assert r.exit_code == 2 and "point 5 is now run" in r.output
    spec.write_text(SWEEP + "# edited\n")  # another text: the folder no longer vouches for the sweep
    with pytest.raises(AssertionError, match="whole sweep"):
        cli.invoke(app, ["run", str(spec), "--indices", "5", "--results", str(results)], catch_exceptions=False)


def test_a_killed_worker_fails_the_points_of_its_ensemble(tmp_path):
    """SIGKILL to a worker computing an ensemble of 2 points: both get failed run files naming the
    signal and the ensemble; the other worker's ensemble completes; no leftovers."""
    spec = tmp_path / "slow.yaml"
    spec.write_text(SPEC.replace("points: 25", "points: 5") + "sweep:\n  grid: {init.seed: [0, 1, 2, 3]}\n")
    results = tmp_path / "results"
    runs = results / "ens" / "runs"
    barrier = Barrier(tmp_path, "computing")  # both workers wait inside their ensemble's computation
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), **barrier.env)
    main = "import sys; from lcnrun.cli import main; sys.argv[0] = 'lcnrun'; main()"
    proc = subprocess.Popen([sys.executable, "-c", main, "sweep", str(spec), "-j", "2", "--results", str(results)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        pid = barrier.wait(2, proc)[0]
        holders = claimed_runs(runs)
        victims = {rid for rid, h in holders.items() if int(h.split()[1]) == pid}
        os.kill(pid, signal.SIGKILL)
        barrier.release()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, out
    assert len(victims) == 2
    files = read_all(runs)
    assert len(files) == 4
    for rid, rec in files.items():
        if rid in victims:
            assert rec.status == "failed" and "killed by SIGKILL" in rec.attrs["message"]
            assert "in an ensemble of 2 points" in rec.attrs["message"]
        else:
            assert rec.status == "completed"
    assert sorted(n for n in os.listdir(runs) if n.startswith(".")) == []


# ---------------------------------------------------------------------------------------------
# memory
def test_memory_of_a_10000_member_ensemble_is_its_stored_trajectories():
    """10,000 members of a small LCN, 200 steps, 20 stored times: the arrays allocated (numpy
    reports them to tracemalloc) are the stored trajectories ``(B, T, P)`` and per-member
    vectors, not anything of size ``B x steps``; a member's trajectory is a view of them."""
    model = LCN(LCN.Options(filters=(4, 3, 2), strides=(2, 2, 1)))
    data = build_dataset(Section("gaussian", GaussianData.Options(n_samples=32, input_size=(40,))), model)
    problem = Problem(model, LOSSES["square"](), data)
    B, steps, P = 10_000, 200, model.n_params
    theta0 = 0.3 * np.random.default_rng(0).standard_normal((B, P))
    record = RecordOptions(points=20)
    T = len(record_steps(steps, 0.01, record))
    stored = B * T * (P + 3) * 8  # theta, loss, grad_norm, step
    # load the compiled kernel first: importing numba and its cached machine code allocates
    # ~30 MB once per process, which is not the ensemble's memory
    GradientDescent(GradientDescent.Options(lr=0.01, steps=2)).run(problem, theta0[:1], record)
    tracemalloc.start()
    try:
        trajs = GradientDescent(GradientDescent.Options(lr=0.01, steps=steps)).run(problem, theta0, record)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(trajs) == B and all(t.status == COMPLETED for t in trajs[:: 997])
    assert trajs[0].theta.shape == (T, P) and trajs[-1].theta.base is trajs[0].theta.base
    assert trajs[0].theta.base.nbytes == B * T * P * 8
    # the stored arrays, the members' vectors (a few dozen bytes each) and their Trajectory
    # objects: far below B * steps * P * 8 (what keeping every step would take)
    assert peak < stored + B * 2_000, (peak, stored)
    assert peak < B * steps * P * 8 / 4


def test_controller_constants_are_scipys():
    """ensemble_rk copies scipy's three step size controller constants (it reads the tableaux from
    the public solver classes): if a scipy release changes them, the copy must follow."""
    import importlib

    from lcnrun.core.dynamics import ensemble_rk

    try:
        rk = importlib.import_module("scipy.integrate._ivp.rk")
    except ImportError:  # pragma: no cover - a scipy that moved its private module
        pytest.skip("scipy.integrate._ivp.rk is gone; the comparison with solve_ivp still runs")
    assert (ensemble_rk.SAFETY, ensemble_rk.MIN_FACTOR, ensemble_rk.MAX_FACTOR) == (
        rk.SAFETY, rk.MIN_FACTOR, rk.MAX_FACTOR)
