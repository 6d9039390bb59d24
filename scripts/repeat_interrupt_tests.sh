#!/bin/bash
# Issue 10: "run the interrupt tests N times in a row". Runs the 20 interruption/kill tests (sweep
# SIGINT/SIGTERM, SIGTERM at each barrier phase of a sweep and of `lcnrun run`, kill -9 of the
# sweep, of everything and of a worker, two concurrent sweeps, a run that raises, and the Slurm
# scancel/requeue tests, which need scripts/slurm_up.sh) N times with `pytest -n 2`, one line per
# iteration, and the count that passed.
# Usage: bash scripts/repeat_interrupt_tests.sh [N=20]   (from the project folder, after make install)
set -u
N=${1:-20}
K='interrupt or sigterm or killed or sigkill or two_sweeps or raises or claimed_elsewhere or ignores_sigint or scancel or requeue'
passed=0
for i in $(seq 1 "$N"); do
    start=$(date +%s)
    out=$(.venv/bin/python -m pytest -q -n 2 -p no:cacheprovider tests/test_sweep.py tests/test_ensemble.py \
          tests/test_slurm.py -k "$K" 2>&1)
    rc=$?
    [ $rc -eq 0 ] && passed=$((passed + 1))
    echo "iteration $i: exit $rc, $(echo "$out" | tail -1), $(( $(date +%s) - start )) s, load $(cut -d' ' -f1 /proc/loadavg)"
    [ $rc -ne 0 ] && echo "$out" | grep -E "^(FAILED|ERROR)" | head
done
echo "$passed of $N iterations passed"
[ "$passed" -eq "$N" ]
