# Sourced by the gateway tests: a scratch folder, a trust root with one
# publisher for namespace acme, and cairn-node processes on 127.0.0.1 port 0,
# all stopped by PID and removed on exit however the test ends.
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
CAIRN=$BUILD/client/cairn
NODE=$BUILD/mirror-node/cairn-node
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d /tmp/cairn-gw.XXXXXX)
export XDG_STATE_HOME=$T/state XDG_CACHE_HOME=$T/cache XDG_CONFIG_HOME=$T/config
# Test artefacts (screenshots) go here; ctest's working directory by default.
OUT=${CAIRN_TEST_OUT:-$PWD}
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do if [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)" = "$$" ]; then kill "$p" 2>/dev/null || true; fi; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc != 0 ]; then
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done
  fi
  [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Keys and a trust root delegating namespace acme to one publisher.
"$CAIRN" keygen --out "$T/root.key" >/dev/null
"$CAIRN" keygen --out "$T/pub.key" >/dev/null
"$CAIRN" trust init --key "$T/root.key" --out "$T/trust.root" >/dev/null
"$CAIRN" trust delegate --trust "$T/trust.root" --key "$T/root.key" --namespace acme \
  --publisher "$T/pub.key.pub" >/dev/null

# node NAME [serve options...]: starts a node with an HTTP port; sets
# NAME_GRPC and NAME_HTTP (HOST:PORT) and NAME_PID.
node_start() {
  local name=$1
  shift
  "$NODE" serve --data "$T/$name" --listen "${LISTEN:-127.0.0.1:0}" --http 127.0.0.1:0 --trust "$T/trust.root" \
    "$@" >"$T/$name.out" 2>"$T/$name.log" &
  local pid=$!
  PIDS+=("$pid")
  # Up to 60 s (a start takes ~50 ms, but a loaded machine stalls), less
  # when the node exits.
  for _ in $(seq 1200); do
    grep -q 'http on' "$T/$name.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -q 'http on' "$T/$name.out" ||
    fail "node $name did not start ($(kill -0 "$pid" 2>/dev/null && echo "still running after 60 s" ||
      echo "exited"); its output: $(cat "$T/$name.out" 2>/dev/null))"
  printf -v "${name}_PID" %s "$pid"
  printf -v "${name}_GRPC" %s "$(sed -n 's/^cairn-node listening on //p' "$T/$name.out")"
  printf -v "${name}_HTTP" %s "$(sed -n 's/^cairn-node http on \([^ ]*\).*/\1/p' "$T/$name.out")"
}

# node_stop NAME: stops a node started by node_start and waits for it.
node_stop() {
  local pid_var="${1}_PID"
  kill "${!pid_var}" 2>/dev/null || true
  wait "${!pid_var}" 2>/dev/null || true
}

# cut_publish NODE DIR NAME VERSION BYTES: publishes DIR to node NODE (started
# by node_start) and kills the client with SIGKILL once the node's packs grew
# by BYTES (at most 30 s): the chunks that arrived are garbage. Fails when
# they did not grow that much.
cut_publish() {
  local grpc_var="${1}_GRPC" packs="$T/$1/chunks/packs" start client
  start=$(du -s --block-size=1 "$packs" | cut -f1)
  CAIRN_NODE=${!grpc_var} CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$2" --name "$3" --version "$4" \
    --key "$T/pub.key" >/dev/null 2>&1 &
  client=$!
  for _ in $(seq 600); do
    [ $(($(du -s --block-size=1 "$packs" | cut -f1) - start)) -gt "$5" ] && break
    sleep 0.05
  done
  kill -9 "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  [ $(($(du -s --block-size=1 "$packs" | cut -f1) - start)) -gt "$5" ] || fail "the upload to $1 did not start"
}

# wait_replicated HTTP NAME: until the node at HTTP serves a release of NAME
# (a bounded poll of its HTTP port; fails after 30 s).
wait_replicated() {
  for _ in $(seq 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/v1/releases/$2")" = 200 ] && return 0
    sleep 0.1
  done
  fail "node $1 did not replicate $2"
}

# publish GRPC_ADDR DIR NAME VERSION
publish() {
  CAIRN_NODE=$1 CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$2" --name "$3" --version "$4" \
    --key "$T/pub.key" --json >"$T/publish.json" || fail "publish $3 $4"
}

# A model folder: a 6 MB weights file, configs, a nested file, an empty file.
make_model() {
  local d=$1 seed=$2
  mkdir -p "$d/sub/deeper"
  head -c 6000000 </dev/urandom >"$d/model.safetensors"
  printf '{"model_type": "llama", "seed": %s}\n' "$seed" >"$d/config.json"
  echo "tokenizer $seed" >"$d/tokenizer.json"
  echo "nested $seed" >"$d/sub/deeper/notes.txt"
  : >"$d/empty.txt"
}

# The @huggingface/hub client, installed by tests/run.sh into the build
# folder (npm ci from tests/gateway/package-lock.json).
hf_client() {
  [ -d "$BUILD/npm/node_modules/@huggingface/hub" ] || fail "run tests/run.sh first: @huggingface/hub is not installed in $BUILD/npm"
  # ES modules resolve packages next to the script: run it from there.
  cp "$HERE/hf_client.mjs" "$BUILD/npm/hf_client.mjs"
  node "$BUILD/npm/hf_client.mjs" "$@"
}
