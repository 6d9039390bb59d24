#!/usr/bin/env bash
# Install (if needed) Debian's headless-capable Chromium for the test of `lcnrun report`
# (tests/test_report_html.py loads the report in a real browser).
#
# Idempotent: an installed Chromium is left alone (no network, well under a second).
#
# Exit codes:
#   0  Chromium is installed (its path printed on the last line)
#   3  cannot install here (not root / no apt-get) -- the browser test skips outside CI
#   5  installing the packages failed
#
# Environment: CHROMIUM (a browser binary to use instead of Debian's, e.g. on a laptop).
set -uo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

PACKAGES=(chromium chromium-driver)
LOCK=/run/lock/lcnrun-browser-up.lock

log() { echo "browser_up: $*"; }
die() { local code=$1; shift; echo "browser_up: ERROR: $*" >&2; exit "$code"; }

found() {
    local b
    for b in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -n "$b" ] && [ -x "$b" ]; then echo "$b"; return 0; fi
    done
    return 1
}

if b=$(found); then
    log "chromium present: $b"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    die 3 "chromium is not installed and installing it needs root (uid=$(id -u)); the browser test cannot run here"
fi
if ! command -v apt-get >/dev/null 2>&1; then
    die 3 "chromium is not installed and there is no apt-get; the browser test cannot run here"
fi

# One installer at a time (make test may run while another checkout's make test does).
mkdir -p "$(dirname "$LOCK")" 2>/dev/null
exec 9>"$LOCK"
flock 9
if b=$(found); then  # installed by whoever held the lock before us
    log "chromium present: $b"
    exit 0
fi

log "installing ${PACKAGES[*]} (apt-get update + install)"
export DEBIAN_FRONTEND=noninteractive
apt_log=$(mktemp)
trap 'rm -f "$apt_log"' EXIT
if ! apt-get -o DPkg::Lock::Timeout=300 update -q >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    die 5 "apt-get update failed"
fi
if ! apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
        "${PACKAGES[@]}" >>"$apt_log" 2>&1; then
    tail -n 30 "$apt_log" >&2
    die 5 "apt-get install ${PACKAGES[*]} failed"
fi
b=$(found) || die 5 "installed ${PACKAGES[*]} but found no chromium binary"
log "installed: $(dpkg-query -W -f='${Package} ${Version}  ' "${PACKAGES[@]}")"
log "chromium present: $b"
exit 0
