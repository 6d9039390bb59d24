#!/bin/bash
# 20,000 points (100-step descents) through `lcnrun submit` on the local Slurm (bundled tasks,
# K chosen by lcnrun) against `lcnrun sweep -j 2` of the same points; then `lcnrun diff` of the
# two. Needs a running cluster (scripts/slurm_up.sh) and takes tens of minutes on 2 cores: not
# part of `make bench`. Usage: bash benchmarks/slurm_bundling.sh [WORKDIR] (default /tmp/lcnrun-20k)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
L=${LCNRUN:-$HERE/../.venv/bin/lcnrun}
W=${1:-/tmp/lcnrun-20k}
mkdir -p "$W" && cd "$W" && rm -rf results local
# the spec of benchmarks/bench_task_start.py (SPEC) at 20,000 points
python3 - "$HERE" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from bench_task_start import SPEC
open("sweep20k.yaml", "w").write(SPEC.format(name="sweep20k", seeds=", ".join(map(str, range(2000)))))
PY
now() { date +%s.%N; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(now)
"$L" submit sweep20k.yaml --results results --mem 2G
t1=$(now)
ids=$(python3 -c "import json; print(','.join(json.loads(open('results/sweep20k/slurm/submissions.jsonl').readline())['job_ids']))")
while [ -n "$(squeue -h -j "$ids" 2>/dev/null)" ]; do sleep 1; done
t2=$(now)
echo "submit: submission $(echo "$t1 - $t0" | bc) s, total $(echo "$t2 - $t0" | bc) s; load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$L" status results/sweep20k
t3=$(now)
"$L" sweep sweep20k.yaml --results local -j 2 -q
t4=$(now)
echo "sweep -j 2: total $(echo "$t4 - $t3" | bc) s; load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$L" diff results/sweep20k local/sweep20k | tail -1
