#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for the fedge container lab, idempotently:
#   * install Podman, runc, debootstrap and the docker CLI (lab/setup-machine.sh,
#     which owns the list of system packages);
#   * start Podman's Docker-compatible API socket (unless a Docker engine answers).
# Usage: lab/setup-podman.sh [install|start|stop|env]
#   install  system packages only  start  install + start the socket (default)
#   stop     stop the socket we started   env    print the exports to use it
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOCK_DIR="${FEDGE_PODMAN_SOCK_DIR:-/run/podman}"
SOCK="${SOCK_DIR}/podman.sock"
PIDFILE="${SOCK_DIR}/fedge-podman-service.pid"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${HERE}/podman/containers.conf}"

log() { printf '[setup-podman] %s\n' "$*" >&2; }

docker_engine_answers() {
  # A real Docker engine (not our Podman socket) that already works.
  [[ -z "${DOCKER_HOST:-}" ]] && command -v docker >/dev/null 2>&1 \
    && timeout 10 docker info >/dev/null 2>&1
}

socket_answers() {
  [[ -S "$SOCK" ]] && curl -fsS --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1
}

start_service() {
  if socket_answers; then
    log "podman API already answers on $SOCK"
    return 0
  fi
  mkdir -p "$SOCK_DIR"
  log "starting: podman system service --time=0 unix://$SOCK"
  # setsid: the service must outlive make and the calling shell.
  setsid podman system service --time=0 "unix://$SOCK" \
    >/var/log/fedge-podman-service.log 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 50); do
    socket_answers && { log "podman API is up"; return 0; }
    sleep 0.2
  done
  log "podman API did not come up; see /var/log/fedge-podman-service.log"
  return 1
}

stop_service() {
  if [[ -f "$PIDFILE" ]]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
    log "stopped podman API service"
  fi
}

print_env() {
  if docker_engine_answers; then
    echo "export CONTAINERS_CONF=${CONTAINERS_CONF}"
  else
    echo "export CONTAINERS_CONF=${CONTAINERS_CONF}"
    echo "export DOCKER_HOST=unix://${SOCK}"
  fi
}

case "${1:-start}" in
  install) "$HERE/setup-machine.sh" ;;
  start)
    if docker_engine_answers; then
      log "a Docker engine answers; Podman not needed"
    else
      "$HERE/setup-machine.sh"
      start_service
    fi ;;
  stop) stop_service ;;
  env) print_env ;;
  *) echo "usage: $0 [install|start|stop|env]" >&2; exit 2 ;;
esac
