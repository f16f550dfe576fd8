#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan + fuzzer coverage) in
# build-fuzz/ and runs each from its seed corpus (tests/fuzz/corpus/NAME) for
# FUZZ_SECONDS (default 20). Fails on any crash, leak, sanitizer report or
# timeout; the reproducer is left in build-fuzz/crashes/. The same clang build
# compiles cairn and cairn-node with -Wthread-safety -Werror=thread-safety.
#   tests/fuzz/run.sh [target...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
BUILD=${CAIRN_FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(objects trust keys paths config bundle)
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCAIRN_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
fi
# cairn and cairn-node too: this clang build is also the -Wthread-safety
# check of every library (an unannotated or unlocked access fails it).
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]/#/fuzz_}" cairn cairn-node
mkdir -p "$BUILD/crashes"
for t in "${TARGETS[@]}"; do
  work=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$t/." "$work/"  # the repo's corpus stays as committed
  echo "fuzz_$t: ${SECONDS_EACH}s from $(ls "$work" | wc -l) seeds"
  if ! "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -artifact_prefix="$BUILD/crashes/$t-" -print_final_stats=1 "$work" \
       >"$BUILD/fuzz_$t.log" 2>&1; then
    tail -40 "$BUILD/fuzz_$t.log"
    echo "FAIL: fuzz_$t crashed; reproducer in $BUILD/crashes/" >&2
    rm -rf "$work"
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$BUILD/fuzz_$t.log" | tr '\n' ' '; echo
  rm -rf "$work"
done
echo "fuzzing OK"
