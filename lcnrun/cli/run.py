"""``lcnrun validate SPEC`` and ``lcnrun run SPEC [--index I]``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from .app import EXIT_FAILED, EXIT_OK, ResultsOption, UsageError, app, console, handle_errors

if TYPE_CHECKING:
    from rich.table import Table


CheckpointEveryOption = typer.Option(
    None, "--checkpoint-every", metavar="SECONDS",
    help="save a run's state this often while it computes (default 300; 0: at every step "
         "boundary); a SIGTERM always saves it, and the next run of the point resumes from it")


def set_checkpoint_every(seconds: float | None) -> None:
    """Pass ``--checkpoint-every`` to the runs of this process and of those it starts."""
    if seconds is None:
        return
    if not seconds >= 0:
        raise UsageError(f"--checkpoint-every {seconds}: must be a number of seconds >= 0")
    from ..runner import CHECKPOINT_EVERY_VARIABLE  # noqa: PLC0415

    os.environ[CHECKPOINT_EVERY_VARIABLE] = repr(float(seconds))


@app.command()
@handle_errors
def validate(spec: Path = typer.Argument(..., help="experiment spec (YAML)")) -> None:
    """Check a spec (and every sweep point) without running anything."""
    from ..spec import load_experiment  # noqa: PLC0415  (the spec layer, not the runner: start-up)

    exp = load_experiment(spec)
    n = len(exp.points)
    console.styled(("ok", "green"), f": {spec} is valid: experiment ", (exp.name, "bold"),
                   f", {n} run{'s' if n != 1 else ''}")


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
    indices: Optional[str] = typer.Option(None, "--indices", help="run these sweep points in this "
                                          "process, those that differ only in init, data, step "
                                          "size ... together as one ensemble: '0-99', '3,5,10-12' "
                                          "(with --expect-run-id: their ids, comma-separated, in "
                                          "index order)"),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget", help="with --indices: "
                                                "the memory one ensemble may use, e.g. 2G [half "
                                                "of a Slurm task's memory, or of this machine's]",
                                                show_default=False),
    checkpoint_every: Optional[float] = CheckpointEveryOption,
) -> None:
    """Run a spec with no sweep, one point of a sweep (--index I), or several (--indices 0-99)."""
    from .. import interrupt

    set_checkpoint_every(checkpoint_every)

    # from here on a SIGTERM (Slurm's time limit, scancel) is never lost: a run that has not
    # started its computation yet stops as soon as it would, and writes a 'stopped' run file
    with interrupt.handling():
        interrupt.barrier("started")
        _run(spec, index, results, force, quiet, expect_run_id, indices, memory_budget)


def _run(spec: Path, index: int | None, results: Path, force: bool, quiet: bool,
         expect_run_id: str | None, indices: str | None, memory_budget: str | None) -> None:
    from .. import workflow
    from ..spec.sweep import expand_point, expand_points
    from ..spec.yamlio import read_yaml_file

    where = {"file": str(spec), "base_dir": Path(spec).resolve().parent, "spec_path": str(Path(spec).resolve())}
    if indices is not None:
        if index is not None:
            raise UsageError("--indices cannot be combined with --index")
        budget = parse_memory_budget(memory_budget)
        # only the points asked for are made and validated (a bundled task of a 100,000-point
        # sweep must not expand them all); _prepare_points validates the rest unless the folder
        # already is this spec's (submit wrote it)
        raw, lines = read_yaml_file(spec)
        part, n_points = expand_points(raw, lines, lambda n: parse_indices(indices, n, spec), **where)
        chosen = [p.index for p in part.points]
        if expect_run_id is not None:
            check_run_ids(part, spec, chosen, expect_run_id.split(","))
        exp, xdir = _prepare_points(spec, part, n_points, results)
        _run_indices(exp, xdir, chosen, force, quiet, budget)
    if memory_budget is not None:
        raise UsageError("--memory-budget sizes the ensembles of --indices: give --indices too")
    # only the point asked for is validated (a 10,000-point sweep's task must not check them all)
    raw, lines = read_yaml_file(spec)
    exp, n_points = expand_point(raw, lines, 0 if index is None else index, **where)
    if index is None:
        if n_points != 1:
            raise UsageError(f"{spec} has {n_points} sweep points: use `lcnrun sweep {spec}` "
                             f"or pick one with --index I (0..{n_points - 1})")
        index = 0
    if not 0 <= index < n_points:
        raise UsageError(f"--index {index} is out of range: {spec} has {n_points} points "
                         f"(0..{n_points - 1})")
    point = exp.points[0]
    if expect_run_id is not None and point.run_id != expect_run_id:
        raise UsageError(f"{spec}: point {index} is now run {point.run_id}, not {expect_run_id} as "
                         "when it was submitted: the spec changed since (submit it again)")
    xdir = _prepare_for(spec, exp.name, point, n_points, results)
    outcome = workflow.run_point(exp, xdir, point, force=force)  # under the run's claim
    path = xdir.run_path(point.run_id)
    if quiet:
        console.print(str(path), highlight=False)
    else:
        if outcome.skipped:
            why = {"completed": "is already completed (--force runs it again)",
                   "unreadable": f"is kept: {outcome.attrs.get('message', '')}"}.get(
                outcome.status, f"was written by another process meanwhile ({outcome.status})")
            console.print(f"run {point.run_id} {why}: {path}", highlight=False)
        else:
            console.print(f"wrote {path}", highlight=False)
        console.print(summary_table(outcome.attrs))
    raise typer.Exit(EXIT_OK if outcome.status == "completed" else EXIT_FAILED)


def _prepare_for(spec: Path, name: str, point, n_points: int, results: Path):
    """The experiment folder for running ``point`` alone. Its ``experiment.yaml`` and
    ``manifest.tsv`` name every point: if they already are this spec's (the same text, as many
    rows, this point's row as computed here: what ``submit`` or ``sweep`` wrote), they are kept as
    they are; otherwise the whole sweep is validated and they are written (once)."""
    from .. import workflow  # noqa: PLC0415
    from ..store.experiment import ExperimentDir  # noqa: PLC0415

    xdir = ExperimentDir(Path(results) / name)
    if xdir.manifest_row_matches(point.index, point.run_id, point.overrides, n_points) \
            and xdir.experiment_yaml_is(Path(spec).read_text(encoding="utf-8")):
        return xdir.create()
    return workflow.prepare(workflow.load(spec), results)


class _Chosen:
    """Some points of an experiment as the local scheduler's units use them (``points[i]``: the
    point of sweep index ``i``; ``name``), without the others."""

    def __init__(self, name: str, points) -> None:
        self.name = name
        self.points = {p.index: p for p in points}


def _prepare_points(spec: Path, part, n_points: int, results: Path):
    """``(experiment, folder)`` for running the points of ``part`` (``expand_points``). If the
    folder's ``experiment.yaml`` is this spec's text and its ``manifest.tsv`` has ``n_points``
    rows with these points' rows as computed here (what ``submit`` or ``sweep`` wrote after
    validating every point), the folder is kept and only these points are known; otherwise the
    whole sweep is validated (every point valid, no two the same run: else exit 2, as before) and
    the folder written."""
    from .. import workflow  # noqa: PLC0415
    from ..store.experiment import ExperimentDir  # noqa: PLC0415

    xdir = ExperimentDir(Path(results) / part.name)
    if xdir.manifest_rows_match([(p.index, p.run_id, p.overrides) for p in part.points], n_points) \
            and xdir.experiment_yaml_is(Path(spec).read_text(encoding="utf-8")):
        return _Chosen(part.name, part.points), xdir.create()
    exp = workflow.load(spec)
    return exp, workflow.prepare(exp, results)


def parse_indices(text: str, n_points: int, spec: Path) -> list[int]:
    """``'0-99'``, ``'3,5,10-12'`` -> sorted distinct indices; UsageError if malformed or out of
    range."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise UsageError(f"--indices {text!r}: {part!r} is not an index or a range a-b") from None
        if a > b or a < 0 or b >= n_points:
            raise UsageError(f"--indices {text!r}: {part!r} is out of range: {spec} has {n_points} "
                             f"points (0..{n_points - 1})")
        out.update(range(a, b + 1))
    return sorted(out)


