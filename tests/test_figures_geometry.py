"""The geometry figures (``repeated-filters``, ``invariants``, ``riemannian-metric``, ``convergence``),
small versions: each is produced once per session (runs + PNG/PDF, shared with the test of ``lcnrun
reproduce``: ``figure_runs.py``), its claims must hold, and the key numbers are checked again here from the
run files against closed forms and conservation laws (not through the figure's own code), then once more
through ``lcnrun figure NAME --small`` (runs reused, redrawn).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from figure_runs import produce_small, runs_of, shared_dir, worker
from lcnrun.cli import app
from lcnrun.runner import build

NAMES = ("repeated-filters", "invariants", "riemannian-metric", "convergence")


@pytest.fixture(scope="session")
def figure_runs(tmp_path_factory) -> Path:
    return shared_dir(tmp_path_factory)


def produce_and_check(name: str, workdir: Path):
    """Produce the small version (runs computed once per session), check files and claims, then redraw
    through the CLI (runs reused)."""
    out = produce_small(name, workdir)
    for f in out.files:
        assert f.exists() and f.stat().st_size > 1000, f
    assert {f.suffix for f in out.files} == {".png", ".pdf"}
    assert out.result.rows and out.result.claims
    failed = [(c.text, c.measured) for c in out.result.claims if not c.holds]
    assert not failed, failed
    assert out.n_runs > 0
    cli = workdir / "cli" / worker()
    r = CliRunner().invoke(app, ["figure", name, "--small", "-j", "2", "--results",
                                 str(workdir / "results"), "--out", str(cli)])
    assert r.exit_code == 0, r.output
    assert "the claims" in r.output and f"{out.n_runs} runs (0 computed now)" in r.output
    assert (cli / f"{name}.small.png").exists() and (cli / f"{name}.small.pdf").exists()
    return out


def test_repeated_filters_known_minima(figure_runs):
    workdir = figure_runs
    produce_and_check("repeated-filters", workdir)
    by_target = {}
    for o, _, r in runs_of(workdir, "repeated-filters"):
        assert r.status == "completed"
        by_target.setdefault((tuple(o["model.filters"]), tuple(o["data.target.value"])), []).append(r)
    # (2,2), u = (1, 0, 1): minimum 1/2 at v = (1,0,0) or (0,0,1), w1 || w2
    for r in by_target[((2, 2), (1, 0, 1))]:
        assert abs(r.final_attrs["loss"] - 0.5) <= 1e-6
        v = r.final_arrays["end_to_end"]
        assert min(np.abs(v - [1, 0, 0]).max(), np.abs(v - [0, 0, 1]).max()) <= 1e-6
        w1, w2 = r.final_arrays["params/layer_0"], r.final_arrays["params/layer_1"]
        assert abs(w1 @ w2) >= (1 - 1e-9) * np.linalg.norm(w1) * np.linalg.norm(w2)
    # (2,2), u = (1, .5, 1): minimum 3/8 (degenerate): reached to 1e-6 from above at t = 1e5
    for r in by_target[((2, 2), (1, 0.5, 1))]:
        assert 0 <= r.final_attrs["loss"] - 0.375 <= 1e-6
        assert np.abs(r.final_arrays["end_to_end"] - [0.5, 1, 0.5]).max() <= 0.05
    # inside M (not filling) and a filling architecture: zero is reached
    for key in (((2, 2), (1, -3, 2)), ((3, 3), (1, 0.3, -0.2, 0.7, 0.4))):
        assert max(r.final_attrs["loss"] for r in by_target[key]) <= 1e-12
    assert min(r.final_attrs["loss"] for r in by_target[((3, 2), (1, 0.3, -0.2, 0.7))]) <= 1e-12


def test_invariants_flat_under_flow_and_lr2_law_under_descent(figure_runs):
    workdir = figure_runs
    produce_and_check("invariants", workdir)
    n_gd = 0
    for _, spec, r in runs_of(workdir, "invariants"):
        delta = r.trajectory["invariants"]
        scale = float(np.max(r.trajectory["layer_norms_sq"][0]))
        if spec.dynamics.kind == "gradient_flow":
            assert np.max(np.abs(delta - delta[0])) / scale <= 1e-8
            continue
        n_gd += 1
        lr = spec.dynamics.options.lr
        built = build(spec)  # the runner's problem: a different path from the figure's
        model = built.model
        theta = model.join([r.trajectory[f"params/layer_{l}"] for l in range(model.n_layers)])
        assert np.array_equal(r.trajectory["step"], np.arange(len(theta)))
        _, g = built.problem.value_and_grad(theta)
        g2 = np.stack([np.sum(x.reshape(len(theta), -1) ** 2, axis=1) for x in model.split(g)], axis=1)
        law = lr ** 2 * (g2[:-1, :-1] - g2[:-1, 1:])
        assert np.max(np.abs(np.diff(delta, axis=0) - law)) / scale <= 1e-12
        assert np.max(np.abs(delta[-1] - delta[0])) / scale > 1e-5  # the drift is real
    assert n_gd == 8


def test_riemannian_metric_exchanges(figure_runs):
    workdir = figure_runs
    produce_and_check("riemannian-metric", workdir)
    holds, fails = [], []
    for _, spec, r in runs_of(workdir, "riemannian-metric"):
        s = r.diagnostics["metric_consistency"]["scalars"]
        if spec.init.kind != "gaussian":
            continue
        non_perm = np.nanmax([s["max_rel_diff_exchange"], s["max_rel_diff_sign_flip"], 0.0])
        (holds if s["theorem_applies"] else fails).append((non_perm, s))
    assert holds and fails
    assert max(x for x, _ in holds) < 1e-10
    assert sum(s["n_root_exchanges"] for _, s in holds) == 0
    assert max(s["max_rel_diff_exchange"] for _, s in fails if s["n_root_exchanges"]) > 1e-3


def test_convergence_to_critical_points(figure_runs):
    workdir = figure_runs
    produce_and_check("convergence", workdir)
    kinds = set()
    for _, spec, r in runs_of(workdir, "convergence"):
        assert r.status == "completed"
        if r.final_attrs["data_full_rank"]:
            kinds.add(spec.loss.kind)
            assert r.final_attrs["grad_norm"] <= 1e-8
            cp = r.diagnostics["critical_points"]["scalars"]
            assert cp["grad_norm"] <= cp["grad_tol"]
    assert kinds == {"square", "lp", "pseudo_huber", "log_cosh"}


def test_figure_list_names_the_geometry_figures():
    r = CliRunner().invoke(app, ["figure", "--list"])
    assert r.exit_code == 0
    for name in NAMES:
        assert name in r.output
