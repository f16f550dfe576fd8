#!/usr/bin/env bash
# Garbage collection on a bucket two frontends share, end to end on a real
# Ceph (the rule: docs/operators.md, "Garbage collection on a shared
# bucket"). Frontend a collects; b follows a and holds one release a does
# not. An upload cut short leaves garbage packs. `cairn-node gc` on a opens
# a round; both frontends answer on their own; the next `cairn-node gc`
# deletes the garbage packs and keeps b's, and every release still pulls
# byte-exact from both. Then b stops for good: the next round waits for it
# until `cairn-node s3-frontends --forget` forgets it.
# Grace 0 (gc_grace_hours = 0) so the test need not wait a day; restarts end
# the touch window (chunks clients were told of). Needs root (Ceph).
source "$(dirname "$0")/lib.sh" "$@"
BUCKET=s3://cairn-gc/models

packs() {  # packs: pack objects in the bucket now (RGW wants the payload's hash signed)
  curl -sf --aws-sigv4 "aws:amz:$CAIRN_S3_REGION:s3" \
    --user "$CAIRN_S3_ACCESS_KEY:$CAIRN_S3_SECRET_KEY" \
    -H "x-amz-content-sha256: $(printf '' | sha256sum | cut -d' ' -f1)" \
    "$CAIRN_S3_ENDPOINT/cairn-gc?list-type=2&prefix=models%2Fpacks%2F" >"$T/list.xml" ||
    fail "cannot list the bucket"
  grep -o '<Key>' "$T/list.xml" | wc -l
}
gc_until() {  # gc_until PATTERN OUT: cairn-node gc on a until its report matches (60 s)
  for _ in $(seq 120); do
    "$NODE" gc --data "$T/a" >"$2" 2>&1 || fail "gc: $(cat "$2")"
    cat "$2" >>"$T/gc.history"
    grep -q "$1" "$2" && return 0
    sleep 0.5
  done
  fail "gc never said '$1': $(cat "$2")"
}
pull_same() {  # pull_same GRPC NAME DIR
  local out=$T/pull-$RANDOM
  CAIRN_TRUST=$T/trust.root "$CAIRN" pull "$2" --node "$1" --out "$out" --store "$out.store" \
    --progress none >/dev/null 2>"$out.err" || fail "pull $2 from $1: $(cat "$out.err")"
  diff -r -x .cairn "$3" "$out" >&2 || fail "$2 pulled from $1 differs"
}

printf '[node]\ngc_grace_hours = 0\ngc_interval_hours = 0\n[s3]\npack_mib = 4\nanswer_seconds = 1\n' \
  >"$T/b.toml"
{ cat "$T/b.toml"; printf 'collector = true\n'; } >"$T/a.toml"
start_a() { node_start a --chunks "$BUCKET" --config "$T/a.toml"; }
start_b() { node_start b --chunks "$BUCKET" --config "$T/b.toml" --upstream "$a_GRPC"; }
start_a
grep -q "this frontend collects the bucket's garbage" "$T/a.log" || fail "a does not say it collects"
start_b
make_model "$T/m1" 1
publish "$a_GRPC" "$T/m1" acme/m 1.0
wait_replicated "$b_HTTP" acme/m
make_model "$T/mb" 2
publish "$b_GRPC" "$T/mb" acme/only-b 1.0  # a does not follow b: not in a's mark

# An upload to a cut short once three packs of it are in the bucket.
mkdir -p "$T/m2" && head -c 60000000 /dev/urandom >"$T/m2/big.bin"
before=$(packs)
CAIRN_NODE=$a_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$T/m2" --name acme/m --version 1.1 \
  --key "$T/pub.key" >/dev/null 2>&1 &
client=$!
for _ in $(seq 600); do [ "$(packs)" -ge $((before + 3)) ] && break; sleep 0.05; done
kill -9 "$client" 2>/dev/null || true
wait "$client" 2>/dev/null || true
[ "$(packs)" -ge $((before + 3)) ] || fail "the upload did not reach the bucket"
node_stop b
node_stop a
start_a
start_b
"$NODE" s3-frontends --chunks "$BUCKET" >"$T/frontends.out" 2>&1 || fail "$(cat "$T/frontends.out")"
[ "$(wc -l <"$T/frontends.out")" = 2 ] || fail "not two frontends registered: $(cat "$T/frontends.out")"
grep -q "index=$T/b/s3-index" "$T/frontends.out" || fail "b not named: $(cat "$T/frontends.out")"

