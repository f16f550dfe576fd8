# Sourced by the network tests. Namespaces, wires and processes made here are
# removed on exit, however the test ends.
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR}
CAIRN=$BUILD/client/cairn
NODE=$BUILD/mirror-node/cairn-node
WIRE=$BUILD/tests/net/cairn-wire
if [ "$(id -u)" != 0 ] || ! ip netns list >/dev/null 2>&1 || [ ! -c /dev/net/tun ]; then
  if [ -n "${CI:-}" ]; then
    echo "FAIL: network tests need root, ip netns and /dev/net/tun (CI runs as root)" >&2
    exit 1
  fi
  echo "SKIP: network tests need root, ip netns and /dev/net/tun" >&2
  exit 77
fi
T=$(mktemp -d /tmp/cairn-net.XXXXXX)
export XDG_STATE_HOME=$T/state XDG_CACHE_HOME=$T/cache XDG_CONFIG_HOME=$T/config
ID=$$
NAMESPACES=() PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do if [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)" = "$$" ]; then kill "$p" 2>/dev/null || true; fi; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NAMESPACES[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  if [ $rc != 0 ]; then
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  fi
  rm -rf "$T"
}
trap cleanup EXIT

# ns NAME: a fresh namespace with loopback up; echoes its full name.
ns() {
  local n=cairn-$1-$ID
  ip netns add "$n"
  NAMESPACES+=("$n")
  ip -n "$n" link set lo up
}
nsname() { echo "cairn-$1-$ID"; }

# wire A B DEV IP_A IP_B [cairn-wire options]: a point-to-point link.
# Sets WIRE_PID.
wire() {
  local a=$(nsname "$1") b=$(nsname "$2") dev=$3 ipa=$4 ipb=$5
  shift 5
  "$WIRE" --ns-a "$a" --ns-b "$b" --dev "$dev" "$@" >"$T/wire-$dev.out" 2>"$T/wire-$dev.log" &
  WIRE_PID=$!
  PIDS+=("$WIRE_PID")
  for _ in $(seq 100); do grep -q ready "$T/wire-$dev.out" 2>/dev/null && break; sleep 0.05; done
  grep -q ready "$T/wire-$dev.out" || { echo "FAIL: cairn-wire did not start" >&2; exit 1; }
  ip -n "$a" addr add "$ipa" peer "$ipb" dev "$dev"
  ip -n "$b" addr add "$ipb" peer "$ipa" dev "$dev"
  ip -n "$a" link set "$dev" up
  ip -n "$b" link set "$dev" up
}

# inns NS CMD...: run in a namespace.
inns() { local n=$(nsname "$1"); shift; ip netns exec "$n" "$@"; }

# node NS NAME LISTEN [serve options]: a cairn-node in NS; waits until it
# listens. Sets NODE_PID.
node() {
  local n=$1 name=$2 listen=$3
  shift 3
  # ip netns exec, not the inns function: `&` on a function forks a subshell,
  # and $! would be the subshell's pid, not the node's (killing it left the
  # node running after the test).
  ip netns exec "$(nsname "$n")" "$NODE" serve --data "$T/$name" --listen "$listen" \
    --trust "$T/trust.root" "$@" >"$T/$name.out" 2>"$T/$name.log" &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  # Up to 60 s on a loaded machine, less when the node exits.
  for _ in $(seq 1200); do
    grep -q "listening on" "$T/$name.out" 2>/dev/null && break
    kill -0 "$NODE_PID" 2>/dev/null || break
    sleep 0.05
  done
  grep -q "listening on" "$T/$name.out" || { echo "FAIL: node $name did not start" >&2; exit 1; }
}

# keys and a trust root delegating acme/ to pub.key; a model of SIZE bytes.
setup_model() {
  local size=$1
  "$CAIRN" keygen --out "$T/root.key" >/dev/null
  "$CAIRN" keygen --out "$T/pub.key" >/dev/null
  "$CAIRN" trust init --key "$T/root.key" --out "$T/trust.root" >/dev/null
  "$CAIRN" trust delegate --trust "$T/trust.root" --key "$T/root.key" --namespace acme \
    --publisher "$T/pub.key.pub" >/dev/null
  mkdir -p "$T/model"
  head -c "$size" /dev/urandom >"$T/model/weights.bin"
  echo '{"hidden": 64}' >"$T/model/config.json"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "FAIL: $*" >&2; exit 1; }
