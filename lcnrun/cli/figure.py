"""``lcnrun figure NAME`` and ``lcnrun figure --list``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import EXIT_FAILED, EXIT_OK, ResultsOption, UsageError, app, console, handle_errors


@app.command()
@handle_errors
def figure(
    name: Optional[str] = typer.Argument(None, help="figure name (see --list)"),
    list_: bool = typer.Option(False, "--list", "-l", help="list the figures and exit"),
    results: Path = ResultsOption,
    out: Path = typer.Option(Path("figures"), "--out", help="where NAME.png and NAME.pdf go"),
    experiments: Optional[Path] = typer.Option(None, "--experiments", help="folder of the figure specs "
                                                                           "(default: the installed lcnrun/figures/specs/)"),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs", help="worker processes for missing runs"),
    small: bool = typer.Option(False, "--small", help="the small version (fewer seeds, shorter runs)"),
) -> None:
    """Reproduce one paper figure: run what is missing, draw it, print the numbers and the claims."""
    import matplotlib
    from rich.table import Table  # noqa: PLC0415  (start-up: rich on use)
    matplotlib.use("Agg")
    from ..figures import FIGURES
    from ..figures.driver import FigureError, produce

    if list_ or name is None:
        table = Table("figure", "paper", "what it shows")
        for key in sorted(FIGURES):
            f = FIGURES[key]
            table.add_row(key, f.paper, f.title)
        console.print(table)
        raise typer.Exit(EXIT_OK)
    try:
        produced = produce(name, results=results, out_dir=out, experiments=experiments, jobs=jobs, small=small)
    except FigureError as err:
        raise UsageError(str(err)) from None
    res = produced.result
    if res.rows:
        table = Table(*res.rows[0].keys(), title=f"{name}: the numbers")
        for row in res.rows:
            table.add_row(*[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()])
        console.print(table)
    claims = Table("claim", "measured", "paper", "holds", title=f"{name}: the claims")
    for c in res.claims:
        claims.add_row(c.text, f"{c.measured:.6g}" if isinstance(c.measured, float) else str(c.measured),
                       c.expected, "[green]yes[/]" if c.holds else "[red]NO[/]")
    console.print(claims)
    for note in res.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"{produced.n_runs} runs ({produced.n_ran} computed now); wrote "
                  + ", ".join(str(p) for p in produced.files), highlight=False)
    raise typer.Exit(EXIT_OK if all(c.holds for c in res.claims) else EXIT_FAILED)
