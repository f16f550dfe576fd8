#!/usr/bin/env bash
# The node's gRPC read path under load (issue 15), with the project's own
# load generator (tests/bench/grpc_load.cc) sharing the machine's cores:
#   1. Registry.Resolve of a tag, 32, 64 and 200 calls in flight
#   2. Chunks.GetMany, 16 streams, one chunk a request and 16 a request
# Each for --seconds (10), three runs, the median run by calls/s printed.
#
#   tests/bench/rpc.sh [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SECONDS_EACH=10
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
deploy/build.sh cairn cairn-node gen_model grpc_load
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node LOAD=$BIN/tests/bench/grpc_load
WORK=$(mktemp -d /var/tmp/cairn-rpcbench.XXXXXX)
export XDG_STATE_HOME=$WORK/state XDG_CACHE_HOME=$WORK/cache
NODE_PID=
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"
bench_header
bench_keys
$BIN/tests/bench/gen_model make model --shards 2 --shard-mib 64 --seed 1 >/dev/null
bench_node
$CAIRN publish model --name acme/model --version 1 --key pub.key --node "$GRPC" >/dev/null
cat model/* >/dev/null; cat node/chunks/packs/* >/dev/null 2>&1 || true  # warm

# median_run ARGS...: three runs of the load generator, the median by calls/s
median_run() {
  local i
  for i in 1 2 3; do "$LOAD" --target "$GRPC" --ref acme/model:latest --seconds "$SECONDS_EACH" "$@"; done |
    awk '{ for (f = 1; f <= NF; f++) if ($f == "calls/s,") print $(f - 1) "\t" $0 }' | sort -g | sed -n 2p | cut -f2-
}
echo; echo "## 1. Resolve (goal: >= 20,000 calls/s with p99 < 5 ms, load generator included)"
for c in 32 64 200; do median_run --method resolve --concurrency "$c"; done
echo "(at 200 in flight, Little's law puts the mean wait at 200 / rate: above 5 ms below 40,000 calls/s)"
echo; echo "## 2. GetMany, 16 streams"
for b in 1 16; do median_run --method getmany --concurrency 16 --batch "$b"; done
