"""``lcnrun reproduce``: every small figure (the runs computed once per session, shared with the figure
tests: ``figure_runs.py``), then REPORT.md and REPORT.html, checked against the figures' own results
produced independently of the reproduce code (each claim, its measured value and verdict, the per-paper
counts); exit 1 when a claim fails (a saxe-modes spec whose two-layer aligned start is unbalanced), exit 2
for an unknown figure.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import figure_runs
from lcnrun.cli import app
from lcnrun.figures import FIGURES
from lcnrun.figures.driver import specs_dir
from lcnrun.figures.reproduction import paper_key

runner = CliRunner()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return figure_runs.shared_dir(tmp_path_factory)


def cell(x: str) -> str:
    """A markdown table cell: ``|`` escaped, one line."""
    return x.replace("|", "\\|").replace("\n", " ")


def measured(c) -> str:
    return f"{c.measured:.6g}" if isinstance(c.measured, float) else str(c.measured)


def test_reproduce_small_writes_the_report_of_every_claim(workdir, tmp_path):
    produced = {name: figure_runs.produce_small(name, workdir) for name in FIGURES}
    out = tmp_path / "figures"
    r = runner.invoke(app, ["reproduce", "--small", "-j", "2", "--results", str(workdir / "results"),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    md = (out / "REPORT.md").read_text()
    page = (out / "REPORT.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    papers: dict[str, list] = {}
    for name, p in produced.items():
        assert f"{name}: " in r.output and f"{p.n_runs} runs (0 computed now)" in r.output
        assert (out / f"{name}.small.png").stat().st_size > 1000
        assert f"![{name}]({name}.small.png)" in md and f'<img src="{name}.small.png"' in page
        for c in p.result.claims:
            assert c.holds
            row = "| " + " | ".join(cell(x) for x in (c.text, measured(c), c.expected, "holds")) + " |"
            assert row in md, c.text
            assert html.escape(c.text) in page and html.escape(measured(c)) in page
        papers.setdefault(paper_key(FIGURES[name].paper), []).append(p)
    assert len(papers) == 6  # the five papers of SPEC section 5 and Saxe et al.
    top = md.split("\n## ")[0]
    for key, group in papers.items():
        n = sum(len(p.result.claims) for p in group)
        runs = sum(p.n_runs for p in group)
        assert re.search(rf"\| [^|]*{re.escape(key)}[^|]* \| {n} / {n} \| [^|]+ \| {runs} \(0\) \|", top), (key, top)
    total = sum(len(p.result.claims) for p in produced.values())
    assert f"{total}/{total} claims hold (all claims hold)" in md


def test_reproduce_exits_1_when_a_claim_fails(tmp_path):
    """The two-layer aligned start made unbalanced (layers 2a and a/2, the same u0 = a^2): Saxe et al.'s
    closed form assumes a balanced start, so its claim must fail."""
    spec = (specs_dir() / "saxe-modes.small.yaml").read_text()
    line = next(x for x in spec.splitlines() if "depth 2, balanced aligned" in x)
    a = "0.03162277660168379"
    assert line.count(a) == 8
    bad_line = line.replace(a, repr(2 * float(a)), 4).replace(a, repr(float(a) / 2))
    (tmp_path / "experiments").mkdir(parents=True)
    (tmp_path / "experiments" / "saxe-modes.small.yaml").write_text(spec.replace(line, bad_line))
    out = tmp_path / "figures"
    r = runner.invoke(app, ["reproduce", "--small", "-f", "saxe-modes", "--experiments", str(tmp_path / "experiments"),
                            "--results", str(tmp_path / "results"), "--out", str(out)])
    assert r.exit_code == 1, r.output
    md = (out / "REPORT.md").read_text()
    assert "| **FAILS** |" in md and "**(fails)**" in md
    assert "FAILS" in (out / "REPORT.html").read_text()
    assert "fails: two layers, balanced aligned" in r.output


def test_reproduce_unknown_figure_is_a_usage_error(tmp_path):
    r = runner.invoke(app, ["reproduce", "--small", "-f", "no-such-figure", "--results", str(tmp_path / "r"),
                            "--out", str(tmp_path / "f")])
    assert r.exit_code == 2
    assert "unknown figure(s) 'no-such-figure'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "f").exists() and not (tmp_path / "r").exists()
