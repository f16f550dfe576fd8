#!/usr/bin/env bash
# Federation benchmarks, each beside a reference measured in the same run:
#   1. node -> node replication over loopback vs nginx -> curl of the same files
#   2. replicating a derivative whose base the follower holds: bytes on the wire
#   3. time for a release to reach the third tier of a chain; 5-node mesh convergence
#   4. replication over a lossy link (20 Mbit/s, 300 ms RTT, 2 % loss each way,
#      through cairn-wire) vs curl over the same link, with BBR and with Reno
#      congestion control at both ends (needs root; skipped otherwise)
#
#   tests/bench/federation.sh [--size-mib N] [--lossy-mib M] [--reno-mib R (0: skip)]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SIZE_MIB=1024 LOSSY_MIB=32 RENO_MIB=4
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --lossy-mib) LOSSY_MIB=$2; shift 2 ;;
    --reno-mib) RENO_MIB=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
command -v nginx >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null
deploy/build.sh cairn cairn-node gen_model cairn-wire
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node GEN=$BIN/tests/bench/gen_model
WORK=$(mktemp -d /var/tmp/cairn-fbench.XXXXXX)
chmod 755 "$WORK"
export XDG_STATE_HOME=$WORK/state XDG_CACHE_HOME=$WORK/cache
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"
source "$REPO/deploy/ports.sh"

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "# date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$REPO" rev-parse --short HEAD)"
$CAIRN keygen --out root.key >/dev/null; $CAIRN keygen --out pub.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace acme --publisher pub.key.pub >/dev/null

# start NAME [serve args...]: a node on 127.0.0.1:0; sets ADDR_<NAME>.
start() {
  local name=$1; shift
  $NODE serve --data "$WORK/$name" --listen 127.0.0.1:0 --http 127.0.0.1:0 --trust trust.root "$@" >"$name.out" 2>"$name.log" &
  PIDS+=($!)
  eval "PID_$name=$!"
  for _ in $(seq 200); do grep -q listening "$name.out" 2>/dev/null && break; sleep 0.02; done
  eval "ADDR_$name=$(sed -n 's/^cairn-node listening on //p' "$name.out")"
}
# start_at NAME PORT [args]: a node on a fixed port (for meshes).
start_at() {
  local name=$1 port=$2; shift 2
  $NODE serve --data "$WORK/$name" --listen 127.0.0.1:$port --http 127.0.0.1:0 --trust trust.root "$@" >"$name.out" 2>"$name.log" &
  PIDS+=($!)
}
has() { $CAIRN info "$2" --node "$1" --timeout 2 >/dev/null 2>&1; }
wait_has() { for _ in $(seq 6000); do has "$1" "$2" && return; sleep 0.02; done; echo "timeout waiting for $2 on $1" >&2; exit 1; }
# Waits until FILE has a line containing TEXT, checking every 5 ms without
# starting a process per check: a `cairn info` every 20 ms (the old wait)
# cost each run tens of process starts on the same two cores it timed.
exec {PAUSE_FD}<> <(:)
wait_log() {
  local lines=()
  for _ in $(seq 60000); do
    [ -f "$1" ] && mapfile -t lines <"$1"
    [[ "${lines[*]}" == *"$2"* ]] && return
    read -r -t 0.005 -u "$PAUSE_FD" _ || true
  done
  echo "timeout waiting for '$2' in $1" >&2; exit 1
}
fetched() { $CAIRN status --node "$1" --json | jq '[.upstreams[].bytes_fetched] | add'; }

