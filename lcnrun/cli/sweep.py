"""``lcnrun sweep SPEC [-j N]``: every point of a spec, locally, in N worker processes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .report import PLAIN_FROM_ROWS, fail_line, plain_grid, print_table
from .run import CheckpointEveryOption, parse_memory_budget, set_checkpoint_every
from .app import (EXIT_FAILED, EXIT_OK, STATE_STYLE, ResultsOption, UsageError, app, console, err_console,
                  escape, handle_errors, is_terminal)

LIST_AT_MOST = 20


def _dry_run(exp, results: Path, force: bool, rerun_failed: bool) -> None:
    from ..policy import should_run  # noqa: PLC0415
    from ..store.experiment import ExperimentDir, ManifestRow  # noqa: PLC0415
    from ..report.source import ExperimentSource  # noqa: PLC0415
    from ..report.status import experiment_status  # noqa: PLC0415
    from ..spec import format_overrides  # noqa: PLC0415

    xdir = ExperimentDir(Path(results) / exp.name)
    source = ExperimentSource(str(exp.path), xdir.runs_dir,
                              [ManifestRow(p.index, p.run_id, p.overrides) for p in exp.points], xdir)
    status = experiment_status(source)
    title = f"{exp.name}: {len(exp.points)} points -> {xdir.root}"
    columns = ("index", "run id", "state", "overrides")
    rows = [(str(s.index), s.run_id, s.state, format_overrides(s.overrides)) for s in status.states]
    would = sum(should_run(s.state, force=force, rerun_failed=rerun_failed) for s in status.states)
    text = None if is_terminal() or len(rows) < PLAIN_FROM_ROWS else \
        plain_grid(title, list(columns), [c == "index" for c in columns], rows)
    if text is not None:  # 100,000 points to a file: the same characters rich would print
        sys.stdout.write(text)
    else:
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        table = Table(title=title, title_justify="left")
        for col in columns:
            table.add_column(col, justify="right" if col == "index" else "left", no_wrap=col != "overrides")
        for index, run_id, state, overrides in rows:
            table.add_row(index, run_id, Text(state, style=STATE_STYLE.get(state, "")), Text(overrides))
        print_table(table)
    counts = ", ".join(f"{n} {k}" for k, n in status.counts().items())
    console.print(f"{counts}; `lcnrun sweep` would run {would}", highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def sweep(
    spec: Path = typer.Argument(..., help="experiment spec (YAML) with a sweep: block"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="worker processes [default: the "
                                       "cores this process may use]", show_default=False),
    results: Path = ResultsOption,
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="print the points, their run ids "
                                 "and states; run nothing"),
    rerun_failed: bool = typer.Option(False, "--rerun-failed", help="run failed and diverged points "
                                      "again"),
    force: bool = typer.Option(False, "--force", help="run every point again, even completed ones"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress; only the runs that did "
                               "not complete, on stderr"),
    log_every: float = typer.Option(30.0, "--log-every", help="seconds between progress lines when "
                                    "the output is not a terminal", min=0.0),
    ensemble: int = typer.Option(512, "--ensemble", "-e", help="at most this many points that differ "
                                 "only in init, data, step size ... are computed together as one "
                                 "ensemble (1: every point alone)", min=1),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget", help="the memory one "
                                                "worker's ensemble may use, e.g. 2G; larger "
                                                "ensembles are cut [half of this machine's memory "
                                                "shared by the workers]", show_default=False),
    checkpoint_every: Optional[float] = CheckpointEveryOption,
) -> None:
    """Run every point of a spec's sweep in N local worker processes (one BLAS thread each).

    Completed points are skipped, so an interrupted sweep is finished by running it again; failed
    and diverged ones are kept unless --rerun-failed. Exit code 1 if any point did not complete.
    """
    from .. import workflow  # noqa: PLC0415  (numpy, scipy: only for this verb)
    from ..schedule.local import SweepError, available_cores, run_sweep  # noqa: PLC0415
    from ..spec import format_overrides  # noqa: PLC0415
    from .progress import PlainProgress, QuietProgress, RichProgress, SweepProgress  # noqa: PLC0415

    set_checkpoint_every(checkpoint_every)  # the workers inherit it
    budget = parse_memory_budget(memory_budget)
    exp = workflow.load(spec)
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {jobs})")
    if dry_run:
        _dry_run(exp, results, force, rerun_failed)
        raise typer.Exit(EXIT_OK)
    xdir = workflow.prepare(exp, results)
    overrides = {p.index: format_overrides(p.overrides) for p in exp.points}
    if quiet:
        observer: SweepProgress = QuietProgress(exp.name)
    elif is_terminal():
        observer = RichProgress(exp.name, overrides)
    else:
        observer = PlainProgress(exp.name, overrides, log_every)
    try:
        report = run_sweep(exp, xdir, jobs=jobs if jobs is not None else available_cores(),
                           force=force, rerun_failed=rerun_failed, observer=observer,
                           max_members=ensemble, memory_budget=budget)
    except SweepError as err:
        fail_line(str(err), EXIT_FAILED)
    finally:
        if isinstance(observer, RichProgress):
            observer.stop()
    _final_report(exp, xdir, report, overrides, quiet)
    if report.interrupted:
        raise typer.Exit(130 if report.interrupted == "SIGINT" else 143)
    raise typer.Exit(EXIT_FAILED if report.failures else EXIT_OK)


def _final_report(exp, xdir, report, overrides: dict[int, str], quiet: bool) -> None:
    from rich.text import Text  # noqa: PLC0415

    failures = report.failures
    out = err_console if quiet else console
    if not quiet:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items(),
                                                          key=lambda kv: kv[0] != "completed"))
        ran = report.ran
        speed = ""
        if ran:
            rate = len(ran) / report.elapsed if report.elapsed > 0 else 0
            speed = (f" ({len(ran)} run now in {report.elapsed:.1f} s with {report.workers} "
                     f"worker{'s' if report.workers != 1 else ''}, {rate:.3g} runs/s)")
        console.print(f"sweep {escape(exp.name)}: {report.total} points: {counts}{speed}",
                      highlight=False, soft_wrap=True)
        console.print(f"results in {xdir.root} (lcnrun summary {xdir.root})", highlight=False, soft_wrap=True)
    if failures:
        earlier = sum(1 for r in failures if r.action == "skipped")
        out.print(f"{len(failures)} point{'s' if len(failures) != 1 else ''} did not complete"
                  + (f" ({earlier} from earlier sweeps: --rerun-failed runs them again)" if earlier else "")
                  + ":", highlight=False, soft_wrap=True)
        for r in failures[:LIST_AT_MOST]:
            where = f"  #{r.index} {r.run_id} {r.status}"
            ov = overrides.get(r.index, "")
            line = where + (f" ({ov})" if ov else "") + (f": {r.message}" if r.message else "")
            out.print(Text(line), soft_wrap=True)
        if len(failures) > LIST_AT_MOST:
            out.print(f"  ... and {len(failures) - LIST_AT_MOST} more: lcnrun summary {xdir.root} "
                      "--filter 'status!=completed'", highlight=False, soft_wrap=True)
    if report.interrupted:
        err_console.print(f"interrupted ({report.interrupted}): {report.pending} of {report.total} "
                          "points have no result yet; run the same command again to finish them",
                          highlight=False, soft_wrap=True)
