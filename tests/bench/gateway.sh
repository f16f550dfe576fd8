#!/usr/bin/env bash
# HTTP gateway benchmarks, each beside a reference in the same run:
#   1. GET of one 1 GiB file through the gateway (every chunk checked with the
#      CRC-32C recorded when its SHA-256 was verified on arrival, the default)
#      vs nginx (sendfile) serving the same file; curl -o /dev/null, warm page
#      cache for both, order alternated, median of 3
#   2. a whole snapshot (two shards and small files) through the Hub resolve
#      endpoint vs nginx, the same way
#   1c, 2c. both again with [http] verify_reads_with = "sha256" (every chunk
#      re-hashed)
#   1b, 2b. both again with [http] verify_reads = false (sent with sendfile,
#      trusting the hash made when each chunk entered the node)
#   3. 64 concurrent keep-alive clients (tests/bench/http_load; wrk cannot
#      send HEAD): p50/p99 latency of model info and of HEAD resolve, beside
#      nginx answering HEAD for a static file
#   4. pull-through over a 20 Mbit/s, 300 ms RTT link (cairn-wire): a client
#      behind an edge node that holds nothing downloads the snapshot through
#      the edge's HTTP port, vs curl of the same files from nginx over the same
#      link (needs root; skipped otherwise)
#
#   tests/bench/gateway.sh [--size-mib N] [--link-mib M]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SIZE_MIB=1024 LINK_MIB=24
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --link-mib) LINK_MIB=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
for tool in nginx; do
  command -v $tool >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q $tool >/dev/null
done
deploy/build.sh cairn cairn-node gen_model cairn-wire http_load
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node GEN=$BIN/tests/bench/gen_model
WORK=$(mktemp -d /var/tmp/cairn-gwbench.XXXXXX)  # on disk, not tmpfs
chmod 755 "$WORK"  # nginx workers read the files as an unprivileged user
export XDG_STATE_HOME=$WORK/state XDG_CACHE_HOME=$WORK/cache
PIDS=() NSS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "# date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$REPO" rev-parse --short HEAD)"
$CAIRN keygen --out root.key >/dev/null; $CAIRN keygen --out pub.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace acme --publisher pub.key.pub >/dev/null
# The gateway's per-client request cap is off: wrk is one client.
printf '[http]\nrequests_per_second_per_client = 0\n' >bench.toml

"$GEN" make model --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed 1 >/dev/null
# Written in 4 MiB blocks: a file written in small pieces sits in the page
# cache as small folios and nginx sends it markedly slower (1.2 against 1.8
# GB/s here), a reference that would flatter the gateway.
mkdir -p one && dd if=/dev/urandom of=one/weights.bin bs=4M count=$((SIZE_MIB / 4)) iflag=fullblock status=none
$NODE serve --data node --listen 127.0.0.1:0 --http 127.0.0.1:0 --trust trust.root --config bench.toml \
  >node.out 2>node.log &