echo; echo "## 1. node -> node replication over loopback, ${SIZE_MIB} MiB model"
"$GEN" make model --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed 1 >/dev/null
BYTES=$(du -cb model/* | tail -1 | cut -f1)
start a
$CAIRN publish model --name acme/m --version 1 --key pub.key --node "$ADDR_a" >/dev/null
PORT=$(free_port)
mkdir -p nginx
cat >nginx/nginx.conf <<NGX
daemon off; worker_processes 1; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log;
events {}
http { access_log off; sendfile on; server { listen 127.0.0.1:$PORT; root $WORK/model; } }
NGX
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & PIDS+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/config.json" && break; sleep 0.1; done
# Alternating which goes first, each side writing into the page cache its
# own previous run freed (on this VM, writing into fresh pages costs up to
# 4x, ../shared/LIMITS.md); the follower's data is removed between runs as
# curl's files are. Median of 3.
: >t_curl; : >t_node
for run in 1 2 3; do
  for who in curl node; do
    [ $((run % 2)) = 0 ] && who=$([ $who = curl ] && echo node || echo curl)
    if [ $who = curl ]; then
      rm -rf c; mkdir c; sync
      T0=$(now); for f in $(cd model && ls); do curl -sf -o "c/$f" "http://127.0.0.1:$PORT/$f"; done; sync -f c; TC=$(since "$T0")
      echo "$TC" >>t_curl
    else
      rm -rf "$WORK/b" b.log; sync
      # Timed to the follower's log line of its first committed release.
      T0=$(now); start b --upstream "$ADDR_a"; wait_log b.log " 1 releases,"; TB=$(since "$T0")
      echo "$TB" >>t_node
      wait_has "$ADDR_b" acme/m  # and it serves it
      kill "$PID_b"; wait "$PID_b" 2>/dev/null || true
    fi
  done
  echo "run $run: nginx -> curl $TC s ($(gbps "$BYTES" "$TC") GB/s); node -> node $TB s ($(gbps "$BYTES" "$TB") GB/s, includes node start and a synced commit)"
done
TC=$(median t_curl); TB=$(median t_node)
echo "median: nginx -> curl $TC s, node -> node $TB s: ratio $(ratio "$TC" "$TB")x (goal >= 0.8)"

echo; echo "## 2. derivative replication: the follower holds the base"
start d --upstream "$ADDR_a"
wait_has "$ADDR_d" acme/m
BEFORE=$(fetched "$ADDR_d")
cp -r model ft
CHANGED=0 SEED=7
for f in ft/*.safetensors; do CHANGED=$((CHANGED + $("$GEN" mutate "$f" --fraction 0.10 --seed $SEED))); SEED=$((SEED + 1)); done
$CAIRN publish ft --name acme/m-ft --version 1 --key pub.key --node "$ADDR_a" --base acme/m:latest >/dev/null
wait_has "$ADDR_d" acme/m-ft
WIRE=$(( $(fetched "$ADDR_d") - BEFORE ))
echo "changed bytes $CHANGED; chunk bytes replicated $WIRE; ratio $(ratio "$WIRE" "$CHANGED")x (goal <= 1.02 + metadata)"
kill "$PID_d"

echo; echo "## 3. a chain of three tiers, and a five-node mesh (followers long-poll their upstreams)"
"$GEN" make small --shards 1 --shard-mib 64 --seed 3 >/dev/null
start t1; start t2 --upstream "$ADDR_t1"; start t3 --upstream "$ADDR_t2"
sleep 2.5  # every node past its first (empty) poll
T0=$(now)
$CAIRN publish small --name acme/small --version 1 --key pub.key --node "$ADDR_t1" >/dev/null
wait_has "$ADDR_t3" acme/small
echo "64 MiB release: publish done -> held by tier 3 in $(since "$T0") s"
BASE=$(free_port 5)
for i in 0 1 2 3 4; do
  up1=$(( (i + 1) % 5 )) up2=$(( (i + 4) % 5 ))
  start_at "m$i" $((BASE + i)) --upstream 127.0.0.1:$((BASE + up1)) --upstream 127.0.0.1:$((BASE + up2))
done
for i in 0 1 2 3 4; do for _ in $(seq 200); do grep -q listening "m$i.out" 2>/dev/null && break; sleep 0.02; done; done
sleep 2.5
T0=$(now)
$CAIRN publish small --name acme/small --version 1 --key pub.key --node 127.0.0.1:$BASE >/dev/null
for i in 1 2 3 4; do wait_has 127.0.0.1:$((BASE + i)) acme/small; done
TM=$(since "$T0")
TOTAL=0
for i in 1 2 3 4; do TOTAL=$((TOTAL + $(fetched 127.0.0.1:$((BASE + i))))); done
echo "5-node ring mesh (each follows both neighbours): all five hold it in $TM s; chunk bytes moved $TOTAL = $(ratio "$TOTAL" $((64 << 20)))x the release over 4 followers (ideal 4.00)"

echo; echo "## 4. replication over a lossy link vs curl"
if [ "$(id -u)" != 0 ]; then echo "skipped: needs root for network namespaces"; exit 0; fi
NSS=()
trap 'cleanup; for n in "${NSS[@]}"; do ip netns del $n 2>/dev/null; done' EXIT
# lossy CC MIB STREAMS: both ends use TCP congestion control CC; curl, then a
# fresh follower with STREAMS chunk connections, fetch the same MIB over the
# same emulated link.
LOSSY_RUN=0
lossy() {
  local cc=$1 mib=$2 streams=$3
  LOSSY_RUN=$((LOSSY_RUN + 1))
  local na=cairn-fa$LOSSY_RUN-$$ nb=cairn-fb$LOSSY_RUN-$$ dir=$WORK/lossy$LOSSY_RUN
  ip netns add $na; ip netns add $nb; NSS+=($na $nb)
  ip -n $na link set lo up; ip -n $nb link set lo up
  ip netns exec $na sysctl -qw net.ipv4.tcp_congestion_control=$cc
  ip netns exec $nb sysctl -qw net.ipv4.tcp_congestion_control=$cc
  mkdir -p $dir/www $dir/nginx
  "$BIN/tests/net/cairn-wire" --ns-a $na --ns-b $nb --dev cw0 --delay-ms 150 --loss 0.02 --rate-mbit 20 >$dir/wire.out 2>$dir/wire.log & PIDS+=($!)
  for _ in $(seq 100); do grep -q ready $dir/wire.out && break; sleep 0.05; done
  ip -n $na addr add 10.79.0.1 peer 10.79.0.2 dev cw0; ip -n $nb addr add 10.79.0.2 peer 10.79.0.1 dev cw0
  ip -n $na link set cw0 up; ip -n $nb link set cw0 up
  head -c $((mib << 20)) /dev/urandom >$dir/www/weights.bin
  sed "s|root $WORK/model;|root $dir/www;|; s|listen 127.0.0.1:$PORT;|listen 10.79.0.1:$PORT;|; s|$WORK/nginx/|$dir/nginx/|g" nginx/nginx.conf >$dir/nginx/nginx.conf
  ip netns exec $na nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" & PIDS+=($!)
  ip netns exec $na $NODE serve --data "$dir/a" --listen 10.79.0.1:7000 --trust trust.root >$dir/a.out 2>$dir/a.log & PIDS+=($!)
  sleep 1
  ip netns exec $na $CAIRN publish $dir/www --name acme/lossy --version 1 --key pub.key --node 10.79.0.1:7000 >/dev/null
  printf '[[upstream]]\naddress = "10.79.0.1:7000"\nstreams = %s\n' "$streams" >$dir/b.toml
  # Three rounds, the order alternated, median of each. The follower is timed
  # from its start to its log line of the committed release (a `cairn info`
  # poll would start a pull-through of its own).
  : >$dir/t_curl; : >$dir/t_node
  local run who
  # One timed curl of the same bytes over the same link.
  curl_round() {
    rm -f "$dir/curl.out"
    T0=$(now); ip netns exec $nb curl -sf -o "$dir/curl.out" "http://10.79.0.1:$PORT/weights.bin"; since "$T0" >>$dir/t_curl
  }
  for run in 1 2 3; do
    for who in curl node; do
      [ $((run % 2)) = 0 ] && who=$([ $who = curl ] && echo node || echo curl)
      if [ $who = curl ]; then
        curl_round
      else
        rm -rf "$dir/b" "$dir/b.log"
        T0=$(now)
        ip netns exec $nb $NODE serve --data "$dir/b" --listen 127.0.0.1:7001 --trust trust.root --config $dir/b.toml >$dir/b.out 2>$dir/b.log &
        local pid=$!; PIDS+=($pid)
        wait_log "$dir/b.log" " 1 releases,"; since "$T0" >>$dir/t_node
        kill $pid; wait $pid 2>/dev/null || true
      fi
    done
  done
  TC=$(median $dir/t_curl) TL=$(median $dir/t_node)
  echo "$cc, $mib MiB: curl over the link $(paste -sd/ $dir/t_curl) s; a fresh cairn-node's first replication ($streams streams) $(paste -sd/ $dir/t_node) s; medians: ratio $(ratio "$TC" "$TL")x (goal >= 1.0)"
  # A follower that is already running and caught up, as a federation runs:
  # each round publishes a new release of the same size on the upstream
  # (inside its namespace, untimed) and times from the publish's return (its
  # commit) to the follower's log line of it, against curl again.
  rm -rf "$dir/b" "$dir/b.log"
  ip netns exec $nb $NODE serve --data "$dir/b" --listen 127.0.0.1:7001 --trust trust.root --config $dir/b.toml >$dir/b.out 2>$dir/b.log &
  local fpid=$!; PIDS+=($fpid)
  wait_log "$dir/b.log" " 1 releases,"
  : >$dir/t_curl; : >$dir/t_node
  for run in 1 2 3; do
    mkdir -p "$dir/www$run"; head -c $((mib << 20)) /dev/urandom >"$dir/www$run/weights.bin"
    for who in curl node; do
      [ $((run % 2)) = 0 ] && who=$([ $who = curl ] && echo node || echo curl)
      if [ $who = curl ]; then
        curl_round
      else
        ip netns exec $na $CAIRN publish "$dir/www$run" --name acme/lossy --version $((run + 1)) --key pub.key --node 10.79.0.1:7000 >/dev/null
        T0=$(now); wait_log "$dir/b.log" " $((run + 1)) releases,"; since "$T0" >>$dir/t_node
      fi
    done
  done
  kill $fpid; wait $fpid 2>/dev/null || true
  TC=$(median $dir/t_curl) TL=$(median $dir/t_node)
  echo "$cc, $mib MiB: curl $(paste -sd/ $dir/t_curl) s; a running follower replicating each new release ($streams streams) $(paste -sd/ $dir/t_node) s; medians: ratio $(ratio "$TC" "$TL")x (goal >= 1.0)"
  # A pull (2 streams) killed at half of curl's median time, then resumed:
  # what node a sent twice (its log), against what the resumed pull had in
  # flight at most (goal: about one in-flight window, plus a chunk).
  served() { { grep -o 'served [0-9]* chunks, [0-9]* bytes' "$dir/a.log" || true; } | awk '{ s += $4 } END { printf "%.0f\n", s }'; }
  local s0 pp half
  s0=$(served); half=$(awk -v t="$TC" 'BEGIN { printf "%.1f", t / 2 }')
  ip netns exec $nb $CAIRN pull acme/lossy --out "$dir/pout" --store "$dir/pstore" --node 10.79.0.1:7000 --trust trust.root --json >/dev/null 2>&1 &
  pp=$!; sleep "$half"; kill -9 $pp 2>/dev/null || true; wait $pp 2>/dev/null || true
  if ! ip netns exec $nb $CAIRN pull acme/lossy --out "$dir/pout" --store "$dir/pstore" --node 10.79.0.1:7000 --trust trust.root --json >"$dir/resume.json" 2>"$dir/resume.err"; then
    echo "$cc, $mib MiB: the resumed pull failed: $(tail -2 "$dir/resume.err")"
    return
  fi
  sleep 1
  echo "$cc, $mib MiB: a pull killed at $half s and resumed: node sent $(($(served) - s0 - $(jq .bytes_total "$dir/resume.json"))) bytes twice; the resumed pull fetched $(jq .bytes_fetched "$dir/resume.json") bytes, at most $(jq .peak_in_flight "$dir/resume.json") in flight (rtt $(jq '.nodes[0].rtt_ms' "$dir/resume.json") ms)"
}
# BBR (this machine's default): one TCP connection keeps the link ~70 % full.
lossy bbr "$LOSSY_MIB" 1
lossy bbr "$LOSSY_MIB" 4
# Reno (loss-based, like Debian's default CUBIC; network namespaces here allow
# only reno and bbr): one connection gets a few percent of the link.
[ "$RENO_MIB" = 0 ] || lossy reno "$RENO_MIB" 4
