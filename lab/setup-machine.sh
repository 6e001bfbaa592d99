#!/usr/bin/env bash
# Install what a fresh Debian 12 (or Ubuntu) machine lacks for fedge, idempotently.
# `make setup` runs it, and so do `make demo`, `make test` and `.ci/run` through it.
#
#   lab/setup-machine.sh           install what is missing (apt-get update only then)
#   lab/setup-machine.sh --list    print the apt packages this project installs
#
# The one list of system packages the project needs (lab/rehearse-fresh.sh purges
# exactly these). Name resolution in the lab needs none of them: every lab host gets
# a fixed address and /etc/hosts entries (lab/containers.yml), so Podman's CNI
# `dnsname` plugin is deliberately not installed.
# Daemons are never started by the install (a policy-rc.d guard): the tests start
# Mosquitto on loopback ports themselves, and the lab uses Podman's API socket
# (lab/setup-podman.sh start), not a Docker daemon.
set -euo pipefail

# Tests and the artifact cache: the JVM for Kafka and Spark, Maven for `fl artifacts
# fetch`, Mosquitto for the integration tests, Chromium for the browser tests.
TOOL_PACKAGES=(openjdk-17-jre-headless maven mosquitto mosquitto-clients kcat chromium
               ca-certificates curl jq iproute2)
# The container lab and Molecule: Podman with runc (crun fails on these machines),
# debootstrap for the base image, the docker CLI (docker.io, daemon never started)
# for Molecule's docker driver through Podman's Docker-compatible socket.
LAB_PACKAGES=(podman runc debootstrap uidmap slirp4netns iptables docker.io)

log() { printf '[setup] %s\n' "$*" >&2; }

all_packages() {
  local pkgs=("${TOOL_PACKAGES[@]}" "${LAB_PACKAGES[@]}")
  # A Debian python3 needs python3-venv for `python3 -m venv`; pyenv's does not.
  if [[ "$(command -v python3)" == /usr/bin/python3 ]]; then pkgs+=(python3-venv); fi
  printf '%s\n' "${pkgs[@]}"
}

missing_packages() {
  local p
  while read -r p; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done < <(all_packages)
}

java_major() {
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  java -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p'
}

install() {
  mapfile -t missing < <(missing_packages)
  # A Java 17 or newer that did not come from apt (for example a Temurin install) will do.
  if (( $(java_major) >= 17 )); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | grep -Ev '^(openjdk-17-jre-headless)?$' || true)
  fi
  if ((${#missing[@]} == 0)); then
    log "system packages present"
    return 0
  fi
  sudo=""
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: install ${missing[*]} by hand"; exit 1; }
    sudo="sudo"
  fi
  log "installing: ${missing[*]}"
  # No daemon may start during the install (docker.io, mosquitto): exit 101 = "not allowed".
  guard=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $guard ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null
    $sudo chmod 0755 "$guard"
    created=1
  fi
  trap 'if ((created)); then $sudo rm -f "$guard"; fi' EXIT
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  log "installed ${#missing[@]} packages"
}

case "${1:-install}" in
  install) install ;;
  --list) all_packages ;;
  *) echo "usage: $0 [install|--list]" >&2; exit 2 ;;
esac