PIDS+=($!)
for _ in $(seq 200); do grep -q 'http on' node.out 2>/dev/null && break; sleep 0.05; done
GRPC=$(sed -n 's/^cairn-node listening on //p' node.out)
HTTP=$(sed -n 's/^cairn-node http on //p' node.out)
$CAIRN publish model --name acme/model --version 1 --key pub.key --node "$GRPC" >/dev/null
$CAIRN publish one --name acme/one --version 1 --key pub.key --node "$GRPC" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p www nginx && ln model/* one/* www/
cat >nginx/nginx.conf <<NGX
daemon off; worker_processes 1; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log;
events { worker_connections 256; }
http { access_log off; sendfile on; keepalive_requests 1000000; server { listen 127.0.0.1:$PORT; root $WORK/www; } }
NGX
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/config.json" && break; sleep 0.1; done
cat www/* node/chunks/packs/* >/dev/null 2>&1 || cat www/* >/dev/null  # warm both
FILES=$(cd model && find . -type f | sed 's|^\./||' | sort)

fetch_all() {  # fetch_all BASE_URL: every file of the snapshot to /dev/null
  local args=()
  for f in $FILES; do args+=(-o /dev/null "$1/$f"); done
  curl -sf "${args[@]}"
}
restart_node() {  # restart_node CONFIG: the node again, on that config; sets HTTP
  kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
  $NODE serve --data node --listen 127.0.0.1:0 --http 127.0.0.1:0 --trust trust.root --config "$1" \
    >node.out 2>>node.log &
  PIDS[0]=$!
  for _ in $(seq 200); do grep -q 'http on' node.out 2>/dev/null && break; sleep 0.05; done
  HTTP=$(sed -n 's/^cairn-node http on //p' node.out)
}
one_file() {  # one_file TAG: the 1 GiB file, gateway and nginx alternating, median of 3
  : >t_gw$1; : >t_ng$1
  for i in 1 2 3; do
    for who in gw ng; do
      [ $((i % 2)) = 0 ] && who=$([ $who = gw ] && echo ng || echo gw)
      T0=$(now)
      if [ $who = gw ]; then curl -sf -o /dev/null "http://$HTTP/acme/one/resolve/main/weights.bin"
      else curl -sf -o /dev/null "http://127.0.0.1:$PORT/weights.bin"; fi
      since "$T0" >>t_$who$1
    done
  done
  local b=$((SIZE_MIB << 20)) g n
  g=$(median t_gw$1); n=$(median t_ng$1)
  echo "gateway $(gbps $b $g) GB/s ($g s), nginx $(gbps $b $n) GB/s ($n s): ratio $(ratio $n $g)x (goal >= 0.8)"
}
snapshot() {  # snapshot TAG: every file of the model through resolve, the same way
  : >t_gw$1; : >t_ng$1
  for i in 1 2 3; do
    if [ $((i % 2)) = 1 ]; then
      T0=$(now); fetch_all "http://$HTTP/acme/model/resolve/main"; since "$T0" >>t_gw$1
      T0=$(now); fetch_all "http://127.0.0.1:$PORT"; since "$T0" >>t_ng$1
    else
      T0=$(now); fetch_all "http://127.0.0.1:$PORT"; since "$T0" >>t_ng$1
      T0=$(now); fetch_all "http://$HTTP/acme/model/resolve/main"; since "$T0" >>t_gw$1
    fi
  done
  local g n
  g=$(median t_gw$1); n=$(median t_ng$1)
  echo "gateway $(gbps "$SNAP_BYTES" "$g") GB/s, nginx $(gbps "$SNAP_BYTES" "$n") GB/s: ratio $(ratio "$n" "$g")x (goal >= 0.8)"
}
SNAP_BYTES=$(du -sb model | cut -f1)
echo; echo "## 1. one $SIZE_MIB MiB file, GET to /dev/null (median of 3, warm, alternating); each chunk checked with its recorded CRC-32C (the default)"
one_file 1
echo; echo "## 2. a snapshot ($(echo $FILES | wc -w) files, $SIZE_MIB MiB) through resolve vs nginx, the default"
snapshot 2

echo; echo "## 1c. the one file with [http] verify_reads_with = \"sha256\" (every chunk re-hashed)"
printf '[http]\nrequests_per_second_per_client = 0\nverify_reads_with = "sha256"\n' >bench-sha.toml
restart_node bench-sha.toml
one_file 1c
echo; echo "## 2c. the snapshot, every chunk re-hashed"
snapshot 2c

echo; echo "## 1b. the one file with [http] verify_reads = false (chunks verified on arrival; the scrub finds rot)"
printf '[http]\nrequests_per_second_per_client = 0\nverify_reads = false\n' >bench-nv.toml
restart_node bench-nv.toml
one_file 1b
echo; echo "## 2b. the snapshot with [http] verify_reads = false"
snapshot 2b

restart_node bench.toml

echo; echo "## 3. 64 concurrent clients for 10 s (tests/bench/http_load, keep-alive), latency"
LOAD=$BIN/tests/bench/http_load
$LOAD --connections 64 --seconds 10 "http://$HTTP/api/models/acme/model" || true
$LOAD --connections 64 --seconds 10 --method HEAD "http://$HTTP/acme/model/resolve/main/config.json" || true
$LOAD --connections 64 --seconds 10 --method HEAD "http://127.0.0.1:$PORT/config.json" || true
echo "(the last line is nginx answering HEAD for the same file from disk, for reference;"
echo " goal: p99 < 5 ms for model info and HEAD resolve; the load tool shares the 2 cores)"

echo; echo "## 4. pull-through over 20 Mbit/s, 300 ms RTT vs curl over the same link"
if [ "$(id -u)" != 0 ]; then echo "skipped: needs root for network namespaces"; exit 0; fi
NA=cairn-ga-$$ NB=cairn-gb-$$
ip netns add $NA; ip netns add $NB; NSS+=($NA $NB)
ip -n $NA link set lo up; ip -n $NB link set lo up
"$BIN/tests/net/cairn-wire" --ns-a $NA --ns-b $NB --dev cw0 --delay-ms 150 --rate-mbit 20 >wire.out 2>wire.log &
PIDS+=($!)
for _ in $(seq 100); do grep -q ready wire.out && break; sleep 0.05; done
ip -n $NA addr add 10.81.0.1 peer 10.81.0.2 dev cw0; ip -n $NB addr add 10.81.0.2 peer 10.81.0.1 dev cw0
ip -n $NA link set cw0 up; ip -n $NB link set cw0 up
mkdir -p link/www link/nginx
"$GEN" make link/model --shards 2 --shard-mib $((LINK_MIB / 2)) --seed 9 >/dev/null
ln link/model/* link/www/
sed "s|root $WORK/www;|root $WORK/link/www;|; s|listen 127.0.0.1:$PORT;|listen 10.81.0.1:$PORT;|; s|$WORK/nginx/|$WORK/link/nginx/|g" \
  nginx/nginx.conf >link/nginx/nginx.conf
ip netns exec $NA nginx -c "$WORK/link/nginx/nginx.conf" -p "$WORK/link/nginx" &
PIDS+=($!)
ip netns exec $NA $NODE serve --data link/hub --listen 10.81.0.1:7000 --trust trust.root >hub.out 2>hub.log &
PIDS+=($!)
for _ in $(seq 200); do grep -q listening hub.out 2>/dev/null && break; sleep 0.05; done
ip netns exec $NA $CAIRN publish link/model --name acme/link --version 1 --key pub.key --node 10.81.0.1:7000 >/dev/null
LFILES=$(cd link/model && find . -type f | sed 's|^\./||' | sort)
printf '[[upstream]]\naddress = "10.81.0.1:7000"\ninclude = ["nobody/*"]\n[http]\nrequests_per_second_per_client = 0\n' >edge.toml
LINK_BYTES=$(du -sb link/model | cut -f1)
: >t_curl4; : >t_edge4
for i in 1 2 3; do
  args=(); for f in $LFILES; do args+=(-o /dev/null "http://10.81.0.1:$PORT/$f"); done
  T0=$(now); ip netns exec $NB curl -sf "${args[@]}"; since "$T0" >>t_curl4
  rm -rf "link/edge$i"
  ip netns exec $NB $NODE serve --data "link/edge$i" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
    --trust trust.root --config edge.toml >"edge$i.out" 2>"edge$i.log" &
  EPID=$!
  PIDS+=($EPID)
  for _ in $(seq 200); do grep -q 'http on' "edge$i.out" 2>/dev/null && break; sleep 0.05; done
  EH=$(sed -n 's/^cairn-node http on //p' "edge$i.out")
  args=(); for f in $LFILES; do args+=(-o /dev/null "http://$EH/acme/link/resolve/main/$f"); done
  T0=$(now); ip netns exec $NB curl -sf "${args[@]}"; since "$T0" >>t_edge4
  kill $EPID; wait $EPID 2>/dev/null || true
done
C=$(median t_curl4); E=$(median t_edge4)
echo "$LINK_MIB MiB: curl from nginx over the link $C s, snapshot through the edge (pull-through) $E s: ratio $(ratio "$C" "$E")x (goal >= 0.95)"
