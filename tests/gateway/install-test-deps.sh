#!/usr/bin/env bash
# What the gateway and client tests run against a node, installed by
# tests/run.sh: wget, aria2c, headless Chromium, xfsprogs (the client's
# reflink test) and Ceph's monitor, OSD and radosgw (tests/s3) from Debian, and the real
# @huggingface/hub client from npm (pinned by package-lock.json) into
# BUILD/npm. Idempotent.
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
PKGS=(wget aria2 chromium fonts-dejavu-core xfsprogs ceph-mon ceph-osd radosgw ceph-common)
command -v node >/dev/null || PKGS+=(nodejs)
command -v npm >/dev/null || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing for the gateway tests: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
mkdir -p "$BUILD/npm"
if ! cmp -s "$HERE/package-lock.json" "$BUILD/npm/package-lock.json" ||
  [ ! -d "$BUILD/npm/node_modules/@huggingface/hub" ]; then
  cp "$HERE/package.json" "$HERE/package-lock.json" "$BUILD/npm/"
  (cd "$BUILD/npm" && npm ci --no-audit --no-fund --loglevel=error)
fi
