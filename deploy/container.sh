#!/usr/bin/env bash
# Builds the node's container image from deploy/Containerfile, with podman
# (or docker when podman is missing).
#
#   deploy/container.sh [--tag NAME] [--base IMAGE] [--debootstrap] [--binaries BUILD_DIR]
#
#   --tag NAME        the image to make (default localhost/cairn-node:latest)
#   --base IMAGE      the Debian bookworm image to start from (default
#                     docker.io/library/debian:bookworm, pulled from its registry)
#   --debootstrap     for a machine that reaches Debian's package archive but no
#                     container registry: make the base image with debootstrap
#                     (as localhost/debian:bookworm, once) and use it
#   --binaries DIR    package cairn-node and cairn already built in DIR (by
#                     deploy/build.sh) instead of compiling them in the image
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=localhost/cairn-node:latest BASE=docker.io/library/debian:bookworm
DEBOOTSTRAP= BINARIES=
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --debootstrap) DEBOOTSTRAP=1; BASE=localhost/debian:bookworm; shift ;;
    --binaries) BINARIES=$(cd "$2" && pwd); shift 2 ;;
    *) echo "container.sh: unknown argument $1 (see the comment at its top)" >&2; exit 2 ;;
  esac
done
ENGINE=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$ENGINE" ] || { echo "container.sh: neither podman nor docker is installed (apt-get install podman)" >&2; exit 1; }

if [ -n "$DEBOOTSTRAP" ] && ! "$ENGINE" image inspect "$BASE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "container.sh: --debootstrap needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  ROOTFS=$(mktemp -d /var/tmp/cairn-rootfs.XXXXXX)
  trap 'rm -rf "$ROOTFS"' EXIT
  echo "container.sh: making $BASE with debootstrap" >&2
  debootstrap --variant=minbase bookworm "$ROOTFS" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$ROOTFS.log" 2>&1 \
    || { echo "container.sh: debootstrap failed; its log: $ROOTFS.log" >&2; exit 1; }
  rm -f "$ROOTFS.log"
  # Security and point-release updates too (the image's apt-get upgrade
  # takes them), as the registry's debian:bookworm has.
  M=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
    "$M" "$M" "$M" >"$ROOTFS/etc/apt/sources.list"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
fi

ARGS=(build -f deploy/Containerfile -t "$TAG" --build-arg "BASE=$BASE")
# Keep HEALTHCHECK (podman's default OCI format drops it); docker needs
# BuildKit for --build-context.
if [ "$(basename "$ENGINE")" = podman ]; then ARGS+=(--format docker); else export DOCKER_BUILDKIT=1; fi
if [ -n "$BINARIES" ]; then
  CTX=$(mktemp -d)
  trap 'rm -rf "$CTX"; [ -z "${ROOTFS:-}" ] || rm -rf "$ROOTFS"' EXIT
  install -D -s -m 0755 "$BINARIES/mirror-node/cairn-node" "$CTX/out/cairn-node"
  install -D -s -m 0755 "$BINARIES/client/cairn" "$CTX/out/cairn"
  ARGS+=(--build-context "bin=$CTX")
fi
"$ENGINE" "${ARGS[@]}" ${CONTAINER_BUILD_FLAGS:-} .
echo "container.sh: built $TAG"
