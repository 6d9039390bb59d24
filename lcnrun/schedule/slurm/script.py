"""The batch script of one array of a submission, readable as written.

Task ``i`` of an array with offset ``o`` reads line ``o + i + 1`` of the tasks file (``INDICES
RUN_IDS``, :mod:`.plan`) and ``exec`` s ``lcnrun run SPEC --indices INDICES --expect-run-id
RUN_IDS`` with the submitting interpreter, so that Slurm's SIGTERM (``scancel``, a time limit, a
preemption) reaches lcnrun itself: the ensemble in progress ends as ``stopped`` run files, written
atomically, and no further ensemble of the task starts.

The index job of a submission (:func:`index_script_text`) starts once every array of it has ended
(``afterany``) and runs ``lcnrun status`` of the experiment once: as any first reader does, it
merges the tasks' journals into the run index's snapshot, so that the researcher's own first
``status`` or ``summary`` after the tasks reads that snapshot (100,000 runs: ~2 s of CPU) instead
of merging 100,000 journal lines (~4-6 s more; see ``docs/speed-cli.md``, seventh pass).
"""
from __future__ import annotations

import shlex

from .bundle import parse_time_limit
from .plan import SubmissionPlan, sbatch_option_name

#: seconds before the time limit at which the batch shell (lcnrun, after ``exec``) gets SIGTERM
STOP_WARNING_SECONDS = 60
#: the time limit of the index job (merging 100,000 journal lines takes ~10 s of one cpu)
INDEX_JOB_SECONDS = 1800
#: the index job's memory: this much, and this much per run of the experiment (MiB, KiB)
INDEX_JOB_BASE_MB, INDEX_JOB_KB_PER_RUN = 256, 8
#: the ``--sbatch-arg`` options the index job takes from the tasks: where and as whom a job runs
#: (an account or QOS a cluster may require), not what it needs (``--gres``, ``--exclusive``,
#: ``--nodes``, ``--ntasks``, ``--cpus-per-task`` are for the tasks' computation)
INDEX_JOB_SBATCH_ARGS = frozenset({
    "--account", "-A", "--qos", "-q", "--reservation", "--clusters", "-M", "--constraint", "-C",
    "--exclude", "-x", "--export", "--wckey", "--comment", "--mail-type", "--mail-user", "--nice",
    "--prefer", "--mem-per-cpu", "--mem-per-gpu"})
#: the thread variables of the BLAS / OpenMP libraries numpy may use
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


def sbatch_line(option: str, value: object | None = None, comment: str = "") -> str:
    text = f"#SBATCH {option}" if value is None else f"#SBATCH {option}={value}"
    return text + (f"  # {comment}" if comment else "")


def _header(plan: SubmissionPlan, k: int) -> list[str]:
    from ... import __version__  # noqa: PLC0415

    array = plan.arrays[k]
    first, last = array.offset + 1, array.offset + array.count
    part = f"array {k + 1} of {len(plan.arrays)}: " if len(plan.arrays) > 1 else ""
    n = plan.array_points(k)
    return [
        "#!/bin/bash",
        f"# Written by `lcnrun submit` (lcnrun {__version__}) at {plan.created_utc} for experiment "
        f"{plan.experiment}:",
        f"# {part}{n} point{'s' if n != 1 else ''} in {array.count} task"
        f"{'s' if array.count != 1 else ''}, lines {first}-{last} of {plan.tasks_file.name} "
        "(INDICES RUN_IDS).",
        "# Task i runs the sweep points on line OFFSET + i + 1 of that file with lcnrun run.",
    ]


def _sbatch_options(plan: SubmissionPlan, k: int) -> list[str]:
    opts = plan.options
    q = shlex.quote
    lines = [
        sbatch_line("--job-name", q(plan.job_name)),
        sbatch_line("--array", plan.arrays[k].array_option(opts.max_parallel)),
        sbatch_line("--output", q(str(plan.slurm_dir / "%A_%a.out"))),
        sbatch_line("--chdir", q(str(plan.workdir))),
        sbatch_line("--cpus-per-task", opts.cpus_per_task),
    ]
    for option, value in (("--partition", opts.partition), ("--time", opts.time), ("--mem", opts.mem)):
        if value:
            lines.append(sbatch_line(option, q(value)))
    if opts.requeue:
        lines.append(sbatch_line("--requeue", comment="preempted or on a failed node: back in the queue"))
        lines.append(sbatch_line("--open-mode", "append", comment="a requeued task adds to its log"))
    lines += [
        f"# SIGTERM {STOP_WARNING_SECONDS} s before the time limit, to the batch shell (B:), which "
        "is lcnrun after",
        "# `exec`: the run ends as a `stopped` run file before Slurm's SIGKILL (KillWait after its "
        "own SIGTERM).",
        sbatch_line("--signal", f"B:TERM@{STOP_WARNING_SECONDS}"),
    ]
    return lines + [sbatch_line(arg) for arg in opts.sbatch_args]


