#!/bin/bash
# Issue 10's long-run measurement on the local Slurm: a descent of 1e8 steps and a DOP853 flow of
# about a minute, each run once uninterrupted (one task) and once stopped three times by `scancel`
# (each time when its task has run for a fifth of the uninterrupted time) and submitted again,
# until it completes; then `lcnrun diff --rtol 0 --atol 0` of the two run files, the resumes the run
# file records, and the time lost per interruption (the tasks' summed run times minus the
# uninterrupted one, over 3). Needs a running cluster (scripts/slurm_up.sh); ~20 minutes on 2
# cores: not part of `make bench`. Usage: bash benchmarks/slurm_resume.sh [WORKDIR] [descent|flow ...]
set -eu
L=${LCNRUN:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/lcnrun}
W=${1:-/tmp/lcnrun-resume}
shift || true
KINDS=${*:-descent flow}
mkdir -p "$W" && cd "$W"
base='model:    {kind: lcn, filters: [4, 3, 2], strides: [2, 2, 1]}
data:     {kind: gaussian, n_samples: 64, input_size: 64, target: {kind: teacher, scale: 0.5}, noise: 0.01, seed: 0}
init:     {kind: gaussian, scale: 0.3, seed: 1}
loss:     {kind: square}
record:   {points: 200, spacing: log}'
printf 'name: descent\n%s\ndynamics: {kind: gradient_descent, lr: 0.01, steps: 100000000}\n' "$base" > descent.yaml
printf 'name: flow\n%s\ndynamics: {kind: gradient_flow, t_max: 5000.0, method: DOP853, rtol: 1.0e-10, atol: 1.0e-12}\n' "$base" > flow.yaml
now() { date +%s.%N; }
job_of() { python3 -c "import json,sys; print(','.join(json.loads(open(sys.argv[1]).readlines()[-1])['job_ids']))" "$1/$2/slurm/submissions.jsonl"; }
# run_task RESULTS KIND [DELAY]: submit, wait until the task runs, (sleep DELAY; scancel), wait
# until it is gone; prints the seconds from running to gone
run_task() {
    "$L" submit "$2.yaml" --results "$1" -q --time 01:00:00 --mem 1G > /dev/null
    local job; job=$(job_of "$1" "$2")
    while [ "$(squeue -h -j "$job" -o %T 2>/dev/null | head -1)" != RUNNING ]; do
        [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break; sleep 0.2; done
    local t0; t0=$(now)
    if [ -n "${3:-}" ]; then sleep "$3"; scancel "$job"; fi
    while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do sleep 0.2; done
    echo "$(now) - $t0" | bc
}
for kind in $KINDS; do
    rm -rf "ref-$kind" "int-$kind"
    echo "== $kind (load $(cut -d' ' -f1-3 /proc/loadavg))"
    ref=$(run_task "ref-$kind" "$kind")
    echo "uninterrupted: one task, $ref s"
    delay=$(echo "$ref / 5" | bc -l)
    total=0
    for i in 1 2 3; do
        seg=$(run_task "int-$kind" "$kind" "$delay")
        total=$(echo "$total + $seg" | bc -l)
        status=$("$L" summary "int-$kind/$kind" --csv | python3 -c "import csv,sys; r=list(csv.DictReader(sys.stdin)); print(r[0]['status'])")
        n_ck=$(ls -a "int-$kind/$kind/runs" | grep -c 'checkpoint.npz' || true)
        echo "task $i: scancel after $(printf %.1f "$delay") s of running; gone after $seg s; run file $status, checkpoints $n_ck"
    done
    while :; do
        seg=$(run_task "int-$kind" "$kind")
        total=$(echo "$total + $seg" | bc -l)
        status=$("$L" summary "int-$kind/$kind" --csv | python3 -c "import csv,sys; r=list(csv.DictReader(sys.stdin)); print(r[0]['status'])")
        echo "resumed task: $seg s, run file $status"
        [ "$status" = completed ] && break
    done
    echo "interrupted 3 times: tasks' run time $total s; lost per interruption $(echo "($total - $ref) / 3" | bc -l | xargs printf %.1f) s (load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$L" diff "ref-$kind/$kind" "int-$kind/$kind" --rtol 0 --atol 0 | tail -1; echo "diff exit ${PIPESTATUS[0]}"
    "$(dirname "$L")/python" - "int-$kind/$kind" <<'PY'
import sys
import lcnrun
for run in lcnrun.open(sys.argv[1]).runs():
    for r in run.provenance.get("resumed_from", []):
        print("resumed from", {k: r[k] for k in r if k != "at"})
PY
done
