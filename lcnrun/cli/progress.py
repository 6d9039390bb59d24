"""How ``lcnrun sweep`` shows its progress: the observers of :func:`lcnrun.schedule.local.run_sweep`
(a line now and then for a log, a progress bar on a terminal, nothing). Imported by the verb when
it runs, not at start-up (the local scheduler it observes pulls in the store and numpy)."""
from __future__ import annotations

import time

from ..schedule.local import PointResult, SweepObserver
from .app import console, escape


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


class SweepProgress(SweepObserver):
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


class PlainProgress(SweepProgress):
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


class RichProgress(SweepProgress):
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


class QuietProgress(SweepProgress):
    pass