def _command(plan: SubmissionPlan) -> str:
    q = shlex.quote
    budget = plan.options.task_memory_budget()
    return (f"exec {q(plan.python)} -m lcnrun.cli run {q(str(plan.spec_path))} --indices \"$INDICES\" "
            f"--expect-run-id \"$RUN_IDS\" --results {q(str(plan.results))}"
            + (f" --memory-budget {budget}" if budget is not None else "")
            + (" --force" if plan.force else ""))


def script_text(plan: SubmissionPlan, k: int) -> str:
    """The sbatch script of array ``k`` (0-based) of ``plan`` (see the module docstring)."""
    q = shlex.quote
    lines = _header(plan, k) + _sbatch_options(plan, k) + [
        "",
        "set -u",
        f"OFFSET={plan.arrays[k].offset}",
        f"TASKS={q(str(plan.tasks_file))}",
        'LINE=$(sed -n "$((OFFSET + SLURM_ARRAY_TASK_ID + 1))p" "$TASKS")',
        'read -r INDICES RUN_IDS <<<"$LINE"',
        'if [ -z "${RUN_IDS:-}" ]; then',
        '    echo "lcnrun: no line $((OFFSET + SLURM_ARRAY_TASK_ID + 1)) in $TASKS" >&2',
        "    exit 2",
        "fi",
        "# BLAS/OpenMP threads: the cpus Slurm allotted to this task",
        *[f"export {name}=${{SLURM_CPUS_PER_TASK:-1}}" for name in BLAS_VARIABLES],
        "export NO_COLOR=1  # plain lines in the log",
        'echo "[$(date \'+%F %T\')] task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (job '
        '${SLURM_JOB_ID}) on $(hostname): points ${INDICES}, '
        '${SLURM_CPUS_PER_TASK:-1} cpu(s), restart ${SLURM_RESTART_COUNT:-0}"',
        "# exec: lcnrun replaces this shell, so that Slurm's signals reach it",
        _command(plan),
        "",
    ]
    return "\n".join(lines)


def index_job_mem_mb(plan: SubmissionPlan) -> int:
    """The index job's memory (MiB): what merging the journals of every run of the experiment
    (:attr:`SubmissionPlan.experiment_runs`) takes (measured: 645 MB peak for 100,000 runs of
    2 KB journal lines), or the tasks' ``--mem`` if that is more."""
    from ..estimate import parse_bytes  # noqa: PLC0415

    runs = max(plan.experiment_runs, len(plan.points))
    need = INDEX_JOB_BASE_MB + -(-runs * INDEX_JOB_KB_PER_RUN // 1024)
    tasks = parse_bytes(plan.options.mem, default_unit="m") // 2 ** 20 if plan.options.mem else 0
    return max(need, tasks)


def index_script_text(plan: SubmissionPlan) -> str:
    """The sbatch script of the index job of ``plan`` (see the module docstring): one cpu, the
    tasks' partition and those of their ``--sbatch-arg`` s in :data:`INDEX_JOB_SBATCH_ARGS`,
    their time limit if it is under :data:`INDEX_JOB_SECONDS` (else that: a short job is
    scheduled sooner), :func:`index_job_mem_mb` (unless a ``--mem-per-cpu`` / ``--mem-per-gpu``
    of theirs sets it), its log ``<tag>-index-<job id>.out``."""
    q = shlex.quote
    opts = plan.options
    lines = [
        "#!/bin/bash",
        f"# Written by `lcnrun submit` at {plan.created_utc} for experiment {plan.experiment}: once",
        "# every array of this submission has ended, one `lcnrun status` merges the tasks' journals",
        "# into the run index (results/<name>/.index), as the first reader would; nothing else.",
        sbatch_line("--job-name", q(f"{plan.job_name}-index")),
        sbatch_line("--output", q(str(plan.slurm_dir / f"{plan.tag}-index-%j.out"))),
        sbatch_line("--chdir", q(str(plan.workdir))),
        sbatch_line("--cpus-per-task", 1),
    ]
    limit = parse_time_limit(opts.time)  # checked when the options were
    # the tasks' limit, or 30 minutes if that is shorter; none given: the partition's default (a
    # limit of ours could be above the partition's, and the job would never start)
    time = opts.time if opts.time is None or (limit is not None and limit <= INDEX_JOB_SECONDS) \
        else f"{INDEX_JOB_SECONDS // 60}:00"
    scheduling = [a for a in opts.sbatch_args if sbatch_option_name(a) in INDEX_JOB_SBATCH_ARGS]
    memory = None if any(sbatch_option_name(a).startswith("--mem-per") for a in opts.sbatch_args) \
        else f"{index_job_mem_mb(plan)}M"  # Slurm refuses --mem beside --mem-per-cpu/-gpu
    for option, value in (("--partition", opts.partition), ("--time", time), ("--mem", memory)):
        if value:
            lines.append(sbatch_line(option, q(value)))
    lines += [sbatch_line(arg) for arg in scheduling]
    lines += [
        "",
        "set -u",
        *[f"export {name}=1" for name in BLAS_VARIABLES],
        "export NO_COLOR=1  # plain lines in the log",
        f"exec {q(plan.python)} -m lcnrun.cli status {q(str(plan.results / plan.experiment))}",
        "",
    ]
    return "\n".join(lines)
