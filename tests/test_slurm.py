"""`lcnrun submit` and Slurm's word in `lcnrun status`.

Two kinds of tests:

- planning, script text and state mapping, with no cluster: arrays split at MaxArraySize, and the
  batch script itself run by bash (its last line's interpreter replaced by `echo`) to check that
  every task of every array picks its own point;
- the real thing (marker `slurm`), against the single-node Slurm that `scripts/slurm_up.sh`
  starts (`make test` runs it first). Without a cluster these tests are skipped with the reason,
  except in CI (`CI=true`), where a missing cluster is a failure.

Cluster tests poll `squeue -h -j IDS` (much faster than `sbatch --wait`) with a deadline.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from barriers import Barrier, wait_gone
from lcnrun.cli import app
from lcnrun.interrupt import BARRIER_VARIABLE
from lcnrun.schedule.slurm import commands
from lcnrun.schedule.slurm.bundle import (MAX_POINTS_PER_TASK, TASK_START_SECONDS, TIME_SHARE,
                                          bundle_points, choose_points_per_task, parse_time_limit)
from lcnrun.schedule.slurm.commands import parse_config
from lcnrun.schedule.slurm.plan import (ArrayPlan, SubmitOptions, format_indices, plan_arrays,
                                        plan_submission)
from lcnrun.schedule.slurm.probe import TaskState, parse_sacct, parse_squeue, slurm_states, task_states
from lcnrun.schedule.slurm.script import INDEX_JOB_SECONDS, index_job_mem_mb, index_script_text, script_text
from lcnrun.spec import load_experiment
from lcnrun.store import index as run_index
from lcnrun.store import read_run, read_run_status

runner = CliRunner()
DEADLINE = 150.0  # seconds a cluster test waits for its jobs (they take ~10 s on 2 idle cores)

HEAD = """\
name: {name}
model: {{kind: lcn, filters: [3, 2], strides: [2, 1]}}
data: {{kind: gaussian, n_samples: 8, input_size: 12, noise: 0.01, seed: 0}}
init: {{kind: gaussian, scale: 0.3, seed: 1}}
loss: {{kind: {loss}}}
dynamics: {{kind: gradient_descent, lr: 0.001, steps: {steps}}}
record: {{points: 12}}
"""
GRID8 = """\
sweep:
  grid: {init.seed: [0, 1, 2, 3], data.seed: [0, 1]}