def check_run_ids(exp, spec: Path, chosen: list[int], expected: list[str]) -> None:
    """UsageError unless the points ``chosen`` have the run ids ``expected`` (in that order): a
    Slurm task's check that the spec is still the one submitted."""
    if len(expected) != len(chosen):
        raise UsageError(f"--expect-run-id: {len(expected)} run ids for {len(chosen)} points")
    ids = {p.index: p.run_id for p in exp.points}
    changed = [(i, rid) for i, rid in zip(chosen, expected) if ids[i] != rid]
    if changed:
        i, rid = changed[0]
        raise UsageError(f"{spec}: point {i} is now run {ids[i]}, not {rid} as when it "
                         f"was submitted ({len(changed)} of {len(chosen)} points changed): the spec "
                         "changed since (submit it again)")


def parse_memory_budget(text: str | None) -> int | None:
    """``--memory-budget`` text (``2G``, ``500M``, bytes) in bytes; ``None`` stays ``None``."""
    from ..schedule.estimate import parse_bytes  # noqa: PLC0415

    if text is None:
        return None
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise UsageError(f"--memory-budget: {err}") from None


def _run_indices(exp, xdir, chosen: list[int], force: bool, quiet: bool,
                 memory_budget: int | None) -> None:
    """Run ``chosen`` points here (ensembles as ``lcnrun sweep`` forms them, within the memory
    budget, one at a time), each under its claim (waiting for points another process holds); after
    a SIGTERM no further ensemble starts (the one in progress ends as ``stopped`` run files). Exit
    0 if all completed, 143 after a SIGTERM."""
    from .. import interrupt, policy  # noqa: PLC0415
    from ..schedule.local import UnitOfWork, abandon_claim_wait, attempt_unit, ensemble_groups  # noqa: PLC0415

    interrupt.install(abandon_claim_wait)  # a SIGTERM ends a wait for another process's claim
    planned = {i: policy.file_state(xdir.run_path(exp.points[i].run_id)) for i in chosen}
    ok = True
    for unit in ensemble_groups(exp, chosen, jobs=1, memory_budget=memory_budget):
        if interrupt.stop_requested():  # (run() installed the SIGTERM handling)
            break
        try:
            for r in attempt_unit(exp, xdir, UnitOfWork(unit, force, True, {i: planned[i] for i in unit}, True)):
                ok &= r.status == "completed"
                _print_point(xdir, r, quiet)
        except KeyboardInterrupt:
            if not interrupt.stop_requested():
                raise
            break  # SIGTERM while waiting for a claim: nothing of this unit started
    if interrupt.stop_requested():
        raise typer.Exit(143)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def _print_point(xdir, r, quiet: bool) -> None:
    path = xdir.run_path(r.run_id)
    if quiet:
        console.print(str(path), highlight=False)
        return
    what = "kept" if r.action == "skipped" else "wrote"
    console.print(f"#{r.index} {what} {path} ({r.status})"
                  + (f": {r.message}" if r.message and r.status != "completed" else ""), highlight=False)


def summary_table(attrs: dict) -> Table:
    """A short two-column table of a run's final figures."""
    from rich.table import Table  # noqa: PLC0415  (start-up: rich on use)

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
