"""``lcnrun plot DIR --y SERIES ...`` (runs over time) and ``lcnrun plot DIR --heatmap FIGURE
--x KEY --y KEY`` (a phase diagram): draw what :mod:`lcnrun.report.plots` makes, print where."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import EXIT_USAGE, ResultsOption, app, console, handle_errors


@app.command()
@handle_errors
def plot(
    dir: Path = typer.Argument(..., help="experiment folder (results/<name>), its spec file or name"),
    y: Optional[str] = typer.Option(None, "--y", help="the series to draw (loss, grad_norm, "
                                    "rank_D, 'invariants[0]' ...) [default: loss]; with --heatmap: "
                                    "the key of the rows", show_default=False),
    x: Optional[str] = typer.Option(None, "--x", help="the x axis: t or another series; with "
                                    "--heatmap: the key of the columns [default: t]",
                                    show_default=False),
    color: Optional[str] = typer.Option(None, "--color", help="colour by this key (a median and "
                                        "band per value), e.g. model.strides"),
    facet: Optional[str] = typer.Option(None, "--facet", help="one panel per value of this key"),
    heatmap: Optional[str] = typer.Option(None, "--heatmap", help="a final figure "
                                          "(final.loss, diagnostics.<name>.<key>) averaged over "
                                          "the runs of each (--x, --y) cell"),
    logx: Optional[bool] = typer.Option(None, "--logx/--linx", help="log / linear x axis "
                                        "[default: log if the record grid is]", show_default=False),
    logy: Optional[bool] = typer.Option(None, "--logy/--liny", help="log / linear y axis "
                                        "(colour scale with --heatmap) [default: log if the values "
                                        "are positive and span 3 decades]", show_default=False),
    band: float = typer.Option(0.25, "--band", help="shade the quantiles BAND .. 1-BAND "
                               "around the median (0: none)"),
    filters: Optional[List[str]] = typer.Option(None, "--filter", "-f", help="only runs where "
                                                "KEY==VALUE (as in `lcnrun summary`; repeatable)"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="the file to write (.png or "
                                       ".pdf) [default: <experiment folder>/plots/<name>.png]",
                                       show_default=False),
    results: Path = ResultsOption,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="processes reading run files "
                                       "[default: all cores from 2000 files on]", show_default=False),
) -> None:
    """Plot a series of every run (median and quantile band per --color), or a --heatmap."""
    from ..report.plots import PlotError, default_path, heatmap as draw_heatmap, line_plot, save
    from ..report.source import SourceError, open_experiment
    from ..report.summary import QueryError
    from .report import fail_line

    try:
        source = open_experiment(dir, results)
        if heatmap is not None:
            if x is None or y is None:
                fail_line("--heatmap needs the two keys of its axes: --x KEY --y KEY", EXIT_USAGE)
            if color or facet:
                fail_line("--color and --facet are for line plots, not --heatmap", EXIT_USAGE)
            fig = draw_heatmap(source, heatmap, x, y, filters=filters or [], logc=logy,
                               processes=jobs)
            stem = f"heatmap_{heatmap}_by_{x}_{y}"
        else:
            series = y or "loss"
            fig = line_plot(source, series, x=x or "t", color=color, facet=facet, logx=logx,
                            logy=logy, filters=filters or [], band=band, processes=jobs)
            stem = series + (f"_by_{color}" if color else "") + (f"_per_{facet}" if facet else "")
        path = save(fig, out if out is not None else default_path(source, stem))
    except (SourceError, QueryError, PlotError) as err:
        fail_line(str(err), EXIT_USAGE)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
