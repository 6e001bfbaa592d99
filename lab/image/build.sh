#!/usr/bin/env bash
# Build the fedge lab base image (systemd + Python + the slow OS packages).
#   default: debootstrap --variant=minbase bookworm -> import -> Dockerfile
#            with BASE=localhost/fedge-rootfs:bookworm (no registry needed)
#   FEDGE_IMAGE_SOURCE=registry: the same Dockerfile FROM debian:bookworm
# The image is rebuilt only when provision.sh or the Dockerfile change
# (their hash is stored as a label), so every scenario reuses one build.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${FEDGE_LAB_IMAGE:-localhost/fedge-lab:bookworm}"
ROOTFS_IMAGE="localhost/fedge-rootfs:bookworm"
MIRROR="${FEDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SOURCE="${FEDGE_IMAGE_SOURCE:-debootstrap}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${HERE}/../podman/containers.conf}"

if command -v podman >/dev/null 2>&1; then CTR=podman; else CTR=docker; fi
log() { printf '[lab-image] %s\n' "$*" >&2; }

hash="$(cat "$HERE/provision.sh" "$HERE/Dockerfile" | sha256sum | cut -c1-16)"
current="$($CTR image inspect --format '{{ index .Config.Labels "fedge.hash" }}' "$IMAGE" 2>/dev/null || true)"
if [[ "$current" == "$hash" && "${FEDGE_IMAGE_REBUILD:-0}" != 1 ]]; then
  log "$IMAGE is up to date (hash $hash)"
  exit 0
fi

start=$(date +%s)
if [[ "$SOURCE" == registry ]]; then
  log "building $IMAGE from debian:bookworm (Dockerfile)"
  $CTR build --label "fedge.hash=$hash" -t "$IMAGE" -f "$HERE/Dockerfile" "$HERE"
else
  if ! $CTR image exists "$ROOTFS_IMAGE" 2>/dev/null && ! $CTR image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
    rootfs="$(mktemp -d /var/tmp/fedge-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase bookworm (about 2-4 minutes)"
    debootstrap --variant=minbase --include=python3 bookworm "$rootfs" "$MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "importing the root file system as $ROOTFS_IMAGE"
    tar -C "$rootfs" -c . | $CTR import - "$ROOTFS_IMAGE" >/dev/null
  fi
  log "provisioning $IMAGE (systemd, Python, JRE, Mosquitto, chrony)"
  $CTR build --label "fedge.hash=$hash" --build-arg "BASE=$ROOTFS_IMAGE" -t "$IMAGE" -f "$HERE/Dockerfile" "$HERE"
fi
log "built $IMAGE in $(( $(date +%s) - start )) s"
