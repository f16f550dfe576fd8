#!/usr/bin/env bash
# Several node frontends over one S3 bucket on a real Ceph (issue 17):
# publish to frontend a; frontend b, following a, learns the release from
# the feed and finds its chunks already in the bucket (0 chunk bytes over
# the wire); a is killed and b goes on serving; a third frontend started
# later on the same bucket serves everything, again fetching no chunk bytes.
# Needs root (the Ceph daemons).
source "$(dirname "$0")/lib.sh" "$@"
BUCKET=s3://cairn-frontends/models

fetched() {  # fetched GRPC: chunk bytes the node fetched from its upstream
  CAIRN_TRUST=$T/trust.root "$CAIRN" status --node "$1" --json >"$T/status.json"
  jq -e '.upstreams | length > 0 and all(has("bytes_fetched"))' "$T/status.json" >/dev/null ||
    fail "status names no upstream with bytes_fetched: $(cat "$T/status.json")"
  jq '[.upstreams[].bytes_fetched] | add' "$T/status.json"
}
pull_from() {  # pull_from GRPC OUT
  CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/m --node "$1" --out "$2" --store "$2.store" \
    --progress none >/dev/null 2>"$2.err" || fail "pull from $1: $(cat "$2.err")"
  cmp -s "$2/model.safetensors" "$T/m/model.safetensors" || fail "pull from $1 differs"
}

make_model "$T/m" 1
node_start a --chunks "$BUCKET"
grep -q "chunks in $BUCKET" "$T/a.log" || fail "a does not say where its chunks are"
node_start b --chunks "$BUCKET" --upstream "$a_GRPC"
publish "$a_GRPC" "$T/m" acme/m 1.0
wait_replicated "$b_HTTP" acme/m
pull_from "$b_GRPC" "$T/out-b"
[ "$(fetched "$b_GRPC")" = 0 ] || fail "b fetched $(fetched "$b_GRPC") chunk bytes; the bucket had them"
[ -z "$(ls -A "$T/b/chunks" 2>/dev/null)" ] || fail "b wrote chunks to its local disk"

kill -9 "$a_PID"
pull_from "$b_GRPC" "$T/out-b2"

node_start c --chunks "$BUCKET" --upstream "$b_GRPC"
wait_replicated "$c_HTTP" acme/m
pull_from "$c_GRPC" "$T/out-c"
[ "$(fetched "$c_GRPC")" = 0 ] || fail "c fetched $(fetched "$c_GRPC") chunk bytes"
# The count is real: a frontend with chunks of its own (no bucket) fetches them.
node_start d --upstream "$b_GRPC"
wait_replicated "$d_HTTP" acme/m
[ "$(fetched "$d_GRPC")" -gt 6000000 ] || fail "d fetched only $(fetched "$d_GRPC") bytes"
echo "frontends OK"
