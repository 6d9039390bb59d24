"""``lcnrun report DIR [-o FILE]``: write the experiment's HTML report (:mod:`lcnrun.report.html`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import EXIT_USAGE, ResultsOption, app, console, handle_errors


@app.command()
@handle_errors
def report(
    dir: Path = typer.Argument(..., help="experiment folder (results/<name>), its spec file or name"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="the HTML file to write "
                                       "[default: results/<name>/report.html]", show_default=False),
    results: Path = ResultsOption,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="processes reading run files "
                                       "[default: all cores from 2000 files on]", show_default=False),
) -> None:
    """One self-contained HTML page: status, plots, a sortable and filterable table, failures, spec."""
    from ..report.html import write_report
    from ..report.source import SourceError, open_experiment
    from ..report.summary import QueryError
    from .report import fail_line, status_probes

    try:
        path = write_report(open_experiment(dir, results), out, processes=jobs, probes=status_probes())
    except (SourceError, QueryError) as err:
        fail_line(str(err), EXIT_USAGE)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
