#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite (ctest).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
ctest --test-dir "${CAIRN_BUILD_DIR:-build}" --output-on-failure -j 2 --timeout 600
