#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for the fedge container lab, idempotently:
#   * apt-install Podman, runc, debootstrap and the helpers the lab uses;
#   * start Podman's Docker-compatible API socket (unless a Docker engine answers).
# Usage: lab/setup-podman.sh [install|start|stop|env]
#   install  apt packages only            start  install + start the socket (default)
#   stop     stop the socket we started   env    print the exports to use it
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOCK_DIR="${FEDGE_PODMAN_SOCK_DIR:-/run/podman}"
SOCK="${SOCK_DIR}/podman.sock"
PIDFILE="${SOCK_DIR}/fedge-podman-service.pid"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${HERE}/podman/containers.conf}"

APT_PACKAGES=(podman runc debootstrap uidmap slirp4netns iptables
              ca-certificates curl jq)

log() { printf '[setup-podman] %s\n' "$*" >&2; }

docker_engine_answers() {
  # A real Docker engine (not our Podman socket) that already works.
  [[ -z "${DOCKER_HOST:-}" ]] && command -v docker >/dev/null 2>&1 \
    && timeout 10 docker info >/dev/null 2>&1
}

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    local sudo=""; [[ $EUID -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    log "apt packages present"
  fi
}

install_docker_client() {
  # Molecule's docker driver and connection call the `docker` CLI. Debian 12
  # ships it only in docker.io; install that without starting its daemon.
  command -v docker >/dev/null 2>&1 && return 0
  log "installing the docker client (docker.io, daemon not started)"
  local sudo=""; [[ $EUID -ne 0 ]] && sudo="sudo"
  local guard=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $guard ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null && $sudo chmod 0755 "$guard" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker.io || true
  ((created)) && $sudo rm -f "$guard"
  command -v docker >/dev/null 2>&1
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
  install) install_packages ;;
  start)
    if docker_engine_answers; then
      log "a Docker engine answers; Podman not needed"
    else
      install_packages
      install_docker_client
      start_service
    fi ;;
  stop) stop_service ;;
  env) print_env ;;
  *) echo "usage: $0 [install|start|stop|env]" >&2; exit 2 ;;
esac
