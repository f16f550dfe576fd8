#!/usr/bin/env bash
# Where the CPU goes when a frontend keeps its chunks in S3: one publish of a
# new model to a frontend on a fresh one-node Ceph, then one pull through a
# restarted frontend with its read cache empty, each with the CPU seconds
# that the client, the frontend, radosgw and the OSD used (/proc/PID/stat).
# Needs root (Ceph).   tests/bench/s3_cpu.sh [--size-mib N]  (256 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SIZE_MIB=256
[ "${1:-}" = --size-mib ] && SIZE_MIB=$2
[ "$(id -u)" = 0 ] || { echo "needs root (the Ceph daemons)" >&2; exit 2; }
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node
WORK=$(mktemp -d /var/tmp/cairn-s3cpu.XXXXXX)
export XDG_STATE_HOME=$WORK/state XDG_CACHE_HOME=$WORK/cache CAIRN_TRUST=$WORK/trust.root
NP=""
cleanup() {
  set +e
  [ -z "$NP" ] || { kill "$NP"; wait "$NP"; }
  "$REPO/deploy/ceph-local.sh" stop "$WORK/ceph" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"
bench_header
"$REPO/deploy/ceph-local.sh" start ceph --owner $$ --memory-mib $((SIZE_MIB * 4 + 2048)) >/dev/null
source ceph/env
bench_keys
"$BIN/tests/bench/gen_model" make big --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed 1 >/dev/null
start() {
  $NODE serve --data node --listen 127.0.0.1:0 --trust trust.root --chunks s3://cpu/m >node.out 2>node.log &
  NP=$!
  for _ in $(seq 200); do grep -q listening node.out 2>/dev/null && break; sleep 0.05; done
  GRPC=$(sed -n 's/^cairn-node listening on //p' node.out)
}
cpu() {  # NAME SECONDS per process of interest
  local p
  for p in "radosgw $(pgrep -x radosgw)" "ceph-osd $(pgrep -x ceph-osd)" "frontend $NP"; do
    set -- $p
    echo "$1 $(awk '{print $14 + $15}' /proc/"$2"/stat)"
  done
}
report() {  # report BEFORE AFTER CLIENT_TIMES
  join "$1" "$2" | awk '{ printf "  %s %.2f core-s\n", $1, ($3 - $2) / 100 }'
  awk '{ printf "  client %.2f core-s\n", $1 + $2 }' "$3"
}
start
cat big/* >/dev/null
cpu | sort >c0; t0=$(now)
/usr/bin/time -f "%U %S" -o client.t $CAIRN publish big --name acme/big --version 1 --key pub.key --node "$GRPC" >/dev/null
echo "publish of $SIZE_MIB MiB: $(since "$t0") s"; cpu | sort >c1; report c0 c1 client.t
kill "$NP"; wait "$NP" || true
rm -rf node/s3-cache
start
cpu | sort >c0; t0=$(now)
/usr/bin/time -f "%U %S" -o client.t $CAIRN pull acme/big --node "$GRPC" --out out --store st --progress none >/dev/null
echo "pull, read cache cold: $(since "$t0") s"; cpu | sort >c1; report c0 c1 client.t
cmp -s out/model-00001-of-00002.safetensors big/model-00001-of-00002.safetensors || { echo "pull differs" >&2; exit 1; }
