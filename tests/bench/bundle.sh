#!/usr/bin/env bash
# Offline bundles against tar, on the same disk in the same run (median of 3,
# order alternated, page cache warm for both sources):
#   1. export of a 4 GiB release (4 x 1 GiB safetensors-shaped shards) from a
#      node: `cairn export --node` (gRPC from the node's packs, every chunk
#      hashed on the way, synced) vs `tar -cf` of the same files + `sync FILE`
#   1b. the same export from the stopped node's data (`cairn-node export`)
#   2. import of that bundle into a stopped node: `cairn-node import` (every
#      chunk hashed against its digest, every object verified, synced,
#      committed) vs `tar -xf` into an empty folder + `sync -f`
# Goal for both: >= 0.8 x tar.
#
#   tests/bench/bundle.sh [--shard-mib N]   (1024 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SHARD_MIB=1024
while [ $# -gt 0 ]; do
  case "$1" in
    --shard-mib) SHARD_MIB=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
deploy/build.sh cairn cairn-node gen_model
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node GEN=$BIN/tests/bench/gen_model
WORK=$(mktemp -d /var/tmp/cairn-bundlebench.XXXXXX)  # on disk, not tmpfs
export XDG_STATE_HOME=$WORK/state CAIRN_TRUST=$WORK/trust.root
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"
start_node() {  # start_node DIR: sets ADDR, PIDS
  $NODE serve --data "$1" --listen 127.0.0.1:0 --trust trust.root >"$1.out" 2>"$1.log" &
  PIDS+=($!)
  for _ in $(seq 400); do grep -q 'listening on' "$1.out" 2>/dev/null && break; sleep 0.05; done
  grep -q 'listening on' "$1.out" || { echo "the node did not start: $(cat "$1.log")" >&2; exit 1; }
  ADDR=$(sed -n 's/^cairn-node listening on //p' "$1.out")
}
stop_last() { local p=${PIDS[-1]}; kill "$p"; wait "$p" 2>/dev/null || true; unset 'PIDS[-1]'; }

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(df -T "$WORK" | awk 'NR==2 {print $2}')"
echo "# date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$REPO" rev-parse --short HEAD)"
$CAIRN keygen --out root.key >/dev/null; $CAIRN keygen --out pub.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace acme --publisher pub.key.pub >/dev/null
"$GEN" make big --shards 4 --shard-mib "$SHARD_MIB" --seed 1 >/dev/null
BYTES=$(du -sb --apparent-size big | cut -f1)
start_node a
A=$ADDR
$CAIRN publish big --name acme/big --version 1 --key pub.key --node "$A" >/dev/null

# Before each timed export both outputs are removed (untimed): only the side
# being measured holds a 4 GiB output in the page cache, beside the sources
# and the packs, and both write into the pages just freed. With both outputs
# kept (the first version of this script) sources, packs, bundle and tar file
# were 16 GiB of the 24, and whichever side ran second found its sources
# partly evicted.
warm() {
  rm -f b.cairn b.tar
  cat big/* >/dev/null
  cat a/chunks/packs/* >/dev/null 2>&1 || true
}
do_export() { $CAIRN export acme/big@1 --node "$A" --to b.cairn >/dev/null; }
do_tar_c() { tar -cf b.tar -C big . && sync b.tar; }
echo; echo "## 1. export of $BYTES bytes: cairn export --node vs tar -cf (median of 3, alternating)"
warm; do_export; do_tar_c  # warm
alternate t_exp do_export t_tar do_tar_c
TE=$(median t_exp) TT=$(median t_tar)
echo "cairn export $(gbps "$BYTES" "$TE") GB/s ($(xargs <t_exp) s), tar -cf $(gbps "$BYTES" "$TT") GB/s ($(xargs <t_tar) s): ratio $(ratio "$TT" "$TE") x (goal >= 0.8)"

# The same export from the stopped node's own data (cairn-node export: packs
# read directly, each chunk hashed), against tar again.
stop_last
do_export_off() { $NODE export acme/big@1 --data a --trust trust.root --to b.cairn >/dev/null; }
echo; echo "## 1b. the same from the stopped node's data: cairn-node export vs tar -cf (median of 3, alternating)"
warm; do_export_off  # warm
alternate t_exp2 do_export_off t_tar2 do_tar_c
TE=$(median t_exp2) TT=$(median t_tar2)
echo "cairn-node export $(gbps "$BYTES" "$TE") GB/s ($(xargs <t_exp2) s), tar -cf $(gbps "$BYTES" "$TT") GB/s ($(xargs <t_tar2) s): ratio $(ratio "$TT" "$TE") x (goal >= 0.8)"

# The import reads both outputs: make the one the last round removed.
[ -f b.cairn ] || do_export_off
[ -f b.tar ] || do_tar_c
# Fresh node data directories to import into (made by starting a node).
for i in 1 2 3 4; do start_node "n$i"; stop_last; done
# Each side first removes what its previous run wrote, so that both write
# into pages just freed (on this VM, writing into fresh page cache costs 4x:
# ../shared/LIMITS.md); the previous import's data directory is in PREV.
PREV=""
do_import() {  # do_import I
  [ -z "$PREV" ] || rm -rf "$PREV"; PREV=n$1
  $NODE import --data "n$1" --trust trust.root b.cairn >"imp$1.out"
  grep -q "imported acme/big@1" "imp$1.out" || { echo "import $1: $(cat "imp$1.out")" >&2; exit 1; }
}
do_tar_x() { rm -rf x && mkdir x && tar -xf b.tar -C x && sync -f x; }
N_IMPORT=0
do_import_next() { N_IMPORT=$((N_IMPORT + 1)); do_import "$N_IMPORT"; }
echo; echo "## 2. import of the bundle into a stopped node: cairn-node import vs tar -xf (median of 3, alternating)"
cat b.cairn b.tar >/dev/null
do_import 4; PREV=n4; do_tar_x  # warm
warm() { cat b.cairn b.tar >/dev/null; }
alternate t_imp do_import_next t_untar do_tar_x
TI=$(median t_imp) TU=$(median t_untar)
echo "cairn-node import $(gbps "$BYTES" "$TI") GB/s ($(xargs <t_imp) s), tar -xf $(gbps "$BYTES" "$TU") GB/s ($(xargs <t_untar) s): ratio $(ratio "$TU" "$TI") x (goal >= 0.8)"
