#!/usr/bin/env bash
# Cairn benchmarks, each against a reference tool on the same data in the same
# run, printing the ratio. Results go to stdout; copy them into
# docs/benchmarks.md with the machine they ran on.
#
#   tests/bench/run.sh [--size-mib N] [--rss-gib G] [--skip-rss]
#
# Default: a 1 GiB two-shard model for throughput, an 8 GiB model for peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SIZE_MIB=1024
RSS_GIB=8
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --rss-gib) RSS_GIB=$2; shift 2 ;;
    --skip-rss) RSS_GIB=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
if ! command -v nginx >/dev/null || ! [ -x /usr/bin/time ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx time >/dev/null
fi
deploy/build.sh cairn cairn-node gen_model chunking_bench store_bench
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn
NODE=$BIN/mirror-node/cairn-node
GEN=$BIN/tests/bench/gen_model

WORK=$(mktemp -d /var/tmp/cairn-bench.XXXXXX)  # on disk, not tmpfs
chmod 755 "$WORK"  # nginx workers read the model as an unprivileged user
NODE_PID="" NGINX_PID=""
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
gbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
jqr() { jq -r "$1" "$2"; }

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$REPO" rev-parse --short HEAD)"

echo; echo "## chunking (dedup and throughput)"
"$BIN/tests/bench/chunking_bench"
echo; echo "## ingest: chunk + hash + store, pack files vs BlobDB (on disk: $WORK)"
TMPDIR=$WORK "$BIN/tests/bench/store_bench" "$SIZE_MIB"

echo; echo "## setup: ${SIZE_MIB} MiB model in two safetensors shards"
"$GEN" make model --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed 1
BYTES=$(du -cb model/*.safetensors | tail -1 | cut -f1)
$CAIRN keygen --out root.key >/dev/null; $CAIRN keygen --out pub.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace bench --publisher pub.key.pub >/dev/null
# With its HTTP gateway beside the gRPC port, as deploy/node.toml runs it:
# pulls then fetch chunks with POST /v1/chunks (sendfile on the node).
$NODE serve --data node --listen 127.0.0.1:0 --http 127.0.0.1:0 --trust trust.root >node.out 2>node.log &
NODE_PID=$!
for _ in $(seq 100); do grep -q listening node.out && break; sleep 0.1; done
ADDR=$(sed -n 's/^cairn-node listening on //p' node.out)
export CAIRN_NODE=$ADDR CAIRN_TRUST=$WORK/trust.root

T0=$(now); $CAIRN publish model --name bench/base --version 1 --key pub.key --json >pub.json; T1=$(now)
BASE=$(jqr .manifest pub.json)
echo "publish (client chunk+hash, upload, node verify+store+fsync, commit), end to end: $(gbps "$BYTES" "$(echo "$T1 - $T0" | bc)") GB/s"

# Publish of a model the node has never seen against `dd conv=fdatasync` of
# the same bytes on the same disk (issue 15's reference): three new models,
# page cache warm, order alternated, medians.
: >t_pub; : >t_dd
for i in 1 2 3; do
  "$GEN" make "new$i" --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed $((100 + i)) >/dev/null
  cat "new$i"/* >/dev/null
  order="pub dd"; [ $((i % 2)) = 0 ] && order="dd pub"
  for who in $order; do
    rm -f dd.out; sync
    T0=$(now)
    if [ $who = pub ]; then $CAIRN publish "new$i" --name "bench/new$i" --version 1 --key pub.key >/dev/null
    else cat "new$i"/*.safetensors | dd of=dd.out bs=64K conv=fdatasync status=none; fi
    echo "$(now) - $T0" | bc >>t_$who
  done
  rm -rf "new$i" dd.out
done
P=$(median <t_pub); D=$(median <t_dd)
echo "publish of a new model: $(gbps "$BYTES" "$P") GB/s ($P s), dd conv=fdatasync $(gbps "$BYTES" "$D") GB/s ($D s): ratio $(ratio "$D" "$P")x (goal >= 0.8)"

# nginx serving the same files.
source "$REPO/deploy/ports.sh"
PORT=$(free_port)
mkdir -p nginx/logs
cat >nginx/nginx.conf <<NGX
daemon off; worker_processes 1; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log;
events { worker_connections 64; }
http { access_log off; sendfile on; server { listen 127.0.0.1:$PORT; root $WORK/model; } }
NGX
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/config.json" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/config.json" || { cat nginx/error.log; echo "nginx did not serve the model" >&2; exit 1; }
SHARDS=$(cd model && ls *.safetensors)
cat model/*.safetensors >/dev/null; cat node/chunks/packs/* >/dev/null  # both warm

echo; echo "## pull over loopback, verified and written to disk (median of 5, warm page cache)"
# Each pull against curl of the same files, their order alternated (whichever
# writes first into fresh page cache pays for it on this kind of VM).
curl_tree() {  # curl_tree DIR [sha]: nginx -> curl -o of both shards into DIR (made empty)
  for s in $SHARDS; do
    curl -sf -o "$1/$s" "http://127.0.0.1:$PORT/$s"
    if [ -n "${2:-}" ]; then sha256sum "$1/$s" >/dev/null; fi
  done
}
# timed FILE CMD...: appends CMD's wall time to FILE. The trees a command
# writes are removed (and the removal written back) before the clock starts:
# freeing a GiB of page cache takes seconds on this VM, and counting it
# measured the removal, not the download.
timed() {
  local t0 t1
  rm -rf c cs p cache && mkdir c cs && sync
  t0=$(now); "${@:2}"; t1=$(now)
  echo "$t1 - $t0" | bc >>"$1"
}
pull_tree() { $CAIRN pull bench/base --out p --store cache --json "$@" >pull.json; }
pair() {  # pair CAIRN_TIMES CURL_TIMES [pull args]: one of each, order by round
  if [ $((i % 2)) = 1 ]; then
    timed "$2" curl_tree c; timed "$1" pull_tree "${@:3}"
  else
    timed "$1" pull_tree "${@:3}"; timed "$2" curl_tree c
  fi
}
# Median of 5, not 3: single runs on this VM range from 1 s to 9 s for the
# same download while the host reclaims memory (both tools alike).
ROUNDS=5
for i in $(seq $ROUNDS); do pair t_cairn_nofsync t_curl; done
cmp p/$(echo "$SHARDS" | head -1) model/$(echo "$SHARDS" | head -1)
for i in $(seq $ROUNDS); do pair t_cairn t_curl_f --fsync; done
for i in 1 2 3; do timed t_curlsha curl_tree cs sha; done
TC=$(median <t_curl); TCF=$(median <t_curl_f); TS=$(median <t_curlsha)
TP=$(median <t_cairn); TN=$(median <t_cairn_nofsync)
echo "nginx -> curl -o (2 shards):          $(gbps "$BYTES" "$TC") GB/s (beside --fsync: $(gbps "$BYTES" "$TCF"))"
echo "curl -o && sha256sum:                 $(gbps "$BYTES" "$TS") GB/s"
echo "cairn pull (verified, default):      $(gbps "$BYTES" "$TN") GB/s   ratio vs nginx->curl $(ratio "$TC" "$TN")x (goal >= 0.8), vs curl&&sha256sum $(ratio "$TS" "$TN")x (goal >= 3)"
echo "cairn pull (verified, --fsync):       $(gbps "$BYTES" "$TP") GB/s   ratio vs nginx->curl beside it $(ratio "$TCF" "$TP")x"

# The same pulls over gRPC only (a node without its gateway: GetMany).
kill "$NODE_PID"; wait "$NODE_PID" || true
$NODE serve --data node --listen "$ADDR" --trust trust.root >node.out 2>>node.log &
NODE_PID=$!
for _ in $(seq 100); do grep -q listening node.out 2>/dev/null && break; sleep 0.1; done
for i in $(seq $ROUNDS); do pair t_cairn_grpc t_curl2; done
TG=$(median <t_cairn_grpc); TC2=$(median <t_curl2)
echo "cairn pull over gRPC (GetMany):       $(gbps "$BYTES" "$TG") GB/s   ratio vs nginx->curl beside it ($(gbps "$BYTES" "$TC2") GB/s) $(ratio "$TC2" "$TG")x"

# The same pulls with the node re-hashing each chunk it serves (--verify-reads,
# the default before the scrub): the cost of that option.
kill "$NODE_PID"; wait "$NODE_PID" || true
$NODE serve --data node --listen "$ADDR" --trust trust.root --verify-reads >node.out 2>>node.log &
NODE_PID=$!
for _ in $(seq 100); do grep -q listening node.out 2>/dev/null && break; sleep 0.1; done
for i in 1 2 3; do pair t_cairn_v t_curl3; done
TV=$(median <t_cairn_v); TC3=$(median <t_curl3)
echo "cairn pull over gRPC, node --verify-reads: $(gbps "$BYTES" "$TV") GB/s   ratio vs nginx->curl beside it $(ratio "$TC3" "$TV")x"
kill "$NODE_PID"; wait "$NODE_PID" || true
: >node.out
$NODE serve --data node --listen "$ADDR" --trust trust.root >node.out 2>>node.log &
NODE_PID=$!
for _ in $(seq 100); do grep -q listening node.out 2>/dev/null && break; sleep 0.1; done

echo; echo "## derivative: 10% of tensor bytes changed in place"
cp -r model ft
CHANGED=0
SEED=7
for s in $SHARDS; do CHANGED=$((CHANGED + $("$GEN" mutate "ft/$s" --fraction 0.10 --seed $SEED))); SEED=$((SEED + 1)); done
$CAIRN publish ft --name bench/ft --version 1 --key pub.key --base "bench/base@$BASE" --json >pubft.json
rm -rf p; $CAIRN pull bench/base --out p --store cache2 --json  >/dev/null
$CAIRN pull bench/ft --out pft --store cache2 --json  >pullft.json
UP=$(jqr .bytes_uploaded pubft.json); FE=$(jqr .bytes_fetched pullft.json); TOT=$(jqr .bytes_total pullft.json)
echo "changed bytes: $CHANGED of $TOT ($(awk -v c="$CHANGED" -v t="$TOT" 'BEGIN {printf "%.1f%%", 100*c/t}'))"
echo "uploaded: $UP bytes = $(ratio "$UP" "$CHANGED") x changed (goal <= 1.02 + manifest); $(awk -v u="$UP" -v t="$TOT" 'BEGIN {printf "%.2f%%", 100*u/t}') of the model (goal <= 12%)"
echo "fetched:  $FE bytes = $(ratio "$FE" "$CHANGED") x changed; $(awk -v u="$FE" -v t="$TOT" 'BEGIN {printf "%.2f%%", 100*u/t}') of the model"

echo; echo "## resume after a cut at 50% (goal: re-sent <= the bytes in flight + one chunk)"
# The pull is killed at half the median time of a whole one (the managed
# store writes chunks straight into the files, which are preallocated, so
# their size says nothing). What the node sent twice: its HTTP chunk bytes
# (metrics) and its gRPC chunk bytes (log) over both runs, less the model.
HTTP=$(sed -n 's/^cairn-node http on //p' node.out)
sent() {
  local h=0 g
  [ -n "$HTTP" ] && h=$(curl -s "http://$HTTP/metrics" | awk '/^cairn_http_bytes_sent_total\{source="store"\}/ { print $2 }')
  g=$({ grep -o 'served [0-9]* chunks, [0-9]* bytes' node.log || true; } | awk '{ s += $4 } END { printf "%.0f\n", s }')
  echo $((${h:-0} + g))
}
rm -rf p cache3; S0=$(sent)
$CAIRN pull bench/base --out p --store cache3 --json >/dev/null 2>&1 &
PULL=$!
sleep "$(awk -v t="$TN" 'BEGIN { printf "%.2f", t / 2 }')"
kill -9 $PULL 2>/dev/null || true; wait $PULL 2>/dev/null || true
$CAIRN pull bench/base --out p --store cache3 --json >resume.json
cmp p/$(echo "$SHARDS" | head -1) model/$(echo "$SHARDS" | head -1)
sleep 0.5
TWICE=$(($(sent) - S0 - $(jqr .bytes_total resume.json)))
echo "resumed pull: fetched $(jqr .chunks_fetched resume.json) chunks, $(jqr .chunks_local resume.json) already local"
echo "re-sent after the cut: $TWICE bytes; the resumed pull's peak in flight (asked, or arrived and waiting for its turn): $(jqr .peak_in_flight resume.json) bytes (cap: 4 x the streams' windows), rtt $(jqr '.nodes[0].rtt_ms' resume.json) ms, $(jqr '.nodes[0].rate' resume.json) B/s; plus the file writer's 1 MiB batch and one chunk"

if [ "$RSS_GIB" -gt 0 ]; then
  echo; echo "## peak RSS on a ${RSS_GIB} GiB model (goal <= 256 MiB each)"
  "$GEN" make big --shards 4 --shard-mib $((RSS_GIB * 256)) --seed 3
  /usr/bin/time -f "%M" -o rss_pub $CAIRN publish big --name bench/big --version 1 --key pub.key --json >pubbig.json
  rm -rf p cache
  /usr/bin/time -f "%M" -o rss_pull $CAIRN pull bench/big --out pbig --store cache4 --json  >pullbig.json
  NODE_RSS=$(awk '/VmHWM/ {print $2}' /proc/$NODE_PID/status)
  echo "cairn publish: $(( $(tail -1 rss_pub) / 1024 )) MiB   ($(jqr .bytes_total pubbig.json) bytes in $(jqr .seconds pubbig.json)s)"
  echo "cairn pull:    $(( $(tail -1 rss_pull) / 1024 )) MiB   ($(jqr .bytes_total pullbig.json) bytes in $(jqr .seconds pullbig.json)s)"
  echo "cairn-node:    $(( NODE_RSS / 1024 )) MiB (VmHWM over the whole run, serving and ingesting)"
fi


# Two thin lossy links against one: the speed ratio the suite's net.two_links
# no longer asserts (it only prints it; a loaded machine measured 1.11x).
if [ "$(id -u)" = 0 ]; then
  echo; echo "## two mirrors over thin lossy links vs one (goal >= 1.5x goodput, asserted >= 1.3x)"
  ninja -C "$BIN" cairn-wire >/dev/null
  MIN_GOODPUT=1.3 bash "$REPO/tests/net/two_links.sh" "$BIN" | grep -E "ratio|PASS|FAIL"
fi
echo; echo "bench done"