# Only the collector collects.
"$NODE" gc --data "$T/b" >"$T/gc-b.out" 2>&1 || fail "gc on b: $(cat "$T/gc-b.out")"
grep -q "collected by its collector frontend" "$T/gc-b.out" || fail "b: $(cat "$T/gc-b.out")"
full=$(packs)
"$NODE" gc --data "$T/a" >"$T/gc1.out" 2>&1 || fail "gc: $(cat "$T/gc1.out")"
grep -q "collection round 1 opened: [1-9][0-9]* pack(s) condemned" "$T/gc1.out" ||
  fail "no round opened: $(cat "$T/gc1.out")"
[ "$(packs)" -ge "$full" ] || fail "packs went before every frontend answered"
gc_until "round 1 ended" "$T/gc2.out"
grep -q "round 1 ended: [1-9][0-9]* condemned pack(s) deleted, [1-9][0-9]* kept" "$T/gc2.out" ||
  fail "round 1: $(cat "$T/gc2.out")"
freed=$(sed -n 's/.*; \([0-9]*\) bytes freed.*/\1/p' "$T/gc2.out")
[ "${freed:-0}" -gt 10000000 ] || fail "only ${freed:-0} bytes freed: $(cat "$T/gc2.out")"
[ "$(packs)" -lt "$full" ] || fail "no pack left the bucket ($full before, $(packs) after)"
grep -q "garbage collection: found" "$T/a.log" || fail "a did not log the pass"
for node in "$a_GRPC" "$b_GRPC"; do pull_same "$node" acme/m@1.0 "$T/m1"; done
pull_same "$b_GRPC" acme/only-b@1.0 "$T/mb"
# A frontend started now reads what is left, and serves it.
node_start c --chunks "$BUCKET" --config "$T/b.toml" --upstream "$b_GRPC"
wait_replicated "$c_HTTP" acme/only-b
pull_same "$c_GRPC" acme/only-b@1.0 "$T/mb"
node_stop c

# b and c stop for good: the round that opens next (a still finds only-b's
# chunks garbage) waits for them until they are forgotten.
b_id=$(grep "index=$T/b/s3-index" "$T/frontends.out" | cut -d' ' -f1)
c_id=$("$NODE" s3-frontends --chunks "$BUCKET" | grep "index=$T/c/s3-index" | cut -d' ' -f1)
[ -n "$b_id" ] && [ -n "$c_id" ] || fail "no ids: b '$b_id', c '$c_id'"
node_stop b
gc_until "waits for the answer of frontend(s) .*$b_id" "$T/gc3.out"
grep -q "$c_id" "$T/gc3.out" || fail "the round does not wait for c: $(cat "$T/gc3.out")"
"$NODE" s3-frontends --chunks "$BUCKET" --forget 0123456789abcdef >"$T/nf.out" 2>&1 &&
  fail "forgot a frontend never registered"
grep -q "no frontend 0123456789abcdef is registered" "$T/nf.out" || fail "$(cat "$T/nf.out")"
# A frontend seen within 15 minutes is not forgotten without --force; a
# running one forgotten anyway registers again (a's id here).
a_id=$("$NODE" s3-frontends --chunks "$BUCKET" | grep "index=$T/a/s3-index" | cut -d' ' -f1)
"$NODE" s3-frontends --chunks "$BUCKET" --forget "$b_id" >"$T/recent.out" 2>&1 &&
  fail "forgot a frontend seen seconds ago without --force"
grep -q "said it was running" "$T/recent.out" || fail "$(cat "$T/recent.out")"
"$NODE" s3-frontends --chunks "$BUCKET" --forget "$a_id" --force >/dev/null || fail "forget a"
for _ in $(seq 100); do
  "$NODE" s3-frontends --chunks "$BUCKET" | grep -q "^$a_id " && break
  sleep 0.1
done
"$NODE" s3-frontends --chunks "$BUCKET" | grep -q "^$a_id " || fail "a running frontend forgotten did not register again"
for id in "$b_id" "$c_id"; do
  "$NODE" s3-frontends --chunks "$BUCKET" --forget "$id" --force >"$T/forget.out" 2>&1 ||
    fail "forget: $(cat "$T/forget.out")"
done
[ "$("$NODE" s3-frontends --chunks "$BUCKET" | wc -l)" = 1 ] || fail "still registered"
gc_until "round [0-9]* ended: [1-9][0-9]* condemned pack(s) deleted, 0 kept" "$T/gc5.out"
pull_same "$a_GRPC" acme/m@1.0 "$T/m1"
echo "s3 gc OK"
