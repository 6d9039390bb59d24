"""``lcnrun submit SPEC``: the pending points of a spec as Slurm array jobs of bundled tasks;
prints the job id and exits (Slurm runs the tasks: ``lcnrun run SPEC --indices ...``; ``lcnrun
status`` follows them). The work is :mod:`lcnrun.schedule.slurm`; this module parses and renders.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import (EXIT_OK, EXIT_USAGE, STATE_STYLE, ResultsOption, UsageError, app, console, err_console,
                  handle_errors)


def _say(text: str, quiet: bool) -> None:
    from rich.text import Text  # noqa: PLC0415  (rich and the Slurm package: imported on use)

    if not quiet:
        console.print(Text(text), soft_wrap=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


@app.command()
@handle_errors
def submit(
    spec: Path = typer.Argument(..., help="experiment spec (YAML)"),
    results: Path = ResultsOption,
    partition: Optional[str] = typer.Option(None, "--partition", "-p", help="Slurm partition "
                                            "[the cluster's default]", show_default=False),
    time: Optional[str] = typer.Option(None, "--time", "-t", help="time limit of each task, e.g. "
                                       "01:00:00 or 2-00:00:00 [the partition's default]",
                                       show_default=False),
    mem: Optional[str] = typer.Option(None, "--mem", help="memory of each task, e.g. 2G [the "
                                      "cluster's default]", show_default=False),
    cpus_per_task: int = typer.Option(1, "--cpus-per-task", "-c", help="cpus of each task (its "
                                      "BLAS threads)"),
    max_parallel: Optional[int] = typer.Option(None, "--max-parallel", help="at most K tasks "
                                               "running at once (Slurm's %K throttle)",
                                               show_default=False),
    job_name: Optional[str] = typer.Option(None, "--job-name", "-J", help="Slurm job name [the "
                                           "experiment's name]", show_default=False),
    requeue: bool = typer.Option(False, "--requeue", help="a preempted task (or one on a failed "
                                 "node) goes back into the queue and runs its point again"),
    sbatch_args: Optional[List[str]] = typer.Option(None, "--sbatch-arg", help="any other sbatch "
                                                    "option, written into the script; repeat, e.g. "
                                                    "--sbatch-arg=--qos=short "
                                                    "--sbatch-arg=--account=lab"),
    points_per_task: Optional[int] = typer.Option(None, "--points-per-task", "-k", help="each "
                                                  "array task runs K points (as ensembles where "
                                                  "it can) [chosen from the cost of a point and "
                                                  "--time]", show_default=False),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget", help="memory one "
                                                "ensemble of a task may use, e.g. 1G [half of "
                                                "--mem, or of what Slurm gives the task]",
                                                show_default=False),
    rerun_failed: bool = typer.Option(False, "--rerun-failed", help="also submit failed and "
                                      "diverged points (stopped and pending ones are always "
                                      "submitted)"),
    force: bool = typer.Option(False, "--force", help="submit every point, even completed ones "
                               "(never one that is queued or running)"),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="print the points and the batch "
                                 "script; submit nothing, write nothing"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the job id(s)"),
) -> None:
    """Submit the pending points of a spec as Slurm array jobs, print their ids, and exit.

    Array task I runs `lcnrun run SPEC --indices <its points>`; completed points, and points
    already queued or running, are not submitted. Follow with `lcnrun status`; run the same
    command again (or with --rerun-failed) to submit what is left, e.g. the points a task killed at
    its time limit did not finish.
    """
    from rich.text import Text  # noqa: PLC0415

    from ..schedule.slurm.commands import SlurmError  # noqa: PLC0415
    from ..schedule.slurm.pending import prepare_submission  # noqa: PLC0415
    from ..schedule.slurm.plan import SubmitOptions  # noqa: PLC0415
    from ..schedule.slurm.submit import SubmitError  # noqa: PLC0415
    from ..schedule.slurm.submit import submit as submit_plan  # noqa: PLC0415

    options = SubmitOptions(partition=partition, time=time, mem=mem, cpus_per_task=cpus_per_task,
                            max_parallel=max_parallel, requeue=requeue, job_name=job_name,
                            sbatch_args=tuple(sbatch_args or ()), points_per_task=points_per_task,
                            memory_budget=memory_budget)
    try:
        options.check()
    except ValueError as err:
        raise UsageError(str(err)) from None
    try:
        prepared = prepare_submission(spec, results, options, _point_states, rerun_failed=rerun_failed,
                                      force=force, dry_run=dry_run)
        sel = prepared.selection
        _say(_counts_line(prepared.exp.name, prepared.total, sel, rerun_failed), quiet)
        for note in prepared.notes:
            err_console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
        if prepared.plan is None:
            _say("nothing to submit", quiet)
            raise typer.Exit(EXIT_OK)
        if dry_run:
            _print_dry_run(prepared)
            raise typer.Exit(EXIT_OK)
        try:
            record = submit_plan(prepared.plan, prepared.xdir)
        except SubmitError as err:
            if err.submitted and quiet:
                console.print("\n".join(a.job_id for a in err.submitted), highlight=False)
            raise
    except SlurmError as err:
        err_console.print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    _index_job_note(record)
    if quiet:
        console.print("\n".join(record["job_ids"]), highlight=False)
        raise typer.Exit(EXIT_OK)
    _print_submitted(prepared, record, Path(results) / prepared.exp.name)


def _index_job_note(record: dict) -> None:
    """A note (on stderr, also with --quiet) if sbatch refused the submission's index job."""
    from rich.text import Text  # noqa: PLC0415

    error = (record.get("index_job") or {}).get("error")
    if error:
        err_console.print(Text(f"note: no index job ({error}); the first `lcnrun status` after "
                               "the tasks merges their journals instead", style="yellow"), soft_wrap=True)


