"""``lcnrun sweep SPEC [-j N]``: every point of a spec, locally, in N worker processes."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..policy import should_run
from ..schedule.local import PointResult, SweepError, SweepObserver, available_cores, run_sweep
from ..store.experiment import ExperimentDir, ManifestRow
from .report import PLAIN_FROM_ROWS, fail_line, plain_grid, print_table
from .run import CheckpointEveryOption, parse_memory_budget, set_checkpoint_every
from .app import (EXIT_FAILED, EXIT_OK, STATE_STYLE, ResultsOption, UsageError, app, console, err_console,
                  escape, handle_errors, is_terminal)

LIST_AT_MOST = 20


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def _to_run(to_run: int, workers: int) -> str:
    if not to_run:
        return "nothing to run"
    return f"{to_run} to run in {workers} worker process{'es' if workers != 1 else ''}"


class _Counter(SweepObserver):
    """Counts what happened (shared by the renderers)."""

    def __init__(self, name: str):
        self.name = name
        self.total = self.done = self.failed = self.ran = 0
        self.started = time.monotonic()

    def planned(self, total, to_run, skipped, workers):
        self.total, self.workers, self.to_run = total, workers, to_run
        self.done = sum(1 for r in skipped if r.ok)
        self.failed = sum(1 for r in skipped if not r.ok)
        self.started = time.monotonic()

    def result(self, result: PointResult):
        if result.ok:
            self.done += 1
        else:
            self.failed += 1
        self.ran += 1

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def rate(self) -> float | None:
        elapsed = time.monotonic() - self.started
        return self.ran / elapsed if self.ran and elapsed > 0 else None

    def eta(self) -> float | None:
        rate = self.rate()
        return self.remaining / rate if rate else None

    def failure_line(self, r: PointResult, overrides: str) -> str:
        where = f"#{r.index} {r.run_id}" + (f" ({overrides})" if overrides else "")
        return f"{r.status}: {where}: {r.message}" if r.message else f"{r.status}: {where}"


class PlainProgress(_Counter):
    """One line now and then (a log file, a batch job), and one line per failed run."""

    def __init__(self, name: str, overrides: dict[int, str], every: float):
        super().__init__(name)
        self.overrides, self.every = overrides, every
        self.last = 0.0

    def _print(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", flush=True)

    def planned(self, total, to_run, skipped, workers):
        super().planned(total, to_run, skipped, workers)
        before = f"{self.done} completed and {self.failed} not completed before, " if skipped else ""
        self._print(f"sweep {self.name}: {total} points, {before}{_to_run(to_run, workers)}")
        self.last = time.monotonic()

    def result(self, result):
        super().result(result)
        if not result.ok:
            self._print(self.failure_line(result, self.overrides.get(result.index, "")))

    def line(self) -> str:
        rate = self.rate()
        return (f"{self.done + self.failed}/{self.total}: {self.done} done, {self.failed} failed, "
                f"{self.remaining} remaining, "
                f"{(f'{rate:.3g}' if rate else '?')} runs/s, ETA {_duration(self.eta())}")

    def tick(self):
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._print(self.line())

    def interrupting(self, signal_name):
        self._print(f"{signal_name}: stopping the workers ...")


class RichProgress(_Counter):
    """A progress bar on a terminal; failed runs printed above it."""

    def __init__(self, name: str, overrides: dict[int, str]):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

        super().__init__(name)
        self.overrides = overrides
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/] "
                       "{task.fields[remaining]} remaining"),
            TextColumn("{task.fields[rate]} runs/s"), TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(), console=console.real(), transient=False, refresh_per_second=4)
        self.task = None

    def planned(self, total, to_run, skipped, workers):
        super().planned(total, to_run, skipped, workers)
        before = f", {self.done + self.failed} kept from earlier sweeps" if skipped else ""
        console.print(f"sweep [bold]{escape(self.name)}[/]: {total} points{before}, "
                      f"{_to_run(to_run, workers)}", highlight=False, soft_wrap=True)
        self.task = self.progress.add_task(self.name, total=total, done=self.done, failed=self.failed,
                                           remaining=self.remaining, rate="?", eta="?")
        self.progress.start()
        self._update()

    def _update(self):
        rate = self.rate()
        self.progress.update(self.task, completed=self.done + self.failed, done=self.done,
                             failed=self.failed, remaining=self.remaining,
                             rate=f"{rate:.3g}" if rate else "?", eta=_duration(self.eta()))

    def result(self, result):
        from rich.text import Text  # noqa: PLC0415

        super().result(result)
        if not result.ok:
            line = self.failure_line(result, self.overrides.get(result.index, ""))
            self.progress.console.print(Text(line, style="red" if result.status != "stopped" else "yellow"), soft_wrap=True)
        self._update()

    def tick(self):
        if self.task is not None:
            self._update()

    def interrupting(self, signal_name):
        self.progress.console.print(f"{signal_name}: stopping the workers ...", highlight=False, soft_wrap=True)

    def stop(self):
        if self.task is not None:
            self._update()
        self.progress.stop()


class QuietProgress(_Counter):
    pass


def _dry_run(exp, results: Path, force: bool, rerun_failed: bool) -> None:
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
    from ..spec import format_overrides  # noqa: PLC0415

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
        observer: _Counter = QuietProgress(exp.name)
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
