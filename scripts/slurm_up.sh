#!/usr/bin/env bash
# Install (if needed), configure and start a single-node Slurm cluster on this
# machine (Debian 12, root, no systemd) for the lcnrun test-suite.
#
# Idempotent: daemons that are already up are left alone, the config is only
# rewritten when it would change (e.g. another hostname or other hardware).
# A rewritten config means a fresh cluster: daemons are restarted and the old
# controller state (job records, job ids) is wiped.
#
# Exit codes:
#   0  cluster up, node idle (or busy with jobs) and accepting work
#   3  cannot set up Slurm here (not root / no apt-get) -- tests should skip
#   4  node did not become ready within SLURM_UP_TIMEOUT seconds (default 60)
#   5  installing packages or starting a daemon failed
#
# Environment: SLURM_UP_TIMEOUT (seconds, default 60).
set -uo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
PACKAGES=(slurmctld slurmd slurm-client munge)
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# Managed by lcnrun scripts/slurm_up.sh"
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
CTLD_PID="$RUN_DIR/slurmctld.pid"
SLURMD_PID="$RUN_DIR/slurmd.pid"
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key
LOCK=/run/lock/lcnrun-slurm-up.lock
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T0=$SECONDS

log() { echo "slurm_up: $*"; }
die() { local code=$1; shift; echo "slurm_up: ERROR: $*" >&2; exit "$code"; }

# True when the node is usable: registered, responding, not drained/down.
node_ready() {
    local st
    st=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1) || return 1
    case "$st" in
        idle|mixed|allocated|completing) return 0 ;;
        *) return 1 ;;
    esac
}

# ---------------------------------------------------------------- preconditions
if [ "$(id -u)" -ne 0 ]; then
    if command -v sinfo >/dev/null 2>&1 && node_ready; then
        log "not root, but a Slurm cluster is already up: nothing to do"
        exit 0
    fi
    die 3 "must run as root to install and start Slurm (uid=$(id -u)); Slurm tests cannot run here"
fi

mkdir -p "$(dirname "$LOCK")"
# fd 9 holds the lock; every daemon below is started with 9>&- so that it
# does not inherit (and keep holding) the lock.
exec 9>"$LOCK"
if ! flock -w 300 9; then
    die 5 "could not take the lock $LOCK within 300 s (another slurm_up.sh hanging?)"
fi

# ------------------------------------------------------------------ packages
pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
else
    missing=("${PACKAGES[@]}")
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
        die 3 "apt-get/dpkg not available; cannot install ${missing[*]}; Slurm tests cannot run here"
    fi
    log "installing ${missing[*]} (apt-get update + install)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package maintainer scripts from starting daemons themselves
    # (we start them below); Docker-style images already have this file.
    added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt_log=$(mktemp)
    if ! apt-get -o DPkg::Lock::Timeout=120 update -q >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        die 5 "apt-get update failed"
    fi
    if ! apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends \
            "${PACKAGES[@]}" >>"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        die 5 "apt-get install ${PACKAGES[*]} failed"
    fi
    rm -f "$apt_log"
    if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
    log "installed: $(dpkg-query -W -f='${Package} ${Version}  ' "${PACKAGES[@]}")"
fi

# ------------------------------------------------------------------ helpers
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

