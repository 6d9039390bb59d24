"""``lcnrun validate SPEC`` and ``lcnrun run SPEC [--index I]``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .app import EXIT_FAILED, EXIT_OK, ResultsOption, UsageError, app, console, handle_errors


@app.command()
@handle_errors
def validate(spec: Path = typer.Argument(..., help="experiment spec (YAML)")) -> None:
    """Check a spec (and every sweep point) without running anything."""
    from .. import workflow  # lazy: keeps `lcnrun status/summary/diff` from loading scipy

    exp = workflow.load(spec)
    n = len(exp.points)
    console.print(f"[green]ok[/]: {spec} is valid: experiment [bold]{exp.name}[/], "
                  f"{n} run{'s' if n != 1 else ''}", highlight=False)


@app.command()
@handle_errors
def run(
    spec: Path = typer.Argument(..., help="experiment spec (YAML)"),
    index: Optional[int] = typer.Option(None, "--index", "-i", help="run only sweep point I (0-based)"),
    results: Path = ResultsOption,
    force: bool = typer.Option(False, "--force", help="run again even if a completed run file exists"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the run file's path"),
    expect_run_id: Optional[str] = typer.Option(None, "--expect-run-id", help="refuse (exit 2) "
                                                "unless the point has this run id (a Slurm task's "
                                                "check that the spec is still the one submitted)"),
) -> None:
    """Run a spec with no sweep, or one point of a sweep (--index I)."""
    from .. import workflow
    from ..store.claims import try_claim

    exp = workflow.load(spec)
    if index is None:
        if len(exp.points) != 1:
            raise UsageError(f"{spec} has {len(exp.points)} sweep points: use `lcnrun sweep {spec}` "
                             f"or pick one with --index I (0..{len(exp.points) - 1})")
        index = 0
    if not 0 <= index < len(exp.points):
        raise UsageError(f"--index {index} is out of range: {spec} has {len(exp.points)} points "
                         f"(0..{len(exp.points) - 1})")
    point = exp.points[index]
    if expect_run_id is not None and point.run_id != expect_run_id:
        raise UsageError(f"{spec}: point {index} is now run {point.run_id}, not {expect_run_id} as "
                         "when it was submitted: the spec changed since (submit it again)")
    xdir = workflow.prepare(exp, results)
    # take the run's claim, like a sweep worker: a Slurm task and a local sweep never compute
    # the same point at once (the second waits, then finds it completed)
    with try_claim(xdir.runs_dir, point.run_id, wait=True):
        outcome = workflow.run_point(exp, xdir, point, force=force)
    path = xdir.run_path(point.run_id)
    if quiet:
        console.print(str(path), highlight=False)
    else:
        if outcome.skipped:
            console.print(f"run {point.run_id} is already completed: {path} (--force runs it again)",
                          highlight=False)
        else:
            console.print(f"wrote {path}", highlight=False)
        console.print(summary_table(outcome.attrs))
    raise typer.Exit(EXIT_OK if outcome.status == "completed" else EXIT_FAILED)


def summary_table(attrs: dict) -> Table:
    """A short two-column table of a run's final figures."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    status = attrs.get("status", "")
    colour = {"completed": "green", "diverged": "red", "failed": "red", "stopped": "yellow"}.get(status, "")
    rows = [("run id", attrs.get("run_id", "")), ("status", f"[{colour}]{status}[/]" if colour else status)]
    if attrs.get("message"):
        rows.append(("message", str(attrs["message"])))
    for key, label in [("final.t", "t"), ("final.loss_initial", "loss at t=0"), ("final.loss", "final loss"),
                       ("final.grad_norm", "final |grad L|"), ("final.invariant_drift", "invariant drift"),
                       ("final.n_steps", "steps"), ("final.nfev", "gradient evaluations"),
                       ("final.stop_reason", "stopped by")]:
        if key in attrs and attrs[key] not in ("", None):
            v = attrs[key]
            rows.append((label, f"{v:.6g}" if isinstance(v, float) else str(v)))
    for k, v in attrs.items():
        if k.startswith("diagnostics."):
            rows.append((k[len("diagnostics."):], f"{v:.6g}" if isinstance(v, float) else str(v)))
    for label, value in rows:
        table.add_row(label, value)
    return table
