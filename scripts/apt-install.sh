#!/usr/bin/env bash
# Install Debian packages with apt-get, waiting (bounded) while another process holds apt's or dpkg's lock
# (unattended-upgrades, another apt-get). apt-get's own DPkg::Lock::Timeout covers dpkg's frontend lock only, not
# the package-lists lock that `apt-get update` takes, so every apt-get call is retried here instead.
#
#   scripts/apt-install.sh chromium            # APT_LOCK_TIMEOUT=600 (seconds) by default, APT_LOCK_POLL=5
set -uo pipefail

timeout_s=${APT_LOCK_TIMEOUT:-600}
poll_s=${APT_LOCK_POLL:-5}
apt_get=${APT_GET:-apt-get}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
log=$(mktemp)
trap 'rm -f "$log"' EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
deadline_ms=$(( $(now_ms) + ${timeout_s%.*} * 1000 ))

locked() { grep -qE "Could not get lock|Unable to lock|Unable to acquire the dpkg frontend lock|dpkg frontend lock" "$log"; }

run() {
  local waited=0
  while :; do
    $sudo env DEBIAN_FRONTEND=noninteractive "$apt_get" "$@" >"$log" 2>&1
    local rc=$?
    if [ $rc -eq 0 ] || ! locked; then
      cat "$log"
      return $rc
    fi
    local holder
    holder=$(grep -oE "held by process [0-9]+( \([^)]*\))?" "$log" | head -n1)
    if [ "$(now_ms)" -ge "$deadline_ms" ]; then
      cat "$log" >&2
      echo "patchlab: apt is still locked after ${timeout_s} s (${holder:-by another apt or dpkg process})." >&2
      echo "patchlab: wait for that process to finish (ps -ef | grep -E 'apt|dpkg'), then run the same make command" \
           "again; or install the packages yourself: ${sudo:+sudo }apt-get install $PACKAGES;" \
           "APT_LOCK_TIMEOUT=SECONDS waits longer." >&2
      return 75
    fi
    [ $waited = 1 ] || echo "patchlab: apt is locked (${holder:-another apt or dpkg process}); waiting up to ${timeout_s} s ..." >&2
    waited=1
    sleep "$poll_s"
  done
}

[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
PACKAGES="$*"
lock_wait=${poll_s%.*}
[ "${lock_wait:-0}" -ge 1 ] 2>/dev/null || lock_wait=1
run update -q && run -o DPkg::Lock::Timeout="$lock_wait" install -y -q "$@"