# Stop a daemon by pid (TERM, then KILL after ~10 s).
stop_daemon() {
    local name=$1 pidfile=$2 pid i
    pid=$(daemon_pid "$name" "$pidfile") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

show_logs() {
    local f
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        [ -r "$f" ] || continue
        echo "----- tail of $f -----" >&2
        tail -n 25 "$f" >&2
    done
}

# --------------------------------------------------------------------- munge
if [ ! -s "$MUNGE_KEY" ]; then
    log "creating munge key $MUNGE_KEY"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --force --keyfile="$MUNGE_KEY" >/dev/null 2>&1 || \
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge "$MUNGE_KEY"
chmod 0700 /etc/munge
chmod 0400 "$MUNGE_KEY"
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

if munge_ok; then
    :
else
    if pid=$(daemon_pid munged "$MUNGE_PID"); then
        log "munged (pid $pid) not answering; restarting it"
        stop_daemon munged "$MUNGE_PID"
    fi
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 9>&- || \
        runuser -u munge -- /usr/sbin/munged --force </dev/null >/dev/null 2>&1 9>&- || true
    for i in $(seq 50); do munge_ok && break; sleep 0.1; done
    if ! munge_ok; then
        show_logs
        die 5 "munged did not start (see /var/log/munge/munged.log)"
    fi
fi

# -------------------------------------------------------------------- config
HOST=$(hostname -s)
[ -n "$HOST" ] || die 5 "hostname -s is empty"
# First line of `slurmd -C` is the NodeName line; the second is UpTime.
NODE_LINE=$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=') || true
[ -n "$NODE_LINE" ] || die 5 "slurmd -C printed no NodeName line"
REALMEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")
[ -n "$REALMEM" ] || die 5 "no RealMemory in: $NODE_LINE"
MEM=$(( REALMEM * 9 / 10 ))      # leave headroom, else the node drains
NODE_LINE=$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$NODE_LINE")
NODE=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$NODE_LINE")
CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")
CPUS=${CPUS:-1}
DEFMEM=$(( MEM / CPUS ))

NEW_CONF=$(cat <<EOF
$MARKER -- do not edit: regenerated when
# \`hostname -s\` or \`slurmd -C\` change (which also wipes the controller state).
ClusterName=lcnrun
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEFMEM
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
KillWait=5
InactiveLimit=0
MinJobAge=600
MaxArraySize=1001
MaxJobCount=20000
JobRequeue=1
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$NODE_LINE NodeAddr=127.0.0.1
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)

mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
chmod 0755 "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"

conf_changed=""
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
    conf_changed=1
    if [ -f "$CONF" ]; then
        if head -n1 "$CONF" | grep -qF "$MARKER"; then
            log "config out of date (hostname/hardware changed?); regenerating $CONF"
        else
            bak="$CONF.bak.$(date +%Y%m%d%H%M%S)"
            cp -p "$CONF" "$bak"
            log "replacing foreign $CONF (saved as $bak)"
        fi
    else
        log "writing $CONF (node $NODE, ${CPUS} CPUs, RealMemory=$MEM)"
    fi
fi

if [ -n "$conf_changed" ]; then
    # A new config means a new cluster: stop what runs, drop the old state.
    if daemon_pid slurmctld "$CTLD_PID" >/dev/null || daemon_pid slurmd "$SLURMD_PID" >/dev/null; then
        log "stopping running Slurm daemons for the new config"
        bash "$HERE/slurm_down.sh" --keep-munge >/dev/null 2>&1 9>&- || true
        stop_daemon slurmd "$SLURMD_PID"
        stop_daemon slurmctld "$CTLD_PID"
    fi
    find "$STATE_DIR" "$SPOOL_DIR" -mindepth 1 -delete 2>/dev/null || true
    printf '%s\n' "$NEW_CONF" >"$CONF.tmp.$$"
    chmod 0644 "$CONF.tmp.$$"
    mv -f "$CONF.tmp.$$" "$CONF"
fi

# ------------------------------------------------------------------- daemons
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

if ! daemon_pid slurmctld "$CTLD_PID" >/dev/null; then
    log "starting slurmctld"
    if ! slurmctld >>"$LOG_DIR/slurmctld.stdout" 2>&1 9>&- </dev/null; then
        show_logs
        die 5 "slurmctld failed to start"
    fi
fi
for i in $(seq $(( TIMEOUT * 5 ))); do ctld_ok && break; sleep 0.2; done
if ! ctld_ok; then
    show_logs
    die 4 "slurmctld not answering after ${TIMEOUT}s"
fi

if ! daemon_pid slurmd "$SLURMD_PID" >/dev/null; then
    log "starting slurmd"
    if ! slurmd >>"$LOG_DIR/slurmd.stdout" 2>&1 9>&- </dev/null; then
        show_logs
        die 5 "slurmd failed to start"
    fi
fi

# ------------------------------------------------------------- wait for node
deadline=$(( SECONDS + TIMEOUT ))
last_resume=-100
state=""
while :; do
    state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        drain*|down*|fail*)
            if [ $(( SECONDS - last_resume )) -ge 3 ]; then
                log "node $NODE is '$state'; resuming it"
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
                last_resume=$SECONDS
            fi ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        scontrol show node "$NODE" >&2 2>/dev/null || true
        show_logs
        die 4 "node $NODE not idle after ${TIMEOUT}s (state: '${state:-unknown}')"
    fi
    sleep 0.2
done

log "ready: node $NODE is $state, partition debug ($(( SECONDS - T0 ))s)"
exit 0
