#!/usr/bin/env bash
# A node whose chunks are in S3 (a real one-node Ceph), with faults injected
# between it and radosgw by the s3_fault_proxy program (tests/s3/fault_proxy.h):
#   1. the bucket refuses every index write: the publish fails with a clear
#      error and no release becomes visible, on this frontend or another;
#      once the bucket recovers the same publish succeeds;
#   2. every chunk read from the bucket comes back with a flipped byte: no
#      client (curl on the HTTP port, cairn over gRPC) receives a wrong byte;
#      once the path is clean both get the exact files;
#   3. what was read is in the frontend's local read cache: served again
#      while the bucket's reads are broken.
# Needs root (the Ceph daemons).
source "$(dirname "$0")/lib.sh" "$@"
BUCKET=s3://cairn-faults/models
RULE=$T/proxy.rule
echo none >"$RULE"
"$BUILD/tests/s3_fault_proxy" "$CAIRN_S3_ENDPOINT" "$RULE" >"$T/proxy.out" 2>"$T/proxy.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'listening on' "$T/proxy.out" && break; sleep 0.05; done
PROXY=http://$(sed -n 's/^listening on //p' "$T/proxy.out")
[ "$PROXY" != http:// ] || fail "the fault proxy did not start: $(cat "$T/proxy.log")"
rule() {  # rule TEXT: until the proxy has taken it (its log's last line says so)
  echo "$1" >"$RULE"
  for _ in $(seq 100); do [ "$(tail -1 "$T/proxy.log")" = "s3_fault_proxy: rule \"$1\"" ] && return 0; sleep 0.02; done
  fail "the proxy did not take rule $1"
}
released() { curl -s -o /dev/null -w '%{http_code}' "http://$1/v1/releases/acme/m"; }

make_model "$T/m" 1
CAIRN_S3_ENDPOINT=$PROXY node_start a --chunks "$BUCKET"

# 1. Index objects refused: nothing half-visible.
rule "503 PUT /index/"
if CAIRN_NODE=$a_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$T/m" --name acme/m --version 1.0 \
  --key "$T/pub.key" >/dev/null 2>"$T/pub.err"; then
  fail "the publish succeeded while the bucket refused every index object"
fi
grep -q "object store" "$T/pub.err" || fail "the publish error does not name the object store: $(cat "$T/pub.err")"
[ "$(released "$a_HTTP")" = 404 ] || fail "a release became visible with chunks not in the bucket"
node_start b --chunks "$BUCKET"  # straight to radosgw
[ "$(released "$b_HTTP")" = 404 ] || fail "another frontend sees the release"
rule none
publish "$a_GRPC" "$T/m" acme/m 1.0
[ "$(released "$a_HTTP")" = 200 ] || fail "the publish after recovery is not visible"

# 2. Every chunk read flipped on its way from the bucket.
node_stop a
rule "flip GET /packs/"
CAIRN_S3_ENDPOINT=$PROXY node_start a --chunks "$BUCKET"  # restarted: nothing in memory
URL=http://$a_HTTP/v1/files/acme/m/1.0/model.safetensors
CODE=$(curl -s -o "$T/got" -w '%{http_code}' "$URL" || true)
SIZE=$(stat -c %s "$T/got" 2>/dev/null || echo 0)
case "$CODE" in
  200)  # the body started: what came must be the file's first bytes, and not all of them
    [ "$SIZE" -lt "$(stat -c %s "$T/m/model.safetensors")" ] || fail "curl got the whole file through flipped reads"
    [ "$SIZE" = 0 ] || cmp -s -n "$SIZE" "$T/got" "$T/m/model.safetensors" || fail "curl received wrong bytes" ;;
  5*) grep -q "error" "$T/got" || fail "the $CODE answer does not say what failed: $(head -c 300 "$T/got")" ;;
  *) fail "curl through flipped reads: HTTP $CODE" ;;
esac
if CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/m --node "$a_GRPC" --out "$T/out1" --store "$T/s1" \
  --progress none >/dev/null 2>"$T/pull1.err"; then
  fail "a pull succeeded through flipped reads"
fi
[ ! -e "$T/out1/model.safetensors" ] || cmp -s "$T/out1/model.safetensors" "$T/m/model.safetensors" ||
  fail "the pull left a wrong model.safetensors"
grep -q "chunk" "$T/pull1.err" || fail "the pull error says nothing useful: $(cat "$T/pull1.err")"
rule none
curl -sS -f -o "$T/got" "$URL" 2>"$T/curl.err" || fail "curl after recovery: $(cat "$T/curl.err")"
cmp -s "$T/got" "$T/m/model.safetensors" || fail "curl after recovery differs"
CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/m --node "$a_GRPC" --out "$T/out2" --store "$T/s2" \
  --progress none >/dev/null 2>"$T/pull2.err" || fail "pull after recovery: $(cat "$T/pull2.err")"
cmp -s "$T/out2/model.safetensors" "$T/m/model.safetensors" || fail "the pull after recovery differs"

# 3. The read cache (DATA/s3-cache) now holds every chunk: with the bucket's
#    reads broken again, the frontend still serves the exact file.
rule "flip GET /packs/"
curl -sS -f -o "$T/got3" "$URL" 2>"$T/curl.err" || fail "curl from the read cache: $(cat "$T/curl.err")"
cmp -s "$T/got3" "$T/m/model.safetensors" || fail "the file from the read cache differs"
[ -n "$(ls -A "$T/a/s3-cache")" ] || fail "no read cache under the data folder"
echo "s3 faults OK"
