#!/usr/bin/env bash
# The S3 chunk store against plain S3 requests for the same bytes, on a
# one-node Ceph (deploy/ceph-local.sh: memstore OSD, radosgw) in the same run,
# median of 3, order alternated (issue 17):
#   1. ingest: `cairn publish` of a new model to a frontend whose chunks go to
#      the bucket (client chunking and hashing, node verify, packs, PUTs,
#      commit) against PUTs of the same bytes in pack-sized objects (16 MiB)
#      with curl (libcurl, SigV4), 4 at once like the frontend's uploaders
#   2. pull through a frontend (`cairn pull --out`, every chunk verified),
#      with the frontend's read cache cold (a fresh frontend each time,
#      following the publisher) and then warm, against ranged GETs of the
#      same pack objects in 4 MiB pieces with curl, 4 at once, written to disk
#   3. 32 concurrent pulls of a 32 MiB model: from two frontends (16 each)
#      against all from one
# Needs root (the Ceph daemons). Goals: 1 and 2 >= 0.8 x; 3 >= 1.6 x where
# the cluster is not the bottleneck.
#
#   tests/bench/s3.sh [--size-mib N]   (512 by default: two shards of N/2)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SIZE_MIB=512
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (the Ceph daemons)" >&2; exit 2; }
deploy/install-deps.sh
command -v radosgw >/dev/null || tests/gateway/install-test-deps.sh "${CAIRN_BUILD_DIR:-build}"
deploy/build.sh cairn cairn-node gen_model
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node GEN=$BIN/tests/bench/gen_model
WORK=$(mktemp -d /var/tmp/cairn-s3bench.XXXXXX)
export XDG_STATE_HOME=$WORK/state XDG_CACHE_HOME=$WORK/cache CAIRN_TRUST=$WORK/trust.root
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  "$REPO/deploy/ceph-local.sh" stop "$WORK/ceph" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"
bench_header
"$REPO/deploy/ceph-local.sh" start ceph --owner $$ --memory-mib $((SIZE_MIB * 12 + 2048)) >/dev/null
source ceph/env
bench_keys
"$GEN" make big --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed 1 >/dev/null
"$GEN" make small --shards 1 --shard-mib 32 --seed 2 >/dev/null
BYTES=$(du -sb --apparent-size big | cut -f1)
S3CURL=(curl -sf --aws-sigv4 "aws:amz:$CAIRN_S3_REGION:s3" --user "$CAIRN_S3_ACCESS_KEY:$CAIRN_S3_SECRET_KEY"
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
"${S3CURL[@]}" -X PUT "$CAIRN_S3_ENDPOINT/raw" >/dev/null

# frontend NAME [serve options]: a node on data dir NAME; sets NAME_GRPC.
frontend() {
  local name=$1; shift
  $NODE serve --data "$name" --listen 127.0.0.1:0 --trust trust.root "$@" >"$name.out" 2>"$name.log" &
  PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  for _ in $(seq 400); do grep -q listening "$name.out" 2>/dev/null && break; sleep 0.05; done
  grep -q listening "$name.out" || { echo "frontend $name did not start: $(tail -3 "$name.log")" >&2; exit 1; }
  printf -v "${name}_GRPC" %s "$(sed -n 's/^cairn-node listening on //p' "$name.out")"
}
stop() { local v="${1}_PID"; kill "${!v}"; wait "${!v}" 2>/dev/null || true; }
held() {  # held GRPC NAME: until the node lists NAME (30 s)
  for _ in $(seq 300); do $CAIRN ls "$2" --node "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no $2 on $1" >&2; exit 1
}
warm() { cat big/* small/* >/dev/null; }

echo; echo "## 1. ingest of $BYTES bytes: cairn publish to an S3 frontend vs curl PUT of 16 MiB objects, 4 at once"
mkdir parts && cat big/* | split -b 16M - parts/p.
: >t_pub; : >t_put
for i in 1 2 3; do
  order=$([ $((i % 2)) = 1 ] && echo "cairn raw" || echo "raw cairn")
  for m in $order; do
    warm
    if [ "$m" = cairn ]; then
      frontend "p$i" --chunks "s3://bench/run$i"
      t0=$(now)
      $CAIRN publish big --name acme/big --version 1 --key pub.key --node "$(eval echo \$p${i}_GRPC)" >/dev/null
      since "$t0" >>t_pub
      [ $i = 1 ] || stop "p$i"
    else
      t0=$(now)
      ls parts | xargs -P 4 -I{} "${S3CURL[@]}" -T "parts/{}" "$CAIRN_S3_ENDPOINT/raw/run$i/{}" >/dev/null
      since "$t0" >>t_put
    fi
  done
done
TP=$(median t_pub) TR=$(median t_put)
echo "cairn publish $(gbps "$BYTES" "$TP") GB/s ($(xargs <t_pub) s), curl PUT $(gbps "$BYTES" "$TR") GB/s ($(xargs <t_put) s): ratio $(ratio "$TR" "$TP") x (goal >= 0.8)"

# The pack objects the first publish wrote, as 4 MiB ranges.
"${S3CURL[@]}" "$CAIRN_S3_ENDPOINT/bench?list-type=2&prefix=run1%2Fpacks%2F" >list.xml
grep -o '<Key>[^<]*</Key><LastModified>[^<]*</LastModified><ETag>[^<]*</ETag><Size>[0-9]*' list.xml |
  sed 's/<Key>\([^<]*\)<.*<Size>\([0-9]*\)/\1 \2/' >packs.txt
[ -s packs.txt ] || { echo "no pack objects listed: $(head -c 300 list.xml)" >&2; exit 1; }
awk '{ for (o = 0; o < $2; o += 4194304) { e = o + 4194303; if (e >= $2) e = $2 - 1; print $1, o "-" e } }' packs.txt >ranges.txt
raw_get() {
  rm -rf got && mkdir got
  awk '{ print NR, $1, $2 }' ranges.txt |
    xargs -P 4 -n 3 sh -c '"$0" "$@"' "$WORK/get1.sh"
}
cat >get1.sh <<EOF
#!/bin/sh
exec $(printf '%q ' "${S3CURL[@]}") -r "\$3" -o "$WORK/got/\$1" "$CAIRN_S3_ENDPOINT/bench/\$2"
EOF
chmod +x get1.sh

echo; echo "## 2. pull of $BYTES bytes through a frontend vs ranged GETs of its pack objects (4 MiB, 4 at once)"
N=0
pull_cold() {
  N=$((N + 1))
  frontend "c$N" --chunks s3://bench/run1 --upstream "$p1_GRPC"
  held "$(eval echo \$c${N}_GRPC)" acme/big
  rm -rf out st
  t0=$(now)
  $CAIRN pull acme/big --node "$(eval echo \$c${N}_GRPC)" --out out --store st --progress none >/dev/null
  since "$t0" >>t_cold
  cmp -s out/model-00001-of-00002.safetensors big/model-00001-of-00002.safetensors ||
    { echo "pull differs" >&2; exit 1; }
  [ $N = 3 ] || stop "c$N"
}
: >t_cold; : >t_raw
for i in 1 2 3; do
  order=$([ $((i % 2)) = 1 ] && echo "cairn raw" || echo "raw cairn")
  for m in $order; do
    warm
    if [ "$m" = cairn ]; then pull_cold; else t0=$(now); raw_get; since "$t0" >>t_raw; fi
  done
done
TC=$(median t_cold) TR=$(median t_raw)
echo "cold cache: cairn pull $(gbps "$BYTES" "$TC") GB/s ($(xargs <t_cold) s), curl ranged GETs $(gbps "$BYTES" "$TR") GB/s ($(xargs <t_raw) s): ratio $(ratio "$TR" "$TC") x (goal >= 0.8)"
pull_warm() { rm -rf out st; $CAIRN pull acme/big --node "$c3_GRPC" --out out --store st --progress none >/dev/null; }
raw_timed() { raw_get; }
alternate t_warm pull_warm t_raw2 raw_timed
TW=$(median t_warm) TR=$(median t_raw2)
echo "warm cache: cairn pull $(gbps "$BYTES" "$TW") GB/s ($(xargs <t_warm) s), curl ranged GETs $(gbps "$BYTES" "$TR") GB/s ($(xargs <t_raw2) s): ratio $(ratio "$TR" "$TW") x (goal >= 0.8)"
rm -rf out st got

echo; echo "## 3. 32 concurrent pulls of a 32 MiB model: two frontends (16 each) vs one (warm caches)"
$CAIRN publish small --name acme/small --version 1 --key pub.key --node "$p1_GRPC" >/dev/null
frontend f2 --chunks s3://bench/run1 --upstream "$p1_GRPC"
held "$c3_GRPC" acme/small
held "$f2_GRPC" acme/small
many() {  # many ADDR_A ADDR_B: 32 pulls, alternately from A and B
  rm -rf m && mkdir m
  local pids=() k
  for k in $(seq 32); do
    local addr=$1; [ $((k % 2)) = 0 ] && addr=$2
    $CAIRN pull acme/small --node "$addr" --out "m/o$k" --store "m/s$k" --progress none >/dev/null &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k"; done
}
many "$c3_GRPC" "$f2_GRPC"  # both caches warm
one() { many "$c3_GRPC" "$c3_GRPC"; }
two() { many "$c3_GRPC" "$f2_GRPC"; }
warm() { cat small/* >/dev/null; }
alternate t_two two t_one one
SMALL=$(( $(du -sb --apparent-size small | cut -f1) * 32 ))
T2=$(median t_two) T1=$(median t_one)
echo "two frontends $(gbps "$SMALL" "$T2") GB/s ($(xargs <t_two) s), one $(gbps "$SMALL" "$T1") GB/s ($(xargs <t_one) s): ratio $(ratio "$T1" "$T2") x (goal >= 1.6 where the cluster is not the bottleneck)"
rm -rf m