def _point_states(exp, xdir, probe) -> list:
    """Each point's state as `lcnrun status` tells it, with ``probe``'s word on live work."""
    from ..report.source import ExperimentSource  # noqa: PLC0415
    from ..report.status import experiment_status  # noqa: PLC0415
    from ..store.experiment import ManifestRow  # noqa: PLC0415

    source = ExperimentSource(str(exp.path), xdir.runs_dir,
                              [ManifestRow(p.index, p.run_id, p.overrides) for p in exp.points], xdir)
    return experiment_status(source, scheduler=probe(source)).states


def _counts_line(name: str, total: int, sel, rerun_failed: bool) -> str:
    parts = []
    if sel.completed:
        parts.append(f"{len(sel.completed)} completed")
    if sel.live:
        parts.append(f"{len(sel.live)} queued or running")
    if sel.kept:
        states = sorted({s.state for s in sel.kept})
        hint = "" if rerun_failed or set(states) <= {"unreadable"} else ": --rerun-failed submits them"
        if "unreadable" in states:
            hint += ("; " if hint else ": ") + "--force replaces unreadable files"
        parts.append(f"{len(sel.kept)} {'/'.join(states)} kept{hint}")
    parts.append(f"{len(sel.submit)} to submit")
    return f"{name}: {_plural(total, 'point')}: " + ", ".join(parts)


def _print_dry_run(prepared) -> None:
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    from ..schedule.slurm.script import index_script_text, script_text  # noqa: PLC0415
    from ..spec import format_overrides  # noqa: PLC0415
    from .report import print_table  # noqa: PLC0415

    plan, sel = prepared.plan, prepared.selection
    task_of = {index: t for t, task in enumerate(plan.tasks) for index, _ in task}
    table = Table(title=f"{plan.experiment}: {_plural(len(sel.submit), 'point')} to submit",
                  title_justify="left")
    for col in ("task", "index", "run id", "state", "overrides"):
        table.add_column(col, justify="right" if col in ("task", "index") else "left",
                         no_wrap=col != "overrides")
    for s in sorted(sel.submit, key=lambda s: (task_of[s.index], s.index)):
        table.add_row(str(task_of[s.index]), str(s.index), s.run_id,
                      Text(s.state, style=STATE_STYLE.get(s.state, "")), Text(format_overrides(s.overrides)))
    print_table(table)
    for k in range(len(plan.arrays)):
        console.print(Text(f"--- {plan.script_path(k)} ---", style="bold"), soft_wrap=True)
        console.print(Text(script_text(plan, k)), soft_wrap=True, end="")
    console.print(Text(f"--- {plan.index_script_path} (after every array: merges the run index) ---",
                       style="bold"), soft_wrap=True)
    console.print(Text(index_script_text(plan)), soft_wrap=True, end="")
    n = len(plan.arrays)
    split = f" (MaxArraySize {prepared.max_array_size})" if n > 1 else ""
    console.print(Text(f"bundling: {prepared.bundling.describe()}"), soft_wrap=True)
    console.print(Text(f"would submit {_plural(len(plan.points), 'point')} in "
                       f"{_plural(len(plan.tasks), 'task')} as {_plural(n, 'array job')}{split}; "
                       "nothing submitted (--dry-run)"), soft_wrap=True)


def _print_submitted(prepared, record: dict, shown_root: Path) -> None:
    from rich.text import Text  # noqa: PLC0415

    plan = prepared.plan
    arrays = record["arrays"]
    throttle = plan.options.max_parallel
    at_once = f", at most {throttle} running at once" if throttle else ""
    ids = ", ".join(a["job_id"] for a in arrays)
    if len(arrays) == 1:
        a = arrays[0]
        tasks = f"task{'s' if a['count'] > 1 else ''} {a['array'].split('%')[0]}"
        console.print(Text(f"submitted {_plural(len(plan.points), 'point')} as array job {a['job_id']} "
                           f"({tasks}{at_once}; {prepared.bundling.describe()})"), soft_wrap=True)
    else:
        order = " one after the other" if throttle else ""
        console.print(Text(f"submitted {_plural(len(plan.points), 'point')} as {len(arrays)} array "
                           f"jobs {ids} (at most {plan.max_array_size} tasks each{at_once}{order}; "
                           f"{prepared.bundling.describe()})"),
                      soft_wrap=True)
    slurm = shown_root / "slurm"
    scripts = ", ".join(str(slurm / Path(a["script"]).name) for a in arrays)
    console.print(Text(f"script{'s' if len(arrays) > 1 else ''}: {scripts}"), soft_wrap=True)
    console.print(Text(f"logs:   {slurm}/<job id>_<task>.out"), soft_wrap=True)
    index_job = record.get("index_job") or {}
    if index_job.get("job_id"):
        console.print(Text(f"index:  job {index_job['job_id']} merges the run index once the arrays "
                           f"have ended ({slurm / Path(index_job['script']).name})"), soft_wrap=True)
    console.print(Text(f"follow: lcnrun status {shown_root}    (squeue -j {ids}; scancel {ids} "
                       "stops it)"), soft_wrap=True)
