"""``lcnrun reproduce``: every paper figure in one go, and one report of every claim.

:func:`reproduce` produces the figures one after the other (each runs only what is missing, as
``lcnrun figure``), timing each; :func:`write_report` writes ``REPORT.md`` and ``REPORT.html`` next to
the figures: a table with one row per paper (claims held / total, figures, runs, wall time), then per
paper its figures (image, the claims with the measured value, the paper's statement and the verdict,
the notes). Papers are told apart by their first arXiv id (SPEC section 5): a figure of several papers
goes with the first one it names.
"""
from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..store.atomic import atomic_write_text
from . import FIGURES
from .base import Claim
from .driver import FigureError, produce


@dataclass
class FigureOutcome:
    """One figure of a reproduction: its claims, the files drawn, the runs it needed (``n_ran`` of them
    computed now), its wall time in seconds, and ``error`` if it could not be produced at all."""

    name: str
    paper: str
    title: str
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    n_runs: int = 0
    n_ran: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def held(self) -> int:
        return sum(bool(c.holds) for c in self.claims)

    @property
    def ok(self) -> bool:
        return self.error is None and self.held == len(self.claims)


def paper_key(paper: str) -> str:
    """The first ``arXiv NNNN.NNNNN`` id a figure's ``paper`` names (else the whole string)."""
    m = re.search(r"arXiv\s*([0-9]{4}\.[0-9]{4,5})", paper)
    return m.group(1) if m else paper


def reproduce(*, results: Path, out_dir: Path, experiments: Path | None = None, jobs: int | None = None,
              small: bool = False, names: list[str] | None = None, on_figure=None) -> list[FigureOutcome]:
    """Produce ``names`` (default every figure, in registry order). ``on_figure(outcome)`` is called after
    each one. Unknown names raise :class:`FigureError` before anything runs."""
    names = list(FIGURES) if not names else list(dict.fromkeys(names))
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise FigureError(f"unknown figure(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(FIGURES))}")
    outcomes = []
    for name in names:
        fig = FIGURES[name]
        o = FigureOutcome(name, fig.paper, fig.title)
        start = time.perf_counter()
        try:
            produced = produce(name, results=results, out_dir=out_dir, experiments=experiments, jobs=jobs,
                               small=small)
        except FigureError as err:
            o.error = str(err)
        else:
            res = produced.result
            o.claims, o.notes, o.files = list(res.claims), list(res.notes), list(produced.files)
            o.n_runs, o.n_ran = produced.n_runs, produced.n_ran
        o.seconds = time.perf_counter() - start
        outcomes.append(o)
        if on_figure is not None:
            on_figure(o)
    return outcomes


def by_paper(outcomes: list[FigureOutcome]) -> list[tuple[str, list[FigureOutcome]]]:
    """``[(paper label, its outcomes)]`` in the order the papers first appear; the label is the shortest
    ``paper`` string of the group."""
    groups: dict[str, list[FigureOutcome]] = {}
    for o in outcomes:
        groups.setdefault(paper_key(o.paper), []).append(o)
    return [(min((o.paper for o in g), key=len), g) for g in groups.values()]


def _measured(c: Claim) -> str:
    return f"{c.measured:.6g}" if isinstance(c.measured, float) else str(c.measured)


def _fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _summary_rows(outcomes):
    for paper, group in by_paper(outcomes):
        held = sum(o.held for o in group)
        total = sum(len(o.claims) for o in group)
        errors = sum(o.error is not None for o in group)
        yield (paper, held, total, errors, ", ".join(o.name for o in group), sum(o.n_runs for o in group),
               sum(o.n_ran for o in group), sum(o.seconds for o in group))


def _header(outcomes, small: bool, seconds: float) -> tuple[str, str]:
    held = sum(o.held for o in outcomes)
    total = sum(len(o.claims) for o in outcomes)
    errors = sum(o.error is not None for o in outcomes)
    version = "small versions (lcnrun reproduce --small)" if small else "full versions (lcnrun reproduce)"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verdict = ("all claims hold" if held == total and not errors else
               f"{total - held} claim(s) do not hold" + (f", {errors} figure(s) not produced" if errors else ""))
    line = (f"{len(outcomes)} figures, {version}, {when}; {held}/{total} claims hold ({verdict}); "
            f"{sum(o.n_runs for o in outcomes)} runs ({sum(o.n_ran for o in outcomes)} computed now); "
            f"wall time {_fmt_seconds(seconds)}")
    return verdict, line