"""


def write_spec(folder: Path, name: str, sweep: str = GRID8, steps: int = 100, loss: str = "square") -> Path:
    p = folder / f"{name}.yaml"
    p.write_text(HEAD.format(name=name, steps=steps, loss=loss) + textwrap.dedent(sweep))
    return p


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# -- planning (no cluster) -------------------------------------------------------------------------
@pytest.mark.parametrize("n, limit", [(0, 4), (1, 4), (4, 4), (5, 4), (10, 4), (10, 1), (2500, 1001),
                                      (1001, 1001), (1002, 1001)])
def test_arrays_cover_every_point_once_within_max_array_size(n, limit):
    arrays = plan_arrays(n, limit)
    covered = [a.offset + i for a in arrays for i in range(a.count)]
    assert covered == list(range(n))
    assert all(1 <= a.count <= limit for a in arrays)
    assert len(arrays) == -(-n // limit)  # as few arrays as the limit allows


def test_array_option_and_throttle():
    assert ArrayPlan(0, 4).array_option(None) == "0-3"
    assert ArrayPlan(8, 2).array_option(3) == "0-1%3"
    assert ArrayPlan(4, 1).array_option(None) == "0"


def _plan(tmp_path, points, limit=4, per_task=1, **opts):
    options = SubmitOptions(**opts)
    tasks = [points[lo: lo + per_task] for lo in range(0, len(points), per_task)]
    return plan_submission("demo", tmp_path / "demo.yaml", tmp_path / "results", tasks, options,
                           max_array_size=limit, tag="submit-test", python="/bin/echo",
                           workdir=tmp_path)


def run_script(plan, k: int, task: int, cpus: str = "2") -> str:
    """Run array ``k``'s script as Slurm would run task ``task`` (the interpreter is ``echo``, so
    the last line prints the command it would exec)."""
    plan.slurm_dir.mkdir(parents=True, exist_ok=True)
    plan.tasks_file.write_text(plan.tasks_text())
    script = plan.slurm_dir / f"array{k}.sh"
    script.write_text(script_text(plan, k))
    env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_JOB_ID="77", SLURM_JOB_ID="78",
               SLURM_CPUS_PER_TASK=cpus)
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_split_scripts_send_every_task_to_its_own_point(tmp_path):
    # pending points need not be contiguous: 10 of them, MaxArraySize 4 -> arrays of 4, 4, 2
    points = [(i, f"run{i:03d}") for i in (0, 2, 3, 5, 8, 9, 11, 12, 13, 20)]
    plan = _plan(tmp_path, points, limit=4, max_parallel=2)
    assert [(a.offset, a.count) for a in plan.arrays] == [(0, 4), (4, 4), (8, 2)]
    assert [plan.script_path(k).name for k in range(3)] == [f"submit-test-{k}.sbatch" for k in (1, 2, 3)]
    seen = []
    for k, array in enumerate(plan.arrays):
        text = script_text(plan, k)
        assert f"#SBATCH --array=0-{array.count - 1}%2\n" in text
        assert f"\nOFFSET={array.offset}\n" in text
        for task in range(array.count):
            out = run_script(plan, k, task)
            command = out.strip().splitlines()[-1].split()
            index = int(command[command.index("--indices") + 1])
            assert command[command.index("--expect-run-id") + 1] == f"run{index:03d}"
            assert command[:3] == ["-m", "lcnrun.cli", "run"]
            assert command[command.index("--results") + 1] == str(tmp_path / "results")
            seen.append(index)
    assert seen == [i for i, _ in points]


def test_script_text_carries_the_options(tmp_path):
    plan = _plan(tmp_path, [(3, "abc"), (4, "def")], limit=1001, partition="short", time="01:00:00",
                 mem="2G", cpus_per_task=2, requeue=True,
                 sbatch_args=("--qos=short", "--account=lab"))
    text = script_text(plan, 0)
    assert text.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --job-name=demo", "#SBATCH --array=0-1",
                 f"#SBATCH --output={plan.slurm_dir}/%A_%a.out", f"#SBATCH --chdir={tmp_path}",
                 "#SBATCH --partition=short", "#SBATCH --time=01:00:00", "#SBATCH --mem=2G",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 "#SBATCH --signal=B:TERM@60", "#SBATCH --qos=short", "#SBATCH --account=lab"):
        assert re.search("^" + re.escape(line) + r"(\s|$)", text, re.M), line
    # every #SBATCH line comes before the first command (sbatch stops reading them there)
    lines = text.splitlines()
    first_command = next(i for i, l in enumerate(lines) if l.strip() and not l.startswith("#"))
    assert all(i < first_command for i, l in enumerate(lines) if l.startswith("#SBATCH"))
    assert "%" not in re.search(r"--array=(\S+)", text)[1]  # no throttle asked for
    # BLAS pinned to the allotted cpus; the run exec'd (so Slurm's SIGTERM reaches it)
    out = run_script(plan, 0, 1, cpus="3")
    assert "points 4, 3 cpu(s)" in out
    assert re.search(r"^exec /bin/echo -m lcnrun\.cli run \S+demo\.yaml --indices \"\$INDICES\"", text, re.M)
    # half of --mem is the memory budget of the task's ensembles
    assert out.strip().split()[-2:] == ["--memory-budget", str(2 ** 30)]
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert f"export {name}=${{SLURM_CPUS_PER_TASK:-1}}" in text


@pytest.mark.parametrize("time, want", [("01:00:00", "30:00"), (None, None), ("10:00", "10:00"),
                                        ("0-00:20", "0-00:20"), ("UNLIMITED", "30:00")])
def test_index_script_merges_the_index_with_the_tasks_options(tmp_path, time, want):
    """The index job's script: the tasks' partition and the sbatch options that say where and as
    whom a job runs (the cluster may require the account), one cpu, no array, no requeue, no
    GPU, their time limit only where it is shorter than INDEX_JOB_SECONDS (none: the partition's),
    memory for the experiment's runs; it runs `lcnrun status` of the experiment."""
    plan = _plan(tmp_path, [(3, "abc"), (4, "def")], limit=1001, partition="short", time=time,
                 mem="2G", cpus_per_task=2, requeue=True, job_name="job x",
                 sbatch_args=("--qos=short", "--gres=gpu:1", "--account=lab", "--exclusive",
                              "-N 2", "--ntasks=4", "-A lab2"))
    assert INDEX_JOB_SECONDS == 1800
    text = index_script_text(plan)
    assert text.startswith("#!/bin/bash\n") and plan.index_script_path == plan.slurm_dir / "submit-test-index.sbatch"
    sbatch = [l for l in text.splitlines() if l.startswith("#SBATCH")]
    # where and as whom it runs, from the tasks' options; not what their computation needs
    assert sbatch == ["#SBATCH --job-name='job x-index'",
                      f"#SBATCH --output={plan.slurm_dir}/submit-test-index-%j.out",
                      f"#SBATCH --chdir={tmp_path}", "#SBATCH --cpus-per-task=1",
                      "#SBATCH --partition=short", *([f"#SBATCH --time={want}"] if want else []),
                      "#SBATCH --mem=2048M", "#SBATCH --qos=short", "#SBATCH --account=lab",
                      "#SBATCH -A lab2"]
    # Slurm refuses --mem beside --mem-per-cpu: the tasks' --mem-per-cpu then sets it
    per_cpu = dataclasses.replace(plan, options=SubmitOptions(sbatch_args=("--mem-per-cpu=4G",)))
    assert [l for l in index_script_text(per_cpu).splitlines() if "--mem" in l] == ["#SBATCH --mem-per-cpu=4G"]
    # memory: the tasks' --mem, or 256 MiB + 8 KiB a run of the experiment if that is more
    assert index_job_mem_mb(dataclasses.replace(plan, experiment_runs=1_000_000)) == 256 + 7813
    assert index_job_mem_mb(dataclasses.replace(plan, options=SubmitOptions())) == 256 + 1
    lines = text.splitlines()
    first_command = next(i for i, l in enumerate(lines) if l.strip() and not l.startswith("#"))
    assert all(i < first_command for i, l in enumerate(lines) if l.startswith("#SBATCH"))
    script = tmp_path / "index.sh"
    script.write_text(text)
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, SLURM_CPUS_PER_TASK="2"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["-m", "lcnrun.cli", "status", str(tmp_path / "results" / "demo")]


def test_index_job_follows_every_array_and_a_refused_one_is_only_recorded(tmp_path, monkeypatch):
    """The index job depends on every array of the submission that sbatch accepted (afterany:
    also on failed or cancelled ones); if sbatch refuses it, the submission stands and says why."""
    from lcnrun.schedule.slurm import submit as slurm_submit  # noqa: PLC0415
    from lcnrun.store.experiment import ExperimentDir  # noqa: PLC0415

    calls = []

    def fake_sbatch(script, *, dependency=None, cwd=None):
        calls.append((Path(script).name, dependency))
        if refuse and Path(script).name.endswith("-index.sbatch"):
            raise commands.SlurmError("sbatch refused the job: QOSMaxSubmitJobPerUserLimit")
        return str(40 + len(calls))

    monkeypatch.setattr(slurm_submit, "sbatch", fake_sbatch)
    points = [(i, f"run{i:03d}") for i in range(10)]
    for refuse in (False, True):
        calls.clear()
        plan = _plan(tmp_path / str(refuse), points, limit=4, max_parallel=2)
        record = slurm_submit.submit(plan, ExperimentDir(tmp_path / str(refuse) / "results" / "demo"))
        assert record["job_ids"] == ["41", "42", "43"]
        assert calls[-1] == ("submit-test-index.sbatch", "afterany:41:42:43")
        want = {"job_id": None if refuse else "44", "script": str(plan.index_script_path),
                "dependency": "afterany:41:42:43"}
        if refuse:
            want["error"] = "sbatch refused the job: QOSMaxSubmitJobPerUserLimit"
        assert record["index_job"] == want
        assert plan.index_script_path.read_text() == index_script_text(plan)
        assert json.loads((plan.slurm_dir / "submissions.jsonl").read_text())["index_job"] == want
    # the third array refused: the index job follows the two accepted ones
    calls.clear()
    refuse = False
    real = fake_sbatch

    def third_refused(script, *, dependency=None, cwd=None):
        if Path(script).name == "submit-test-3.sbatch":
            raise commands.SlurmError("sbatch refused the job: QOSMaxSubmitJobPerUserLimit")
        return real(script, dependency=dependency, cwd=cwd)

    monkeypatch.setattr(slurm_submit, "sbatch", third_refused)
    plan = _plan(tmp_path / "partial", points, limit=4, max_parallel=2)
    with pytest.raises(slurm_submit.SubmitError):
        slurm_submit.submit(plan, ExperimentDir(tmp_path / "partial" / "results" / "demo"))
    (record,) = [json.loads(l) for l in (plan.slurm_dir / "submissions.jsonl").read_text().splitlines()]
    assert record["job_ids"] == ["41", "42"] and record["index_job"]["dependency"] == "afterany:41:42"


@pytest.mark.parametrize("arg", ["--array=0-3", "-a0-3", "--output=x", "--job-name=x", "--wait", "qos"])
def test_reserved_or_malformed_sbatch_args_are_refused(tmp_path, arg):
    spec = write_spec(tmp_path, "demo")
    r = invoke("submit", spec, "--results", tmp_path / "results", "--dry-run", f"--sbatch-arg={arg}")
    assert r.exit_code == 2, r.output
    assert "--sbatch-arg" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args, named", [(["--points-per-task", "0"], "--points-per-task"),
                                         (["--points-per-task", "5000"], "--points-per-task"),
                                         (["--time", "soon"], "--time"), (["--mem", "lots"], "--mem"),
                                         (["--memory-budget", "2X"], "--memory-budget")])
