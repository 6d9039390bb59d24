"""``saxe-modes`` (Saxe, McClelland & Ganguli, arXiv 1312.6120), small version: produced once per session
(``figure_runs.py``), its claims must hold, and the mode trajectories of the stored runs are checked here
against values computed independently of the figure's code: the two-layer closed form
``u(t) = s e^{2st} / (e^{2st} - 1 + s/u0)`` (tau = 1 in our conventions), the depth-N mode ODE
``du/dt = N u^{2-2/N} (s - u)`` integrated by scipy's Radau at rtol 1e-12 (the figure uses DOP853 and
quadrature), and its learning time as a located event of that integration.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from typer.testing import CliRunner

import figure_runs
from lcnrun.cli import app
from lcnrun.figures.saxe_modes import learning_time


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return figure_runs.shared_dir(tmp_path_factory)


def mode_solution(depth, s, u0, t):
    """``u(t)`` of ``du/dt = N u^{2-2/N} (s - u)`` at ``t`` and the time it reaches ``s/2`` (Radau, event)."""
    def half(_, u):
        return u[0] - s / 2
    half.terminal = False
    sol = solve_ivp(lambda _, u: depth * u ** (2 - 2 / depth) * (s - u), (0.0, t[-1]), [u0], t_eval=t,
                    method="Radau", rtol=1e-12, atol=1e-15, events=half)
    assert sol.success
    return sol.y[0], float(sol.t_events[0][0])


def test_saxe_modes_figure_and_independent_mode_solutions(workdir):
    out = figure_runs.produce_small("saxe-modes", workdir)
    assert out.result.rows and len(out.result.claims) == 4
    failed = [(c.text, c.measured) for c in out.result.claims if not c.holds]
    assert not failed, failed
    depths = {"explicit": set(), "gaussian": set()}
    for _, spec, r in figure_runs.runs_of(workdir, "saxe-modes"):
        assert r.status == "completed"
        depth = len(spec.model.options.widths) - 1
        depths[spec.init.kind].add(depth)
        t, X = r.trajectory["t"], r.trajectory["end_to_end"]
        U = np.asarray(spec.data.options.target.options.value)
        assert np.count_nonzero(U - np.diag(np.diag(U))) == 0  # diagonal target: the modes are the diagonal
        s, u = np.diag(U), np.einsum("tii->ti", X)
        if spec.init.kind != "explicit":
            continue
        np.testing.assert_allclose(X[-1], U, atol=1e-6 * s.max())  # every mode learned
        for i, si in enumerate(s):
            u0 = u[0, i]
            ref, t_half = mode_solution(depth, si, u0, t)
            assert np.max(np.abs(u[:, i] - ref)) < 1e-5 * si, (depth, si)
            if depth == 2:
                e = np.exp(2 * si * t)
                closed = si * e / (e - 1 + si / u0)
                assert np.max(np.abs(u[:, i] - closed)) < 1e-8 * si
                assert abs(t_half - np.log((si - u0) / u0) / (2 * si)) < 1e-8 * t_half
            assert abs(learning_time(depth, si, u0, si / 2) / t_half - 1) < 1e-8
            # the network's own crossing of s/2, linear interpolation between stored points (u increases)
            k = int(np.argmax(u[:, i] >= si / 2))
            t_net = t[k - 1] + (si / 2 - u[k - 1, i]) * (t[k] - t[k - 1]) / (u[k, i] - u[k - 1, i])
            assert abs(t_net / t_half - 1) < 2e-3, (depth, si, t_net, t_half)
    assert depths == {"explicit": {2, 3, 4}, "gaussian": {2, 3, 4}}
    cli = workdir / "cli" / figure_runs.worker()
    r = CliRunner().invoke(app, ["figure", "saxe-modes", "--small", "--results", str(workdir / "results"),
                                 "--out", str(cli)])
    assert r.exit_code == 0, r.output
    assert f"{out.n_runs} runs (0 computed now)" in r.output
    assert (cli / "saxe-modes.small.png").stat().st_size > 1000
