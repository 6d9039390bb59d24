"""``lcnrun reproduce [--small] [-j N]``: every paper figure, then ``REPORT.md`` and ``REPORT.html``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from .app import EXIT_FAILED, EXIT_OK, ResultsOption, UsageError, app, console, handle_errors


@app.command()
@handle_errors
def reproduce(
    results: Path = ResultsOption,
    out: Path = typer.Option(Path("figures"), "--out", help="where the figures and REPORT.md / REPORT.html go"),
    experiments: Optional[Path] = typer.Option(None, "--experiments", help="folder of the figure specs "
                                                                           "(default: the checkout's experiments/)"),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs", help="worker processes for missing runs"),
    small: bool = typer.Option(False, "--small", help="the small versions (fewer seeds, shorter runs)"),
    only: Optional[List[str]] = typer.Option(None, "--figure", "-f", help="only this figure (repeatable)"),
) -> None:
    """Reproduce every paper figure (finished runs are skipped) and write a report of every claim.
    Exit code 1 if a claim does not hold or a figure could not be produced."""
    import matplotlib
    from rich.table import Table  # noqa: PLC0415  (imported on use: start-up)
    matplotlib.use("Agg")
    from ..figures.driver import FigureError
    from ..figures.reproduction import by_paper, reproduce as run_all, write_report

    def show(o):
        state = ("[red]not produced[/]" if o.error else
                 f"[{'green' if o.ok else 'red'}]{o.held}/{len(o.claims)} claims hold[/]")
        console.print(f"{o.name}: {state}; {o.n_runs} runs ({o.n_ran} computed now); {o.seconds:.1f} s"
                      + (f"; {o.error}" if o.error else ""), highlight=False)
        for c in o.claims:
            if not c.holds:
                console.print(f"  [red]fails:[/] {c.text}: measured {c.measured}; expected {c.expected}",
                              highlight=False)

    start = time.perf_counter()
    try:
        outcomes = run_all(results=results, out_dir=out, experiments=experiments, jobs=jobs, small=small,
                           names=only or None, on_figure=show)
    except FigureError as err:
        raise UsageError(str(err)) from None
    seconds = time.perf_counter() - start
    files = write_report(outcomes, out, small=small, seconds=seconds)
    table = Table("paper", "claims held / total", "figures", "runs", "wall time", title="reproduction")
    for paper, group in by_paper(outcomes):
        held, total = sum(o.held for o in group), sum(len(o.claims) for o in group)
        ok = all(o.ok for o in group)
        table.add_row(paper, f"[{'green' if ok else 'red'}]{held} / {total}[/]", ", ".join(o.name for o in group),
                      str(sum(o.n_runs for o in group)), f"{sum(o.seconds for o in group):.1f} s")
    console.print(table)
    console.print(f"wall time {seconds:.1f} s; wrote " + ", ".join(str(f) for f in files), highlight=False)
    raise typer.Exit(EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED)