def test_bad_bundling_options_are_one_message(tmp_path, args, named):
    spec = write_spec(tmp_path, "demo")
    r = invoke("submit", spec, "--results", tmp_path / "results", "--dry-run", *args)
    assert r.exit_code == 2, r.output
    assert named in r.output and "Traceback" not in r.output
    assert not (tmp_path / "results").exists()


def test_parsers():
    config = parse_config("Configuration data as of ...\nMaxArraySize            = 17\nKillWait = 5 sec\n")
    assert commands.max_array_size(config) == 17 and config["KillWait"] == "5 sec"
    assert commands.max_array_size({}) == commands.DEFAULT_MAX_ARRAY_SIZE
    assert parse_squeue("5|2|PENDING|N/A|demo\n5|0|RUNNING|2026-01-01T00:00:00|demo|x\n") == [
        TaskState("5", 2, "PENDING", False, "demo", "N/A"),
        TaskState("5", 0, "RUNNING", True, "demo|x", "2026-01-01T00:00:00")]
    assert parse_sacct("7_1|CANCELLED by 0|2026-01-01T00:00:00|demo\n7_[2-5]|PENDING|Unknown|demo\n"
                       "7_3.batch|CANCELLED|2026-01-01T00:00:00|batch\n") == [
        TaskState("7", 1, "CANCELLED", True, "demo", "2026-01-01T00:00:00")]
    assert parse_time_limit("90") == 5400 and parse_time_limit("01:30:00") == 5400
    assert parse_time_limit("2-00:00:00") == parse_time_limit("2-0") == 2 * 86400
    assert parse_time_limit("10:30") == 630 and parse_time_limit("UNLIMITED") is None


