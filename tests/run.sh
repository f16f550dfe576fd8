#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite:
#   1. ctest on the normal build (unit, integration, network-namespace tests);
#   2. the unit and integration tests again under ASan + UBSan (build-asan/);
#   3. a clang build (build-fuzz/) that checks every library with
#      -Wthread-safety, then every libFuzzer target for FUZZ_SECONDS each
#      (default 20);
#   4. the container image (tests/deploy/container.sh: deploy/Containerfile
#      around build/'s binaries, run with podman).
# Exits non-zero on any failure. CAIRN_SKIP_ASAN=1 / CAIRN_SKIP_FUZZ=1 /
# CAIRN_SKIP_CONTAINER=1 skip steps 2 / 3 / 4 (for a quick local run; CI runs
# everything).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
tests/gateway/install-test-deps.sh "${CAIRN_BUILD_DIR:-build}"
ctest --test-dir "${CAIRN_BUILD_DIR:-build}" --output-on-failure -j 2 --timeout 600

if [ -z "${CAIRN_SKIP_ASAN:-}" ]; then
  echo "== unit and integration tests under ASan + UBSan"
  if [ ! -f build-asan/build.ninja ]; then
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCAIRN_SANITIZE=ON >/dev/null
  fi
  cmake --build build-asan -j "$(nproc)" --target registry_test node_test cli_test s3_store_test s3_fault_proxy cairn cairn-node
  tests/gateway/install-test-deps.sh build-asan
  # Child processes (cairn, cairn-node) run sanitized too; any report fails.
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    CAIRN_NO_REEXEC=1 ctest --test-dir build-asan --output-on-failure -j 2 --timeout 900 -E '^net\.'
fi

if [ -z "${CAIRN_SKIP_FUZZ:-}" ]; then
  echo "== clang -Wthread-safety build and fuzzing"
  tests/fuzz/run.sh
fi

if [ -z "${CAIRN_SKIP_CONTAINER:-}" ]; then
  echo "== the container image"
  tests/deploy/container.sh "${CAIRN_BUILD_DIR:-build}" || [ $? = 77 ]
fi
