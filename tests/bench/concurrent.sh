#!/usr/bin/env bash
# Many pulls at once against one node (issue 15): N clients (20) each pull
# the same model into their own store and --out tree at the same moment,
# against the same N pulls one after another (the same bytes written, so the
# same dirty-page writeback: N x 128 MiB passes the kernel's dirty limits,
# which one pull alone never meets); aggregate throughput = N x size / wall
# time. Median of 3 of each, order alternated, page cache warm on the node.
#
#   tests/bench/concurrent.sh [--size-mib 128] [--clients 20]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SIZE_MIB=128 CLIENTS=20
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
deploy/build.sh cairn cairn-node gen_model
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node
WORK=$(mktemp -d /var/tmp/cairn-concbench.XXXXXX)
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
$BIN/tests/bench/gen_model make model --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed 1 >/dev/null
bench_node
$CAIRN publish model --name acme/model --version 1 --key pub.key --node "$GRPC" >/dev/null
BYTES=$(du -sb model | cut -f1)
cat node/chunks/packs/* >/dev/null 2>&1 || true
export CAIRN_NODE=$GRPC CAIRN_TRUST=$WORK/trust.root

one() {
  rm -rf c1 && $CAIRN pull acme/model --out c1/out --store c1/store --progress none >/dev/null
}
many() {
  local i pids=()
  rm -rf cn
  for i in $(seq "$CLIENTS"); do
    $CAIRN pull acme/model --out "cn/$i/out" --store "cn/$i/store" --progress none ${PULL_ARGS:-} >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
seq_many() {
  local i
  rm -rf cs
  for i in $(seq "$CLIENTS"); do
    $CAIRN pull acme/model --out "cs/$i/out" --store "cs/$i/store" --progress none >/dev/null
  done
}
warm() { sync; }  # earlier rounds' dirty pages are not charged to the next
alternate t_one one t_none true
alternate t_seq seq_many t_many many
cmp c1/out/$(cd model && ls | head -1) model/$(cd model && ls | head -1)
for i in $(seq "$CLIENTS"); do cmp -s "cn/$i/out/config.json" model/config.json || { echo "client $i: config.json differs" >&2; exit 1; }; done
T1=$(median t_one); TS=$(median t_seq); TN=$(median t_many)
echo
echo "## $CLIENTS pulls at once against the same $CLIENTS one after another, ${SIZE_MIB} MiB model (median of 3, alternating)"
echo "one pull alone:            $T1 s, $(gbps "$BYTES" "$T1") GB/s"
echo "$CLIENTS pulls one after another: $TS s, $(gbps $((BYTES * CLIENTS)) "$TS") GB/s"
echo "$CLIENTS pulls at once:         $TN s, aggregate $(gbps $((BYTES * CLIENTS)) "$TN") GB/s"
echo "at once against one after another: $(ratio "$TS" "$TN")x (goal >= 1.0)"
