#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by scripts/slurm_up.sh:
# cancel all jobs, shut down slurmctld and slurmd, stop munged.
# Config and packages stay; `scripts/slurm_up.sh` starts it again.
#
# Options: --keep-munge  leave munged running.
# Exit codes: 0 stopped (or nothing was running), 3 not root.
set -uo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

KEEP_MUNGE=""
for a in "$@"; do
    case "$a" in
        --keep-munge) KEEP_MUNGE=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "slurm_down: unknown option $a" >&2; exit 2 ;;
    esac
done

log() { echo "slurm_down: $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm_down: ERROR: must run as root (uid=$(id -u))" >&2
    exit 3
fi

RUN_DIR=/run/slurm
CTLD_PID="$RUN_DIR/slurmctld.pid"
SLURMD_PID="$RUN_DIR/slurmd.pid"
MUNGE_PID=/run/munge/munged.pid

# pid of a running daemon: from its pid file if valid, else by exact name.
daemon_pid() {
    local name=$1 pidfile=$2 pid
    if [ -r "$pidfile" ]; then
        pid=$(cat "$pidfile" 2>/dev/null)
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
            echo "$pid"; return 0
        fi
    fi
    pgrep -x "$name" | head -n1 | grep .
}

# Wait up to $3 seconds for the daemon to exit, then TERM, then KILL.
stop_daemon() {
    local name=$1 pidfile=$2 grace=${3:-0} pid i
    pid=$(daemon_pid "$name" "$pidfile") || return 0
    for i in $(seq $(( grace * 5 ))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return 0; }
        sleep 0.2
    done
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

if command -v scontrol >/dev/null 2>&1 && scontrol ping 2>/dev/null | grep -q 'is UP'; then
    users=$(squeue -h -o '%u' 2>/dev/null | sort -u)
    if [ -n "$users" ]; then
        log "cancelling all jobs (users: $(echo $users))"
        for u in $users; do scancel -u "$u" 2>/dev/null || true; done
        # KillWait is 5 s; give jobs a little longer than that to go away.
        for i in $(seq 75); do
            [ -z "$(squeue -h -o '%i' 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    log "scontrol shutdown"
    scontrol shutdown >/dev/null 2>&1 || true
fi

stop_daemon slurmd "$SLURMD_PID" 5
stop_daemon slurmctld "$CTLD_PID" 5

# Job steps left over (should not happen after scancel): end them too.
for pid in $(pgrep -x slurmstepd); do
    log "killing leftover slurmstepd (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
done

if [ -z "$KEEP_MUNGE" ]; then
    stop_daemon munged "$MUNGE_PID" 0
fi

log "done"
exit 0
