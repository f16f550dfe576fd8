#!/usr/bin/env bash
# Garbage collection and scrub on a real node on disk, each figure beside its
# reference in the same run:
#   1. a GC pass over a node holding 100 releases and as many bytes again of
#      garbage (an upload killed before its commit): time, chunks and bytes
#      removed, disk given back (`du` of the packs before and after)
#   2. a verified pull of a 512 MiB release to disk while such a pass runs
#      (started with the pull), against the same pull with no pass; warm page
#      cache, order alternated, median of 3 (goal >= 0.8 x)
#   3. the scrub's real rate on this disk at a cap of 128 MiB/s (goal: within
#      10 % of the cap)
#
#   tests/bench/gc.sh [--release-mib N]   (8 MiB per release by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
RELEASE_MIB=8
while [ $# -gt 0 ]; do
  case "$1" in
    --release-mib) RELEASE_MIB=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
deploy/build.sh cairn cairn-node gen_model
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node GEN=$BIN/tests/bench/gen_model
WORK=$(mktemp -d /var/tmp/cairn-gcbench.XXXXXX)  # on disk, not tmpfs
export XDG_STATE_HOME=$WORK/state CAIRN_TRUST=$WORK/trust.root
NODE_PID=""
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"
start_node() {  # start_node [scrub cap, bytes/s; 0: off]
  printf '[node]\ngc_grace_hours = 0\ngc_interval_hours = 0\nscrub_bytes_per_second = %s\n' "${1:-0}" >node.toml
  $NODE serve --data node --listen 127.0.0.1:0 --trust trust.root --config node.toml >node.out 2>node.log &
  NODE_PID=$!
  for _ in $(seq 400); do grep -q 'listening on' node.out 2>/dev/null && break; sleep 0.05; done
  grep -q 'listening on' node.out || { echo "the node did not start: $(cat node.log)" >&2; exit 1; }
  export CAIRN_NODE=$(sed -n 's/^cairn-node listening on //p' node.out)
}
stop_node() { kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=""; }
store_bytes() { sync; du -s --block-size=1 node/chunks/packs | cut -f1; }  # disk used: holes excluded
# garbage MIB: an upload of MIB new bytes killed once 90 % arrived, then a
# restart (a restart forgets what clients were told, so it is collectable).
garbage() {
  rm -rf junk && mkdir junk && head -c $(($1 << 20)) /dev/urandom >junk/w.bin
  local start; start=$(store_bytes)
  $CAIRN publish junk --name acme/junk --version "j$RANDOM$RANDOM" --key pub.key >/dev/null 2>&1 &
  local pub=$!
  while [ $(($(store_bytes) - start)) -lt $(($1 * 943718)) ] && kill -0 "$pub" 2>/dev/null; do sleep 0.05; done
  kill -9 "$pub" 2>/dev/null || true
  wait "$pub" 2>/dev/null || true
  stop_node
  start_node
}

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(df -T "$WORK" | awk 'NR==2 {print $2}')"
echo "# date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$REPO" rev-parse --short HEAD)"
$CAIRN keygen --out root.key >/dev/null; $CAIRN keygen --out pub.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace acme --publisher pub.key.pub >/dev/null
start_node
for i in $(seq 100); do
  rm -rf r && mkdir r && head -c $((RELEASE_MIB << 20)) /dev/urandom >r/w.bin
  $CAIRN publish r --name acme/r --version "$i" --key pub.key >/dev/null
done
"$GEN" make big --shards 1 --shard-mib 512 --seed 1 >/dev/null
$CAIRN publish big --name acme/big --version 1 --key pub.key >/dev/null
LIVE=$(store_bytes)

echo; echo "## 1. one GC pass: 100 releases of $RELEASE_MIB MiB and a 512 MiB one, plus $((100 * RELEASE_MIB)) MiB of garbage"
garbage $((100 * RELEASE_MIB))
BEFORE=$(store_bytes)
T0=$(now); $NODE gc --data node >gc.out; TG=$(since "$T0")
AFTER=$(store_bytes)
echo "store $BEFORE -> $AFTER bytes (live data alone: $LIVE); pass took ${TG}s wall: $(sed 's/^[^:]*: //' gc.out)"

echo; echo "## 2. verified pull of 512 MiB while a pass over $((100 * RELEASE_MIB)) MiB of fresh garbage runs vs without (median of 3, warm, alternating)"
BYTES=$(du -sb --apparent-size big | cut -f1)
pull() { rm -rf p st; $CAIRN pull acme/big@1 --out p --store st --json >/dev/null; }
pull  # warm
: >t_alone; : >t_gc; : >t_pass
for i in 1 2 3; do
  for mode in $( [ $((i % 2)) = 1 ] && echo "alone gc" || echo "gc alone"); do
    if [ "$mode" = alone ]; then
      T0=$(now); pull; since "$T0" >>t_alone
    else
      garbage $((100 * RELEASE_MIB))
      pull  # warm again after the restart
      T0=$(now)
      $NODE gc --data node >gc_during.out &
      GC=$!
      pull; since "$T0" >>t_gc
      wait "$GC"; since "$T0" >>t_pass
    fi
  done
done
TA=$(median t_alone) TW=$(median t_gc)
echo "pull alone $(gbps "$BYTES" "$TA") GB/s, during a GC pass $(gbps "$BYTES" "$TW") GB/s: ratio $(ratio "$TA" "$TW")x (goal >= 0.8); the passes ended $(xargs <t_pass) s after the pulls began (the pulls took $(xargs <t_gc) s)"

echo; echo "## 3. scrub rate on this disk at a 128 MiB/s cap"
stop_node
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
# The first pass starts at once on a node never scrubbed: time from the
# start to its end (the start itself takes a few ms).
T0=$(now)
start_node 134217728
for _ in $(seq 1200); do
  [ "$($CAIRN status --json | jq .scrub.passes)" -ge 1 ] && break
  sleep 0.1
done
TS=$(since "$T0")
SB=$($CAIRN status --json | jq .scrub.bytes_checked)
echo "scrubbed $SB bytes in ${TS}s: $(awk -v b="$SB" -v s="$TS" 'BEGIN { printf "%.1f", b / s / 1048576 }') MiB/s against a cap of 128 MiB/s ($(awk -v b="$SB" -v s="$TS" 'BEGIN { printf "%.2f", b / s / 134217728 }') x)"