def render_markdown(outcomes: list[FigureOutcome], *, small: bool, seconds: float) -> str:
    _, line = _header(outcomes, small, seconds)

    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["# Reproduction report", "", line, "",
           "| paper | claims held / total | figures | runs (computed now) | wall time |", "|---|---|---|---|---|"]
    for paper, held, total, errors, names, n, ran, sec in _summary_rows(outcomes):
        mark = "" if held == total and not errors else " **(fails)**"
        out.append(f"| {cell(paper)} | {held} / {total}{mark} | {names} | {n} ({ran}) | {_fmt_seconds(sec)} |")
    for paper, group in by_paper(outcomes):
        out += ["", f"## {paper}"]
        for o in group:
            out += ["", f"### {o.name}: {o.title}", "",
                    f"{o.held}/{len(o.claims)} claims hold; {o.n_runs} runs ({o.n_ran} computed now); "
                    f"wall time {_fmt_seconds(o.seconds)}; paper: {o.paper}"]
            if o.error:
                out += ["", f"**not produced**: {cell(o.error)}"]
                continue
            png = next((f for f in o.files if f.suffix == ".png"), None)
            if png is not None:
                out += ["", f"![{o.name}]({png.name})"]
            out += ["", "| claim | measured | the paper / expected | verdict |", "|---|---|---|---|"]
            for c in o.claims:
                out.append(f"| {cell(c.text)} | {cell(_measured(c))} | {cell(c.expected)} | "
                           f"{'holds' if c.holds else '**FAILS**'} |")
            if o.notes:
                out += [""] + [f"- {n}" for n in o.notes]
    return "\n".join(out) + "\n"


def render_html(outcomes: list[FigureOutcome], *, small: bool, seconds: float) -> str:
    _, line = _header(outcomes, small, seconds)
    e = html.escape

    def verdict(ok: bool, text: str) -> str:
        return f'<td class="{"ok" if ok else "bad"}">{e(text)}</td>'

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>lcnrun reproduction report</title>',
           "<style>body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;"
           "vertical-align:top;text-align:left}th{background:#eee}td.ok{color:#060}td.bad{color:#b00;"
           "font-weight:bold}img{max-width:100%}li{margin:.2em 0}</style></head><body>",
           "<h1>Reproduction report</h1>", f"<p>{e(line)}</p>",
           "<table><tr><th>paper</th><th>claims held / total</th><th>figures</th><th>runs (computed now)</th>"
           "<th>wall time</th></tr>"]
    for paper, held, total, errors, names, n, ran, sec in _summary_rows(outcomes):
        out.append(f"<tr><td>{e(paper)}</td>{verdict(held == total and not errors, f'{held} / {total}')}"
                   f"<td>{e(names)}</td><td>{n} ({ran})</td><td>{e(_fmt_seconds(sec))}</td></tr>")
    out.append("</table>")
    for paper, group in by_paper(outcomes):
        out.append(f"<h2>{e(paper)}</h2>")
        for o in group:
            out.append(f'<h3 id="{e(o.name)}">{e(o.name)}: {e(o.title)}</h3>')
            out.append(f"<p>{o.held}/{len(o.claims)} claims hold; {o.n_runs} runs ({o.n_ran} computed now); "
                       f"wall time {e(_fmt_seconds(o.seconds))}; paper: {e(o.paper)}</p>")
            if o.error:
                out.append(f'<p class="bad">not produced: {e(o.error)}</p>')
                continue
            png = next((f for f in o.files if f.suffix == ".png"), None)
            if png is not None:
                out.append(f'<p><img src="{e(png.name)}" alt="{e(o.name)}"></p>')
            out.append("<table><tr><th>claim</th><th>measured</th><th>the paper / expected</th><th>verdict</th></tr>")
            for c in o.claims:
                out.append(f"<tr><td>{e(c.text)}</td><td>{e(_measured(c))}</td><td>{e(c.expected)}</td>"
                           f"{verdict(bool(c.holds), 'holds' if c.holds else 'FAILS')}</tr>")
            out.append("</table>")
            if o.notes:
                out.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in o.notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(outcomes: list[FigureOutcome], out_dir: Path, *, small: bool, seconds: float) -> list[Path]:
    """``out_dir/REPORT.md`` and ``out_dir/REPORT.html``, each written to a temporary name and renamed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in (("REPORT.md", render_markdown(outcomes, small=small, seconds=seconds)),
                       ("REPORT.html", render_html(outcomes, small=small, seconds=seconds))):
        target = out_dir / name
        atomic_write_text(target, text, fsync=False)
        files.append(target)
    return files