def test_task_states_follow_the_recorded_index_map():
    subs = [{"job_name": "demo", "points": [[0, "r0"], [1, "r1"], [2, "r2"], [3, "r3"], [4, "r4"]],
             "arrays": [{"job_id": "10", "offset": 0, "count": 3}, {"job_id": "11", "offset": 3, "count": 2}]},
            {"job_name": "demo", "points": [[2, "r2"]], "arrays": [{"job_id": "20", "offset": 0, "count": 1}]}]
    tasks = [TaskState("10", 0, "RUNNING", True, "demo"), TaskState("10", 1, "OUT_OF_MEMORY", True, "demo"),
             TaskState("10", 2, "FAILED", True, "demo"),      # resubmitted as 20_0, which is queued
             TaskState("20", 0, "PENDING", False, "demo"),
             TaskState("11", 0, "CANCELLED", False, "demo"),  # cancelled before it started: pending
             TaskState("11", 1, "TIMEOUT", True, "other")]    # a job that reuses the id: ignored
    assert task_states(subs, tasks) == {"r0": "running", "r1": "failed", "r2": "queued"}
    # a run file has the last word over a finished task
    assert task_states(subs, tasks, written={"r1": 0.0}) == {"r0": "running", "r2": "queued"}
    tasks[-1] = TaskState("11", 1, "TIMEOUT", True, "demo")
    assert task_states(subs, tasks)["r4"] == "stopped"


