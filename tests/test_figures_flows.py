"""The flow figures (``output-metric-rate``, ``balancing``, ``balanced-learning``, ``fast-slow``), small
versions: each is produced once per session (shared with the test of ``lcnrun reproduce``:
``figure_runs.py``), its claims must hold, it is redrawn through ``lcnrun figure NAME --small`` (runs
reused, PNG/PDF, exit 0), and the key numbers are checked again here from the run files against the
closed forms (not through the figures' own code).
Also a regression test of the stall guard of the shared flow integrator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import figure_runs
from lcnrun.cli import app
from lcnrun.core.dynamics.gradient_flow import FlowOptions, integrate_states
from lcnrun.core.recording import RecordOptions
from lcnrun.runner import build

NAMES = ("output-metric-rate", "balancing", "balanced-learning", "fast-slow")
runner = CliRunner()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return figure_runs.shared_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def figure(workdir):
    """``name -> (CLI result, Produced)``: ``produce`` computes the runs (once per session), the CLI redraws."""
    cache = {}

    def get(name):
        if name not in cache:
            out = figure_runs.produce_small(name, workdir)
            cli = runner.invoke(app, ["figure", name, "--small", "-j", "2", "--results", str(workdir / "results"),
                                      "--out", str(workdir / "cli" / figure_runs.worker())])
            cache[name] = (cli, out)
        return cache[name]
    return get


def runs_of(workdir: Path, name: str):
    """``(run_spec, RunData)`` of every point of a figure's small spec."""
    return [(spec, r) for _, spec, r in figure_runs.runs_of(workdir, name)]


@pytest.mark.parametrize("name", NAMES)
def test_figure_cli_files_and_claims(figure, workdir, name):
    cli, out = figure(name)
    assert cli.exit_code == 0, cli.output
    assert f"{out.n_runs} runs (0 computed now)" in cli.output  # the CLI reused the runs
    for ext in ("png", "pdf"):
        f = workdir / "cli" / figure_runs.worker() / f"{name}.small.{ext}"
        assert f.exists() and f.stat().st_size > 1000, f
    assert out.result.rows and out.result.claims
    failed = [(c.text, c.measured) for c in out.result.claims if not c.holds]
    assert not failed, failed


def test_output_metric_rate_numbers(figure, workdir):
    figure("output-metric-rate")
    over = under = 0
    for spec, r in runs_of(workdir, "output-metric-rate"):
        assert r.status == "completed", r.attrs.get("message")
        if spec.dynamics.kind != "output_metric_flow":
            continue
        t, C = r.trajectory["t"], r.trajectory["loss"]
        N = spec.data.options.n_samples
        fa = r.final_attrs
        if fa["variant_used"] == "overparametrized":
            over += 1
            assert np.all(r.trajectory["rank_D"] == fa["n_outputs"])
            assert abs(np.polyfit(t, np.log(C), 1)[0] * N / 2 + 1) < 1e-6
            T = N / 2 * np.log(C[0] / spec.dynamics.options.eps)
            assert abs(fa["t_eps_measured"] / T - 1) < 1e-6
        else:
            under += 1
            data = build(spec).problem.dataset
            x, y = data.inputs, data.targets
            B = np.linalg.lstsq(x, y, rcond=None)[0]
            Cmin = np.sum((x @ B - y) ** 2) / (2 * len(x))
            assert Cmin > 1e-3 and abs(C[-1] / Cmin - 1) < 1e-6
            assert np.isnan(fa["t_eps_measured"])  # eps < C_min is never reached
    assert over >= 4 and under >= 1


def test_balancing_numbers(figure, workdir):
    figure("balancing")
    for spec, r in runs_of(workdir, "balancing"):
        assert r.status == "completed", r.attrs.get("message")
        tr = r.trajectory
        e = tr["end_to_end"]
        assert np.max(np.abs(e - e[:1])) <= 1e-8 * np.max(np.abs(e[0]))
        phi = np.sqrt(np.sum(tr["phi_norms"] ** 2, axis=1))
        R = tr["sum_sq_norms"]
        if spec.model.kind == "dense":
            N = len(spec.model.options.widths) - 1
            Rmin = N * np.sum(np.linalg.svd(e[0], compute_uv=False) ** (2 / N))
        else:
            n = tr["layer_norms_sq"][0]
            Rmin = len(n) * np.prod(n) ** (1 / len(n))
        wide = spec.model.kind == "dense" and len(set(spec.model.options.widths)) > 1
        if spec.dynamics.options.variant == "l2":
            # Theorem 1.2 of Lindsey & Menon, G(t) = G(0) e^{-2t}, up to the integration floor ~rtol * R
            m = phi > 1e-6 * R[0]
            np.testing.assert_allclose(phi[m], phi[0] * np.exp(-2 * tr["t"][m]), rtol=1e-6, atol=1e-9 * R[0])
        if not (wide and spec.dynamics.options.variant == "kirwan_ness"):
            assert abs(R[-1] / Rmin - 1) < 1e-8


def test_balanced_learning_numbers(figure, workdir):
    figure("balanced-learning")
    pairs = {}
    for spec, r in runs_of(workdir, "balanced-learning"):
        assert r.status == "completed"
        key = (tuple(spec.model.options.widths), spec.regularization.l2, spec.init.kind)
        pairs.setdefault(key, {})[spec.dynamics.kind] = r.trajectory
    assert any(k[1] > 0 for k in pairs)  # a weight-decay pair
    for (widths, l2, init), d in pairs.items():
        a, b = d["gradient_flow"], d["balanced_learning_flow"]
        np.testing.assert_array_equal(a["t"], b["t"])
        dev = np.max(np.abs(a["end_to_end"] - b["end_to_end"])) / np.max(np.abs(a["end_to_end"]))
        if init == "balanced":
            assert dev < 1e-6, (widths, l2, dev)
            np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
        else:
            assert dev > 1e-2, (widths, l2, dev)


def test_fast_slow_numbers(figure, workdir):
    figure("fast-slow")
    for spec, r in runs_of(workdir, "fast-slow"):
        assert r.status == "completed"
        tr = r.trajectory
        lam = spec.regularization.l2
        phi, t = tr["balancedness"], tr["t"]
        R0 = tr["regularizer"][0]
        m = phi > 1e-6 * R0
        np.testing.assert_allclose(phi[m], phi[0] * np.exp(-4 * lam * t[m]), rtol=1e-6, atol=1e-9 * R0)
        # the minimizer of 1/2 |X - U|^2 + 2 lambda |X|_* for U = diag(2, 1, 0.22), lambda = 0.1
        np.testing.assert_allclose(tr["end_to_end"][-1], np.diag([1.8, 0.8, 0.02]), atol=1e-8)
        assert tr["velocity_along_fiber"][-1] < 1e-12 < tr["velocity_along_fiber"][0]


def test_flow_integrator_stops_when_it_stalls():
    """``dy/dt = -sign(y - 0.3)`` slides on ``y = 0.3`` from ``t = 0.7``: solve_ivp alone takes steps of
    ~1e-12 there forever; the shared integrator ends the run as failed at the stall."""
    res = integrate_states(lambda y: -np.sign(y - 0.3), lambda y: (float((y[0] - 0.3) ** 2), float(abs(y[0] - 0.3))),
                           np.array([1.0]), FlowOptions(t_max=10.0), RecordOptions(points=11, spacing="linear"),
                           store_last=True)
    assert res.status == "failed" and "stalled" in res.message
    assert abs(res.t[-1] - 0.7) < 1e-3 and abs(res.states[-1, 0] - 0.3) < 1e-6
