#!/usr/bin/env bash
# Rehearse a fresh machine: purge what the project installs, then run the README's
# commands (`make demo`, `make test`) from a fresh clone, and time them.
#
#   lab/rehearse-fresh.sh [--keep-caches] [--with-java] [--only demo|test] [REPO]
#
# What it removes (this machine is not fresh: earlier work leaves packages behind,
# and a green run can hide a missing install step):
#   * the lab's containers, networks and images, and Podman's storage;
#   * every apt package of `lab/setup-machine.sh --list` but ca-certificates, curl and
#     iproute2 (Java only with --with-java, since a machine of this kind comes with
#     Java 17), plus Podman's CNI `dnsname` plugin, which the lab must not need;
#   * Maven's and pip's download caches (kept with --keep-caches), so the artifact
#     cache and the venv are filled from the registries as on a new machine.
# The fresh clone has no .venv, no .artifacts and no reports. REPO defaults to this
# checkout (its committed HEAD: uncommitted changes are not rehearsed).
# Output: the log of each command and reports/rehearsal.json in this checkout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOP="$(cd "$HERE/.." && pwd)"
KEEP_CACHES=0 WITH_JAVA=0 ONLY=""
while (($#)); do
  case "$1" in
    --keep-caches) KEEP_CACHES=1 ;;
    --with-java) WITH_JAVA=1 ;;
    --only) ONLY="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) break ;;
  esac
  shift
done
REPO="${1:-$TOP}"
WORK="${FEDGE_REHEARSAL_DIR:-/var/tmp/fedge-rehearsal}"
OUT="$TOP/reports/rehearsal"
log() { printf '[rehearse %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$OUT"

log "removing the lab: containers, networks, images, Podman storage"
if command -v podman >/dev/null 2>&1; then
  export CONTAINERS_CONF="$HERE/podman/containers.conf"
  podman rm -af -t 0 >/dev/null 2>&1 || true
  podman network prune -f >/dev/null 2>&1 || true
  podman rmi -af >/dev/null 2>&1 || true
  "$HERE/setup-podman.sh" stop || true
  pkill -f 'podman system service' 2>/dev/null || true
fi
rm -rf /var/lib/containers /run/containers /run/podman /var/tmp/fedge-rootfs.*

mapfile -t packages < <("$HERE/setup-machine.sh" --list)
packages+=(golang-github-containernetworking-plugin-dnsname)
# Never purged: what apt itself needs to fetch over HTTPS, and basic networking.
keep='^(ca-certificates|curl|iproute2)$'
((WITH_JAVA)) || keep='^(ca-certificates|curl|iproute2|openjdk-.*)$'
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | grep -Ev "$keep")
installed=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && installed+=("$p")
done
if ((${#installed[@]})); then
  log "purging: ${installed[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${installed[@]}" >/dev/null
fi
for cmd in podman mosquitto kcat chromium mvn debootstrap docker; do
  if command -v "$cmd" >/dev/null 2>&1; then log "still on PATH after the purge: $cmd"; fi
done
if ((!KEEP_CACHES)); then
  log "removing Maven's and pip's download caches"
  rm -rf "$HOME/.m2/repository" "$HOME/.cache/pip"
fi

log "fresh clone of $REPO into $WORK"
rm -rf "$WORK"
git clone -q "$REPO" "$WORK"
cd "$WORK"
log "clone at $(git log -1 --format='%h %s')"

timings=()
run_step() {
  local name="$1"; shift
  log "$name: $* (log: $OUT/$name.log)"
  local start rc=0
  start=$(date +%s)
  "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  local seconds=$(( $(date +%s) - start ))
  log "$name: exit $rc after $((seconds / 60)) min $((seconds % 60)) s"
  tail -n 25 "$OUT/$name.log" >&2
  timings+=("\"$name\": {\"rc\": $rc, \"seconds\": $seconds}")
  return "$rc"
}
status=0
if [[ -z "$ONLY" || "$ONLY" == demo ]]; then
  run_step demo make demo || status=1
  make demo-down >/dev/null 2>&1 || true
fi
if [[ -z "$ONLY" || "$ONLY" == test ]]; then
  run_step test make test || status=1
fi
printf '{"commit": "%s", "steps": {%s}}\n' "$(git rev-parse HEAD)" \
  "$(IFS=,; echo "${timings[*]}")" > "$TOP/reports/rehearsal.json"
log "summary: $TOP/reports/rehearsal.json"
exit "$status"