def test_submit_without_slurm_is_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    spec = write_spec(tmp_path, "demo")
    r = invoke("submit", spec, "--results", tmp_path / "results")
    assert r.exit_code == 2, r.output
    assert "sbatch" in r.output and "not found" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "results").exists()
    # the dry run works anywhere: it prints the script with Slurm's default MaxArraySize
    r = invoke("submit", spec, "--results", tmp_path / "results", "--dry-run", "--points-per-task", "1")
    assert r.exit_code == 0, r.output
    assert "#SBATCH --array=0-7" in r.output and "MaxArraySize assumed 1001" in r.output
    # without sinfo nothing says how many tasks can run at once: the 8 cheap points are one task
    r = invoke("submit", spec, "--results", tmp_path / "results", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "#SBATCH --array=0\n" in r.output and "8 points per task, 1 task" in r.output
    assert not (tmp_path / "results").exists()


def test_bundled_task_states():
    # tasks of 3, 1 and 2 points; the running task started at `start`
    start = "2026-01-01T00:00:10"
    t0 = TaskState("30", 0, "RUNNING", True, "demo", start).start_epoch()
    subs = [{"job_name": "demo", "points": [[0, "a"], [1, "b"], [2, "c"], [5, "d"], [6, "e"], [7, "f"]],
             "task_sizes": [3, 1, 2], "arrays": [{"job_id": "30", "offset": 0, "count": 3}]}]
    tasks = [TaskState("30", 0, "RUNNING", True, "demo", start), TaskState("30", 1, "PENDING", False, "demo"),
             TaskState("30", 2, "TIMEOUT", True, "demo", start)]
    # in the running task: `a` was written by it (its file speaks), `b` has an older file (a
    # stopped run it is to resume) and `c` none: both wait in the task. The task killed at its
    # time limit left `f` without a file: stopped; `e` has a file: it speaks
    written = {"a": t0 + 5, "b": t0 - 100, "e": t0 + 1}
    assert task_states(subs, tasks, written) == {"b": "queued", "c": "queued", "d": "queued", "f": "stopped"}


def test_status_asks_slurm():
    from lcnrun.cli.report import STATUS_PROBES

    assert slurm_states in STATUS_PROBES
    # the probe is the CLI's choice: importing the Slurm modules registers nothing anywhere
    import lcnrun.report.status as status

    assert not [name for name, value in vars(status).items() if isinstance(value, list) and slurm_states in value]


@pytest.mark.parametrize("n, seconds, time, slots, limit", [
    (8, 1e-5, None, 2, 1001), (8, 1e-5, None, 3, 1001), (20_000, 2e-3, None, 2, 1001),
    (20_000, 2e-3, "00:10:00", None, 1001), (2_000_000, 0.5, "01:00:00", 64, 1001),
    (50_000, 1.0, "00:30:00", 16, 1001), (5, 100.0, "00:01:00", 4, 1001), (3000, 1e-4, None, 1, 2)])
def test_points_per_task_fit_the_time_share_and_the_arrays(n, seconds, time, slots, limit):
    b = choose_points_per_task(n, seconds, time_limit=parse_time_limit(time), max_array_size=limit,
                               slots=slots)
    K, tasks = b.points_per_task, b.tasks
    assert 1 <= K <= MAX_POINTS_PER_TASK and (tasks - 1) * K < n <= tasks * K  # every point once
    share = TIME_SHARE * parse_time_limit(time) if time else b.task_seconds
    if K > 1:
        assert TASK_START_SECONDS + K * seconds <= share  # a task fits its share of --time
    if slots and n >= slots:
        assert tasks >= slots  # every cpu gets work
        assert tasks <= slots or tasks % slots == 0 or K == 1  # the last round is full
    if -(-n // limit) * seconds + TASK_START_SECONDS <= share and -(-n // limit) <= MAX_POINTS_PER_TASK:
        assert tasks <= limit  # one array when the time share allows it


def test_bundles_keep_ensembles_together(tmp_path):
    # two architectures (two ensemble keys), interleaved: tasks hold one key each where they can
    spec = write_spec(tmp_path, "mixed", """\
sweep:
  grid: {init.seed: [0, 1, 2], model.filters: [[3, 2], [5, 2]]}
""")
    exp = load_experiment(spec)
    points = [(p.index, p.run_id) for p in exp.points]
    tasks = bundle_points(exp, points, 3)
    assert sorted(p for t in tasks for p in t) == sorted(points)
    for task in tasks:
        assert len({str(exp.points[i].run_spec.model.options) for i, _ in task}) == 1
        assert task == sorted(task)
    assert format_indices([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10" and format_indices([4]) == "4"


# -- the real cluster ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A working Slurm: ``sinfo`` answers and the node takes jobs. Otherwise skip with the reason,
    or fail under CI (CI=true), where scripts/slurm_up.sh must have started it."""
    problem = None
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        problem = "Slurm is not installed (no sinfo/sbatch on PATH)"
    else:
        try:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                                 timeout=20)
            states = out.stdout.split()
            if out.returncode != 0:
                problem = f"sinfo failed: {out.stderr.strip()}"
            elif not any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states):
                problem = f"no usable Slurm node (sinfo: {' '.join(states) or 'nothing'})"
        except subprocess.TimeoutExpired:
            problem = "sinfo did not answer within 20 s"
    if problem:
        message = f"{problem}; start the test cluster with `bash scripts/slurm_up.sh` (as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no Slurm cluster: {message}", pytrace=False)
        pytest.skip(message)


SUBMITTED: list[str] = []  # job ids of the running test, cancelled when it ends


@pytest.fixture(autouse=True)
def cancel_jobs_left_behind():
    """A cluster test that fails half-way leaves no job behind."""
    SUBMITTED.clear()
    yield
    if SUBMITTED and shutil.which("scancel"):
        subprocess.run(["scancel", *SUBMITTED], capture_output=True, timeout=30)


def ask_slurm(argv: list[str], answered=lambda out: out.returncode == 0) -> subprocess.CompletedProcess:
    """Run a Slurm query until it ``answered``. squeue and scontrol fail now and then while
    slurmctld is busy (e.g. saving state after `scontrol update`): an empty output must not read
    as "no jobs left", so ask again (a bound on a hang, not a timing)."""
    for _ in range(50):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if answered(out):
            return out
        time.sleep(0.2)
    raise AssertionError(f"{argv[0]} keeps failing: {out.stderr.strip()}")


def squeue_ids(job_ids) -> str:
    return ask_slurm(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"]).stdout.strip()


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE"}


def job_records(job_ids) -> list[dict[str, str]]:
    """``scontrol -o show job`` of each id (an array id: every task), one dict of fields per job;
    a job slurmctld no longer knows (older than MinJobAge) has none."""
    records = []
    for job in job_ids:
        out = ask_slurm(["scontrol", "-o", "show", "job", str(job)],
                        lambda out: out.returncode == 0 or "Invalid job id" in out.stderr)
        for line in out.stdout.splitlines():
            records.append(dict(f.split("=", 1) for f in line.split() if "=" in f))
    return records


def describe_jobs(job_ids) -> str:
    """Each job's id, state, exit code and restarts, one per line (for a failure message)."""
    return "\n".join(f"{r.get('JobId')} ({r.get('ArrayJobId', '')}_{r.get('ArrayTaskId', '')}) "
                     f"{r.get('JobState')} exit {r.get('ExitCode')} restarts {r.get('Restarts')} "
                     f"reason {r.get('Reason')}" for r in job_records(job_ids))


def unfinished(job_ids) -> bool:
    """Whether scontrol shows a task of ``job_ids`` in a state that is not final."""
    return any(r.get("JobState") not in TERMINAL for r in job_records(job_ids))


def wait_for_jobs(job_ids, deadline: float = DEADLINE) -> None:
    """Wait until every task of ``job_ids`` has ended: squeue lists none of them and scontrol
    shows each in a final state (an empty squeue alone is not taken as proof)."""
    end = time.monotonic() + deadline
    while squeue_ids(job_ids) or unfinished(job_ids):
        if time.monotonic() > end:
            state = describe_jobs(job_ids)
            subprocess.run(["scancel", *job_ids], timeout=30)
            pytest.fail(f"jobs {job_ids} not done after {deadline:.0f} s:\n{state}")
        time.sleep(0.3)


def submit(*args) -> tuple[list[str], str]:
    r = invoke("submit", *args, "--mem", "300M")
    assert r.exit_code == 0, r.output
    ids = re.findall(r"array jobs? ([\d, ]+)", r.output)
    job_ids = [j.strip() for j in ids[0].split(",") if j.strip()] if ids else []
    SUBMITTED.extend(job_ids)
    SUBMITTED.extend(re.findall(r"^index:  job (\d+) ", r.output, re.M))
    return job_ids, r.output


def status_json(folder: Path) -> dict:
    r = invoke("status", folder, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def submissions(folder: Path) -> list[dict]:
    return [json.loads(l) for l in (folder / "slurm" / "submissions.jsonl").read_text().splitlines()]


def hidden_files(folder: Path) -> list[str]:
    """Temporaries and claims under runs/ (not the checkpoints of stopped runs)."""
    return sorted(n for n in os.listdir(folder / "runs")
                  if n.startswith(".") and not n.endswith(".checkpoint.npz"))


@pytest.mark.slurm
def test_dry_run_submits_nothing(cluster, tmp_path):
    spec = write_spec(tmp_path, "dryrun")
    r = invoke("submit", spec, "--results", tmp_path / "results", "--dry-run", "--max-parallel", "3")
    assert r.exit_code == 0, r.output
    # K chosen for 3 tasks at once: 8 cheap points -> tasks of 3, 3, 2
    assert "#SBATCH --array=0-2%3" in r.output and "nothing submitted" in r.output
    assert re.search(r"bundling: 3 points per task, 3 tasks: a point takes ~0.05 s \(model: ", r.output), r.output
    assert all(p.run_id in r.output for p in load_experiment(spec).points)
    # and the index job's script, which would run lcnrun status once after the arrays
    assert re.search(r"^--- \S+-index\.sbatch \(after every array: merges the run index\) ---$", r.output, re.M)
    assert re.search(r"^exec \S+ -m lcnrun\.cli status \S+/results/dryrun$", r.output, re.M), r.output
    names = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True,
                           text=True, timeout=30).stdout.split()
    assert "dryrun" not in names
    assert not (tmp_path / "results").exists()


@pytest.mark.slurm
def test_sweep_on_the_cluster_matches_the_local_sweep(cluster, tmp_path, monkeypatch):
    spec = write_spec(tmp_path, "grid")
    results = tmp_path / "results"
    # MaxArraySize 3 here (the cluster says 1001): 8 points -> arrays of 3, 3, 2 with offsets,
    # run one after the other under the %2 throttle
    monkeypatch.setattr("lcnrun.schedule.slurm.pending.max_array_size", lambda config: 3)
    job_ids, out = submit(spec, "--results", results, "--max-parallel", "2", "--points-per-task", "1")
    assert len(job_ids) == 3, out
    folder = results / "grid"
    # meanwhile `lcnrun status` tells queued and running tasks from squeue (the third array
    # waits for the second to end, so something is queued now)
    st = status_json(folder)
    assert sum(st["counts"].values()) == 8 and set(st["counts"]) <= {"queued", "running", "completed"}, st
    assert st["counts"].get("queued", 0) >= 2, st
    wait_for_jobs(job_ids)
    st = status_json(folder)
    assert st["counts"] == {"completed": 8}, st
    (record,) = submissions(folder)
    assert record["job_ids"] == job_ids
    assert [(a["offset"], a["count"], a["array"]) for a in record["arrays"]] == [
        (0, 3, "0-2%2"), (3, 3, "0-2%2"), (6, 2, "0-1%2")]
    assert record["arrays"][1]["dependency"] == f"afterany:{job_ids[0]}"
    for array in record["arrays"]:
        for task in range(array["count"]):
            index, run_id = record["points"][array["offset"] + task]
            run = read_run(folder / "runs" / f"{run_id}.h5")
            prov = run.provenance
            assert prov["slurm"]["array_job_id"] == array["job_id"]
            assert prov["slurm"]["array_task_id"] == str(task)
            assert prov["slurm"]["cpus_per_task"] == "1"
            assert set(prov["blas_threads"].values()) <= {1, "1"}, prov["blas_threads"]  # pinned
            log = (folder / "slurm" / f"{array['job_id']}_{task}.out").read_text()
            assert f"points {index}, " in log and f"#{index} wrote" in log and "completed" in log
            assert "\x1b" not in log and "\r" not in log  # plain lines, no terminal codes
    assert not hidden_files(folder)
    # submitting again submits nothing: every point is completed
    r = invoke("submit", spec, "--results", results)
    assert r.exit_code == 0 and "nothing to submit" in r.output, r.output
    assert len(submissions(folder)) == 1
    # the same sweep run locally gives the same results, bit for bit
    r = invoke("sweep", spec, "--results", tmp_path / "local", "-j", "2", "-q")
    assert r.exit_code == 0, r.output
    r = invoke("diff", folder, tmp_path / "local" / "grid")
    assert r.exit_code == 0, r.output
    assert "8 pairs of runs bitwise identical" in r.output


@pytest.mark.slurm
def test_bundled_sweep_on_the_cluster_matches_the_local_sweep(cluster, tmp_path):
    spec = write_spec(tmp_path, "bundled", """\
sweep:
  grid: {init.seed: [0, 1, 2, 3, 4], data.seed: [0, 1], dynamics.lr: [0.001, 0.002]}
""")
    results = tmp_path / "results"
    folder = results / "bundled"
    job_ids, out = submit(spec, "--results", results, "--points-per-task", "6")
    assert "20 points as array job" in out and "6 points per task (--points-per-task), 4 tasks" in out, out
    (record,) = submissions(folder)
    index_job = record["index_job"]
    assert index_job["dependency"] == f"afterany:{job_ids[0]}" and f"index:  job {index_job['job_id']} " in out
    wait_for_jobs([*job_ids, index_job["job_id"]])
    # the index job merged the tasks' journals (and removed them: their writers are gone) before
    # any reader here: the snapshot answers for every run file as it is
    assert not list((folder / ".index").glob("journal.*")), os.listdir(folder / ".index")
    snap = run_index._load_snapshot(folder / ".index")
    files = run_index.run_file_stats(folder / "runs")
    assert snap.ids == sorted(r for _, r in record["points"]) == list(files)
    assert [ident for ident, _ in snap.identity_and_status().values()] == [
        run_index.identity(st) for _, st in files.values()]
    assert set(snap.column("a:status")) == {"completed"}
    log = (folder / "slurm" / f"{record['tag']}-index-{index_job['job_id']}.out").read_text()
    assert re.search(r"completed\W+20\b", log), log
    assert status_json(folder)["counts"] == {"completed": 20}
    assert record["task_sizes"] == [6, 6, 6, 2] and record["arrays"][0]["count"] == 4
    # each task ran its points in one process, as ensembles, each point with its own run file
    for task, size in enumerate(record["task_sizes"]):
        lo = sum(record["task_sizes"][:task])
        log = (folder / "slurm" / f"{job_ids[0]}_{task}.out").read_text()
        for index, run_id in record["points"][lo: lo + size]:
            assert f"#{index} wrote" in log
            prov = read_run(folder / "runs" / f"{run_id}.h5").provenance
            assert prov["slurm"]["array_task_id"] == str(task) and prov["ensemble_size"] > 1
    assert not hidden_files(folder)
    r = invoke("sweep", spec, "--results", tmp_path / "local", "-j", "2", "-q")
    assert r.exit_code == 0, r.output
    r = invoke("diff", folder, tmp_path / "local" / "bundled")
    assert r.exit_code == 0, r.output
    assert "20 pairs of runs bitwise identical" in r.output
    # the next submit asks nothing more of Slurm, and times a point from the completed ones
    r = invoke("submit", spec, "--results", results, "--dry-run", "--force")
    assert r.exit_code == 0 and "(measured: 90th percentile of 16 completed points)" in r.output, r.output


TWO = """\
sweep:
  points:
    - {init.seed: 2}
    - {}
"""


@pytest.mark.slurm
def test_a_refused_index_job_is_a_note_and_the_tasks_still_run(cluster, tmp_path, monkeypatch):
    from lcnrun.schedule.slurm import submit as slurm_submit  # noqa: PLC0415

    real = slurm_submit.sbatch

    def refuse_index(script, **kw):
        if Path(script).name.endswith("-index.sbatch"):
            raise commands.SlurmError("sbatch refused the job: QOSMaxSubmitJobPerUserLimit")
        return real(script, **kw)

    monkeypatch.setattr(slurm_submit, "sbatch", refuse_index)
    spec = write_spec(tmp_path, "noindex", TWO)
    folder = tmp_path / "results" / "noindex"
    r = invoke("submit", spec, "--results", tmp_path / "results", "-q", "--mem", "300M")
    assert r.exit_code == 0, r.output
    job_ids = [line for line in r.output.splitlines() if line.strip().isdigit()]
    SUBMITTED.extend(job_ids)
    assert len(job_ids) == 1, r.output
    assert ("note: no index job (sbatch refused the job: QOSMaxSubmitJobPerUserLimit); the first "
            "`lcnrun status` after the tasks merges their journals instead") in " ".join(r.output.split())
    (record,) = submissions(folder)
    assert record["job_ids"] == job_ids and record["index_job"]["job_id"] is None
    assert record["index_job"]["error"] == "sbatch refused the job: QOSMaxSubmitJobPerUserLimit"
    wait_for_jobs(job_ids)
    assert status_json(folder)["counts"] == {"completed": 2}


@pytest.mark.slurm
def test_scancel_mid_run_leaves_a_stopped_run_and_rerun_failed_completes_it(cluster, tmp_path, monkeypatch):
    # both tasks wait inside their computation (a barrier: sbatch passes the environment on);
    # task 1 is cancelled there, task 0 then goes on and completes
    barrier = Barrier(tmp_path, "computing")
    monkeypatch.setenv(*next(iter(barrier.env.items())))
    spec = write_spec(tmp_path, "cancelled", TWO)
    results = tmp_path / "results"
    folder = results / "cancelled"
    job_ids, out = submit(spec, "--results", results, "--points-per-task", "1")
    (job,) = job_ids
    (record,) = submissions(folder)
    cancelled_id = record["points"][1][1]
    barrier.wait(2)
    subprocess.run(["scancel", f"{job}_1"], check=True, timeout=30)
    wait_for_task_end(job, 1)
    barrier.release()
    wait_for_jobs(job_ids)
    # SIGTERM reached the run inside its computation: a whole run file says `stopped`
    path = folder / "runs" / f"{cancelled_id}.h5"
    assert not hidden_files(folder)
    assert read_run_status(path) == "stopped"
    assert (folder / "runs" / f".{cancelled_id}.checkpoint.npz").exists()  # its state, to resume from
    assert read_run(path).attrs["message"] == "stopped: received SIGTERM"
    assert "CANCELLED" in (folder / "slurm" / f"{job}_1.out").read_text()
    assert status_json(folder)["counts"] == {"completed": 1, "stopped": 1}
    # --rerun-failed submits only that point, and it completes
    monkeypatch.delenv(BARRIER_VARIABLE)
    job_ids, out = submit(spec, "--results", results, "--rerun-failed")
    assert "1 completed" in out and "1 to submit" in out, out
    assert submissions(folder)[-1]["points"] == [[1, cancelled_id]]
    wait_for_jobs(job_ids)
    assert read_run_status(path) == "completed"
    assert status_json(folder)["counts"] == {"completed": 2}


def wait_for_task_end(job: str, task: int, deadline: float = DEADLINE) -> None:
    """Wait until array task ``job_task`` has ended: out of squeue and final in scontrol (a bound
    on a hang, not a timing)."""
    end = time.monotonic() + deadline
    while f"{job}_{task} " in squeue_ids([job]) + " " or unfinished([f"{job}_{task}"]):
        if time.monotonic() > end:
            pytest.fail(f"task {job}_{task} still in the queue after {deadline:.0f} s")
        time.sleep(0.1)


def job_step_pids(job_id: str) -> list[int]:
    """The pids of the ``slurmstepd: [<job_id>.<step>]`` processes on this machine (the test cluster
    has one node, so every step of the job runs here)."""
    out = subprocess.run(["pgrep", "-f", rf"^slurmstepd: \[{job_id}\."], capture_output=True, text=True,
                         timeout=30)
    return [int(pid) for pid in out.stdout.split()]


@pytest.mark.slurm
def test_requeued_task_is_queued_then_runs_its_point_again(cluster, tmp_path, monkeypatch):
    barrier = Barrier(tmp_path, "computing")  # the first attempt waits inside its computation
    monkeypatch.setenv(*next(iter(barrier.env.items())))
    spec = write_spec(tmp_path, "requeued", "")
    results = tmp_path / "results"
    folder = results / "requeued"
    job_ids, out = submit(spec, "--results", results, "--requeue")
    (job,) = job_ids
    run_id = submissions(folder)[0]["points"][0][1]
    (first_attempt,) = barrier.wait(1)
    (record,) = job_records([f"{job}_0"])
    old_steps = job_step_pids(record["JobId"])
    assert old_steps  # what the wait below watches is there to see
    # what a preemption does to a requeueable job: SIGTERM, then back into the queue
    subprocess.run(["scontrol", "requeue", f"{job}_0"], check=True, timeout=30)
    wait_gone([first_attempt])  # the first attempt has ended (its stop written, its claim given up)
    assert read_run_status(folder / "runs" / f"{run_id}.h5") == "stopped"
    # the job is PENDING as soon as it is requeued, while its old batch step may still be ending:
    # an end that reached slurmctld after StartTime=now was taken for the new attempt's (FAILED,
    # exit 1, NonZeroExitCode, the second attempt never started: seen once, 2026-12-03). A step's
    # slurmstepd exits only once slurmctld has taken its end, so wait for it to be gone first
    wait_gone(old_steps)
    # a requeued job waits ~2 min (BeginTime) before it may start again. Once Slurm has put it
    # back in the queue (its old batch step done: PENDING for BeginTime, one restart), let it
    # start now; earlier, the step's end would set BeginTime again
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        (record,) = job_records([f"{job}_0"])
        if (record.get("JobState"), record.get("Reason"), record.get("Restarts")) == ("PENDING", "BeginTime", "1"):
            break
        time.sleep(0.1)
    assert (record.get("JobState"), record.get("Reason")) == ("PENDING", "BeginTime"), describe_jobs(job_ids)
    assert squeue_ids(job_ids) == f"{job}_0 PENDING"
    assert status_json(folder)["counts"] == {"queued": 1}
    barrier.release()  # the second attempt passes the barrier
    subprocess.run(["scontrol", "update", f"JobId={job}_0", "StartTime=now"], check=True, timeout=30)
    wait_for_jobs(job_ids)
    log = (folder / "slurm" / f"{job}_0.out").read_text()
    assert read_run_status(folder / "runs" / f"{run_id}.h5") == "completed", \
        f"{describe_jobs(job_ids)}\n{log}"
    assert "restart 0" in log and "restart 1" in log  # --open-mode=append keeps both attempts


@pytest.mark.slurm
def test_bad_partition_is_one_message_and_nothing_recorded(cluster, tmp_path):
    spec = write_spec(tmp_path, "badpart")
    r = invoke("submit", spec, "--results", tmp_path / "results", "--partition", "nosuch")
    assert r.exit_code == 2, r.output
    assert "invalid partition" in r.output.lower() and "Traceback" not in r.output
    slurm_dir = tmp_path / "results" / "badpart" / "slurm"
    assert not (slurm_dir / "submissions.jsonl").exists()
    assert not list(slurm_dir.glob("*.sbatch")) and not list(slurm_dir.glob("*.tasks"))
