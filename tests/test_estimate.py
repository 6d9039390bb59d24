"""The memory estimate of an ensemble member against the arrays a real ensemble allocates (their
``nbytes``, not timings), and the ensemble sizes the budget allows."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from lcnrun.core.dynamics import DYNAMICS
from lcnrun.core.init import build_init
from lcnrun.core.models import MODELS
from lcnrun.runner import build_problem
from lcnrun.schedule.estimate import (default_memory_budget, ensemble_size_within, member_memory,
                                      parse_bytes)
from lcnrun.schedule.local import ENSEMBLE_MAX_DATASETS, ensemble_groups
from lcnrun.spec import load_experiment

SPEC = """\
name: sized
model: {kind: lcn, filters: [5, 3, 2], strides: [2, 1, 1]}
data: {kind: gaussian, n_samples: 30, input_size: 40, noise: 0.01, seed: 0}
init: {kind: gaussian, scale: 0.3, seed: 1}
loss: {kind: square}
dynamics: {kind: gradient_descent, lr: 0.001, steps: 400}
record: {points: 50, spacing: linear}
sweep:
  grid: {init.seed: [0, 1, 2, 3, 4, 5], data.seed: [0, 1]}
"""


@pytest.fixture
def exp(tmp_path):
    path = tmp_path / "sized.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return load_experiment(path)


def test_member_estimate_matches_the_arrays_of_a_real_ensemble(exp):
    specs = [p.run_spec for p in exp.points[:4]]
    model = MODELS[specs[0].model.kind](specs[0].model.options)
    problem = build_problem(specs[0], model)
    est = member_memory(specs[0])
    # the problem: inputs (N, 40), targets (N, out), the patch Gram (E, E) and e_min (E,), counted
    # from the shapes the spec implies
    N, E = 30, model.end_to_end_size
    out = int(np.prod(model.output_shape((40,))))
    assert est.data == 8 * (N * 40 + N * out + E * E + E)
    assert est.data == (problem.dataset.inputs.nbytes + problem.dataset.targets.nbytes
                        + problem.quadratic.gram.nbytes + problem.quadratic.e_min.nbytes)
    # the stored trajectory: what the compiled descent allocates for B members, per member
    theta0 = np.concatenate([build_init(s.init, model) for s in specs])
    trajs = DYNAMICS["gradient_descent"].run_members(problem, theta0, [s.record for s in specs],
                                                     [s.dynamics.options for s in specs])
    B = len(specs)
    base = trajs[0].theta.base
    assert base is not None and base.shape == (B, 50, model.n_params)  # one (B, R, P) block
    allocated = (base.nbytes + trajs[0].loss.base.nbytes + trajs[0].grad_norm.base.nbytes
                 + trajs[0].series["step"].base.nbytes) / B + trajs[0].t.nbytes
    assert allocated <= est.trajectory <= allocated * 51 / 50  # R = points + 1: the stop state
    # making one member's run record: its parameters by layer and its end-to-end maps
    from lcnrun.runner import state_series, trajectory_arrays  # noqa: PLC0415
    arrays = trajectory_arrays(model, trajs[0], state_series(model, trajs[0].theta))
    made = sum(a.nbytes for k, a in arrays.items() if k.startswith("params/") or k == "end_to_end")
    assert made <= est.finishing


def test_ensembles_are_cut_to_the_budget(exp):
    specs = [p.run_spec for p in exp.points]
    est = member_memory(specs[0])
    datasets = 2  # data.seed 0 and 1
    budget = est.ensemble(5, datasets) + est.per_member // 2
    n = ensemble_size_within(budget, specs, ENSEMBLE_MAX_DATASETS)
    assert n == 5 and est.ensemble(n, datasets) <= budget < est.ensemble(n + 1, datasets)
    assert ensemble_size_within(None, specs, ENSEMBLE_MAX_DATASETS) is None
    assert ensemble_size_within(1, specs, ENSEMBLE_MAX_DATASETS) == 1  # never below one member
    # the local scheduler's grouping honours it: 12 points -> ensembles of at most 5
    units = ensemble_groups(exp, range(len(exp.points)), jobs=1, memory_budget=budget)
    assert sorted(i for u in units for i in u) == list(range(12))
    assert max(len(u) for u in units) == 5
    assert max(len(u) for u in ensemble_groups(exp, range(12), jobs=1, memory_budget=10 ** 12)) == 12


def test_default_budget_and_sizes():
    assert parse_bytes("2G") == 2 ** 31 and parse_bytes("300", default_unit="m") == 300 * 2 ** 20
    assert parse_bytes("1.5k") == 1536
    with pytest.raises(ValueError):
        parse_bytes("lots")
    # inside a Slurm task: half of what Slurm gives it
    assert default_memory_budget(environ={"SLURM_MEM_PER_NODE": "1000"}) == 500 * 2 ** 20
    assert default_memory_budget(environ={"SLURM_MEM_PER_CPU": "100", "SLURM_CPUS_PER_TASK": "4"}) == 200 * 2 ** 20
    # locally: half of the machine's memory, shared by the workers
    one, four = default_memory_budget(1, environ={}), default_memory_budget(4, environ={})
    assert one is not None and abs(one - 4 * four) <= 4


@pytest.mark.parametrize("verb", [["run", "--indices", "0-11"], ["sweep", "-j", "1"]],
                         ids=["run-indices", "sweep"])
def test_the_schedulers_cut_their_ensembles_to_the_memory_budget(exp, tmp_path, verb):
    """``lcnrun run --indices`` and ``lcnrun sweep`` with ``--memory-budget``: ensembles hold at
    most what the budget allows (the estimate's own arithmetic, not a measured RSS); a budget that
    is not a size, or one given to a single point, is one message and exit code 2."""
    from typer.testing import CliRunner  # noqa: PLC0415

    from lcnrun.cli import app  # noqa: PLC0415
    from lcnrun.store import read_run  # noqa: PLC0415

    est = member_memory(exp.points[0].run_spec)
    budget = est.ensemble(3, 2) + est.per_member // 2  # room for 3 members on the 2 data sets
    results = tmp_path / "results"
    r = CliRunner().invoke(app, [verb[0], str(exp.path), *verb[1:], "--results", str(results),
                                 "--memory-budget", str(budget), "-q"])
    assert r.exit_code == 0, r.output
    sizes = [read_run(results / "sized" / "runs" / f"{p.run_id}.h5").provenance["ensemble_size"]
             for p in exp.points]
    assert sizes == [3] * 12
    r = CliRunner().invoke(app, [verb[0], str(exp.path), *verb[1:], "--results", str(tmp_path / "other"),
                                 "--memory-budget", "lots"])
    assert r.exit_code == 2 and "--memory-budget" in r.output
    assert not (tmp_path / "other").exists()
    r = CliRunner().invoke(app, ["run", str(exp.path), "--index", "0", "--memory-budget", "1G"])
    assert r.exit_code == 2 and "--indices" in r.output
