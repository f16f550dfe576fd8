#!/usr/bin/env bash
# Two node frontends over one S3 bucket, on one machine (docs/operators.md,
# "Chunks in an S3 object store"): a throw-away one-node Ceph
# (deploy/ceph-local.sh), frontends a and b on the bucket s3://cairn/models,
# each following the other, each with its own data folder and HTTP gateway.
# Publishes a model to a; b learns of it from a's feed and serves it with
# no chunk byte transferred between them (the bucket holds the chunks);
# a is killed and b goes on serving; everything stops. Needs root (the Ceph
# daemons). Exits non-zero when any step does not do what it says.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "s3-frontends: needs root (the Ceph daemons)" >&2; exit 1; fi
source "$(dirname "$0")/lib.sh"
source "$REPO/deploy/ports.sh"
WORK=$(mktemp -d /tmp/cairn-s3-frontends.XXXXXX)
export XDG_STATE_HOME=$WORK/state CAIRN_TRUST=$WORK/trust.root
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do if [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)" = "$$" ]; then kill -TERM "$p" 2>/dev/null || true; fi; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$REPO/deploy/ceph-local.sh" stop "$WORK/ceph" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
say() { printf '\n== %s\n' "$*"; }
die() {
  local f
  for f in a b; do eval "kill -0 \${PID_$f:-0}" 2>/dev/null || echo "$f is not running"; done >&2
  for f in a.log b.log; do [ -s "$f" ] && { echo "--- last lines of $f"; tail -n 30 "$f"; }; done >&2
  echo "s3-frontends: $*" >&2; exit 1
}
start() {  # start NAME GRPC_PORT HTTP_PORT UPSTREAM
  $NODE serve --data "$WORK/$1" --chunks s3://cairn/models --listen "127.0.0.1:$2" \
    --http "127.0.0.1:$3" --upstream "$4" --trust trust.root --region "$1" >"$1.out" 2>"$1.log" &
  PIDS+=($!)
  eval "PID_$1=$!"
  # Up when both ports are bound ("http on" comes after "listening").
  for _ in $(seq 100); do
    grep -q 'http on' "$1.out" 2>/dev/null && return
    kill -0 "$!" 2>/dev/null || break
    sleep 0.1
  done
  die "$1 did not start"
}
fetched() {  # chunk bytes node $1 fetched from its upstreams
  $CAIRN status --node "$1" --json | jq '[.upstreams[].bytes_fetched] | add'
}

say "a one-node Ceph with an S3 gateway on 127.0.0.1"
"$REPO/deploy/ceph-local.sh" start "$WORK/ceph" --owner $$ --memory-mib 1024
source "$WORK/ceph/env"  # CAIRN_S3_ENDPOINT, _REGION, _ACCESS_KEY, _SECRET_KEY

say "keys and trust root"
$CAIRN keygen --out root.key >/dev/null
$CAIRN keygen --out publisher.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace cmu --publisher publisher.key.pub |
  sed -n 1p  # (the hint to push the trust file does not apply: both frontends start with it)

A=127.0.0.1:$(free_port) A_HTTP=127.0.0.1:$(free_port)
B=127.0.0.1:$(free_port) B_HTTP=127.0.0.1:$(free_port)
say "frontends a ($A, HTTP $A_HTTP) and b ($B, HTTP $B_HTTP) on s3://cairn/models, following each other"
start a "${A#*:}" "${A_HTTP#*:}" "$B"
start b "${B#*:}" "${B_HTTP#*:}" "$A"
grep -h 'chunks in' a.log b.log

say "publishing cmu/en-us to a"
cp -r /usr/share/pocketsphinx/model/en-us model
$CAIRN publish model --name cmu/en-us --version 1.0 --key publisher.key --node "$A"
for _ in $(seq 300); do $CAIRN info cmu/en-us --node "$B" >/dev/null 2>&1 && break; sleep 0.1; done
$CAIRN info cmu/en-us --node "$B" >/dev/null || die "cmu/en-us did not reach b"

say "pulling from b, and through b's HTTP gateway with curl"
$CAIRN pull cmu/en-us --node "$B" --out pulled-b --store "$WORK/client-store"
diff -r --exclude=.cairn model pulled-b || die "what b served differs from what was published"
curl -fsS -o mdef "http://$B_HTTP/cmu/en-us/resolve/main/en-us/mdef"
cmp mdef model/en-us/mdef && echo "curl http://$B_HTTP/cmu/en-us/resolve/main/en-us/mdef: identical"
N=$(fetched "$B")
echo "chunk bytes b fetched from a: $N (the bucket already held them)"
[ "$N" = 0 ] || die "b fetched $N chunk bytes from a"

say "killing a; b goes on serving"
kill -9 "$PID_a"
wait "$PID_a" 2>/dev/null || true
$CAIRN pull cmu/en-us --node "$B" --out pulled-b2 --store "$WORK/client-store2"
diff -r --exclude=.cairn model pulled-b2 && echo "byte-for-byte identical to what was published at a"

say "stopping b and the cluster"
kill -TERM "$PID_b"; wait "$PID_b" || true
echo "s3 frontends demo OK"
