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

from barriers import Barrier
from lcnrun.cli import app
from lcnrun.interrupt import BARRIER_VARIABLE
from lcnrun.report.status import SCHEDULER_PROBES
from lcnrun.schedule import slurm
from lcnrun.schedule.slurm import (ArrayPlan, SubmitOptions, TaskState, parse_config, parse_sacct,
                                   parse_squeue, plan_arrays, plan_submission, task_states)
from lcnrun.spec import load_experiment
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


def _plan(tmp_path, points, limit=4, **opts):
    options = SubmitOptions(**opts)
    return plan_submission("demo", tmp_path / "demo.yaml", tmp_path / "results", points, options,
                           max_array_size=limit, tag="submit-test", python="/bin/echo",
                           workdir=tmp_path)


def run_script(plan, k: int, task: int, cpus: str = "2") -> str:
    """Run array ``k``'s script as Slurm would run task ``task`` (the interpreter is ``echo``, so
    the last line prints the command it would exec)."""
    plan.slurm_dir.mkdir(parents=True, exist_ok=True)
    plan.tasks_file.write_text(plan.tasks_text())
    script = plan.slurm_dir / f"array{k}.sh"
    script.write_text(plan.script(k))
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
        text = plan.script(k)
        assert f"#SBATCH --array=0-{array.count - 1}%2\n" in text
        assert f"\nOFFSET={array.offset}\n" in text
        for task in range(array.count):
            out = run_script(plan, k, task)
            command = out.strip().splitlines()[-1].split()
            index = int(command[command.index("--index") + 1])
            assert command[command.index("--expect-run-id") + 1] == f"run{index:03d}"
            assert command[:3] == ["-m", "lcnrun.cli", "run"]
            assert command[command.index("--results") + 1] == str(tmp_path / "results")
            seen.append(index)
    assert seen == [i for i, _ in points]


def test_script_text_carries_the_options(tmp_path):
    plan = _plan(tmp_path, [(3, "abc"), (4, "def")], limit=1001, partition="short", time="01:00:00",
                 mem="2G", cpus_per_task=2, requeue=True,
                 sbatch_args=("--qos=short", "--account=lab"))
    text = plan.script(0)
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
    assert "point 4, run def, 3 cpu(s)" in out
    assert re.search(r"^exec /bin/echo -m lcnrun\.cli run \S+demo\.yaml --index \"\$INDEX\"", text, re.M)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert f"export {name}=${{SLURM_CPUS_PER_TASK:-1}}" in text


@pytest.mark.parametrize("arg", ["--array=0-3", "-a0-3", "--output=x", "--job-name=x", "--wait", "qos"])
def test_reserved_or_malformed_sbatch_args_are_refused(tmp_path, arg):
    spec = write_spec(tmp_path, "demo")
    r = invoke("submit", spec, "--results", tmp_path / "results", "--dry-run", f"--sbatch-arg={arg}")
    assert r.exit_code == 2, r.output
    assert "--sbatch-arg" in r.output and "Traceback" not in r.output


def test_parsers():
    config = parse_config("Configuration data as of ...\nMaxArraySize            = 17\nKillWait = 5 sec\n")
    assert slurm.max_array_size(config) == 17 and config["KillWait"] == "5 sec"
    assert slurm.max_array_size({}) == slurm.DEFAULT_MAX_ARRAY_SIZE
    assert parse_squeue("5|2|PENDING|N/A|demo\n5|0|RUNNING|2026-01-01T00:00:00|demo|x\n") == [
        TaskState("5", 2, "PENDING", False, "demo"), TaskState("5", 0, "RUNNING", True, "demo|x")]
    assert parse_sacct("7_1|CANCELLED by 0|2026-01-01T00:00:00|demo\n7_[2-5]|PENDING|Unknown|demo\n"
                       "7_3.batch|CANCELLED|2026-01-01T00:00:00|batch\n") == [
        TaskState("7", 1, "CANCELLED", True, "demo")]


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
    assert task_states(subs, tasks, has_file={"r1"}) == {"r0": "running", "r2": "queued"}
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
    r = invoke("submit", spec, "--results", tmp_path / "results", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "#SBATCH --array=0-7" in r.output and "MaxArraySize assumed 1001" in r.output
    assert not (tmp_path / "results").exists()


def test_status_asks_slurm():
    assert slurm.slurm_states in SCHEDULER_PROBES


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


def squeue_ids(job_ids) -> str:
    # squeue fails now and then while slurmctld is busy (e.g. saving state after `scontrol
    # update`): its empty output must not read as "no jobs left", so ask again
    for _ in range(50):
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            return out.stdout.strip()
        time.sleep(0.2)
    raise AssertionError(f"squeue keeps failing: {out.stderr.strip()}")


def wait_for_jobs(job_ids, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while squeue_ids(job_ids):
        if time.monotonic() > end:
            state = squeue_ids(job_ids)
            subprocess.run(["scancel", *job_ids], timeout=30)
            pytest.fail(f"jobs {job_ids} not done after {deadline:.0f} s:\n{state}")
        time.sleep(0.3)


def submit(*args) -> tuple[list[str], str]:
    r = invoke("submit", *args, "--mem", "300M")
    assert r.exit_code == 0, r.output
    ids = re.findall(r"array jobs? ([\d, ]+)", r.output)
    job_ids = [j.strip() for j in ids[0].split(",") if j.strip()] if ids else []
    SUBMITTED.extend(job_ids)
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
    assert "#SBATCH --array=0-7%3" in r.output and "nothing submitted" in r.output
    assert all(p.run_id in r.output for p in load_experiment(spec).points)
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
    monkeypatch.setattr("lcnrun.cli.submit.max_array_size", lambda config: 3)
    job_ids, out = submit(spec, "--results", results, "--max-parallel", "2")
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
            assert f"point {index}, run {run_id}" in log and "completed" in log
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


TWO = """\
sweep:
  points:
    - {init.seed: 2}
    - {}
"""


@pytest.mark.slurm
def test_scancel_mid_run_leaves_a_stopped_run_and_rerun_failed_completes_it(cluster, tmp_path, monkeypatch):
    # both tasks wait inside their computation (a barrier: sbatch passes the environment on);
    # task 1 is cancelled there, task 0 then goes on and completes
    barrier = Barrier(tmp_path, "computing")
    monkeypatch.setenv(*next(iter(barrier.env.items())))
    spec = write_spec(tmp_path, "cancelled", TWO)
    results = tmp_path / "results"
    folder = results / "cancelled"
    job_ids, out = submit(spec, "--results", results)
    (job,) = job_ids
    (record,) = submissions(folder)
    slow_id = record["points"][1][1]
    barrier.wait(2)
    subprocess.run(["scancel", f"{job}_1"], check=True, timeout=30)
    wait_for_task_end(job, 1)
    barrier.release()
    wait_for_jobs(job_ids)
    # SIGTERM reached the run inside its computation: a whole run file says `stopped`
    path = folder / "runs" / f"{slow_id}.h5"
    assert not hidden_files(folder)
    assert read_run_status(path) == "stopped"
    assert (folder / "runs" / f".{slow_id}.checkpoint.npz").exists()  # its state, to resume from
    assert read_run(path).attrs["message"] == "stopped: received SIGTERM"
    assert "CANCELLED" in (folder / "slurm" / f"{job}_1.out").read_text()
    assert status_json(folder)["counts"] == {"completed": 1, "stopped": 1}
    # --rerun-failed submits only that point, and it completes
    monkeypatch.delenv(BARRIER_VARIABLE)
    job_ids, out = submit(spec, "--results", results, "--rerun-failed")
    assert "1 completed" in out and "1 to submit" in out, out
    assert submissions(folder)[-1]["points"] == [[1, slow_id]]
    wait_for_jobs(job_ids)
    assert read_run_status(path) == "completed"
    assert status_json(folder)["counts"] == {"completed": 2}


def wait_for_task_end(job: str, task: int, deadline: float = DEADLINE) -> None:
    """Wait until array task ``job_task`` has left the queue (a bound on a hang, not a timing)."""
    end = time.monotonic() + deadline
    while f"{job}_{task} " in squeue_ids([job]) + " ":
        if time.monotonic() > end:
            pytest.fail(f"task {job}_{task} still in the queue after {deadline:.0f} s")
        time.sleep(0.1)


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
    barrier.wait(1)
    # what a preemption does to a requeueable job: SIGTERM, then back into the queue
    subprocess.run(["scontrol", "requeue", f"{job}_0"], check=True, timeout=30)
    end = time.monotonic() + DEADLINE
    while not (folder / "runs" / f"{run_id}.h5").exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert read_run_status(folder / "runs" / f"{run_id}.h5") == "stopped"
    # a requeued job waits ~2 min (BeginTime) before it may start again: once it is back in the
    # queue, let it start now
    end = time.monotonic() + DEADLINE
    while squeue_ids(job_ids) != f"{job}_0 PENDING" and time.monotonic() < end:
        time.sleep(0.1)
    assert squeue_ids(job_ids) == f"{job}_0 PENDING"
    assert status_json(folder)["counts"] == {"queued": 1}
    barrier.release()  # the second attempt passes the barrier
    subprocess.run(["scontrol", "update", f"JobId={job}_0", "StartTime=now"], check=True, timeout=30)
    wait_for_jobs(job_ids)
    assert read_run_status(folder / "runs" / f"{run_id}.h5") == "completed"
    log = (folder / "slurm" / f"{job}_0.out").read_text()
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
