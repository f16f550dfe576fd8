#!/bin/bash
# Capacity end to end, as docs/operators.md's "Capacity and eviction" sets it
# up: follower b may hold 14 MB of releases ([node] max_bytes) and pins
# acme/p. Two 6 MB releases fit; a third evicts the one least recently
# requested (not the one a client just pulled) and starts a garbage
# collection; a pull of the evicted one brings it back on demand (evicting
# the next least recent); a release larger than the cap is passed over with a
# clear status and replication goes on behind it; a pinned release and one
# published to b itself are never evicted.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"
export CAIRN_TRUST=$T/trust.root

# until DESC CMD...: polls CMD (a condition) for up to 30 s.
until_true() {
  local what=$1
  shift
  for _ in $(seq 300); do "$@" && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}
status() { CAIRN_NODE=$b_GRPC "$CAIRN" status --json >"$T/status.json" 2>"$T/status.err"; }
# held_on_b NAME: b holds a release of NAME (its tags stay when it is evicted).
held_on_b() {
  [ "$(CAIRN_NODE=$b_GRPC "$CAIRN" ls "$1" --json 2>/dev/null |
    jq --arg n "$1" '[.[] | select(.name == $n) | .releases[]] | length')" -gt 0 ] 2>/dev/null
}
not_held_on_b() { ! held_on_b "$1"; }
gc_ran() { status && [ "$(jq '.gc.passes' "$T/status.json")" -gt 0 ]; }
refused() { status && jq -r .capacity.last_refused "$T/status.json" | grep -q "$1"; }

node_start a
for n in m n o; do make_model "$T/$n" "$n"; done
publish "$a_GRPC" "$T/m" acme/m 1.0
dm1=$(jq -r .manifest "$T/publish.json")
publish "$a_GRPC" "$T/n" acme/n 1.0
printf '[node]\nmax_bytes = 14000000\npin = ["acme/p"]\n[[upstream]]\naddress = "%s"\n' \
  "$a_GRPC" >"$T/b.toml"
node_start b --config "$T/b.toml"
until_true "b to replicate acme/m and acme/n" held_on_b acme/n
held_on_b acme/m || fail "acme/m did not replicate"
# A client pulls acme/m from b: acme/n is now the least recently requested.
CAIRN_NODE=$b_GRPC "$CAIRN" pull acme/m --out "$T/got-m" >/dev/null 2>&1 || fail "pull acme/m"

publish "$a_GRPC" "$T/o" acme/o 1.0
until_true "b to replicate acme/o" held_on_b acme/o
until_true "b to evict acme/n" not_held_on_b acme/n
held_on_b acme/m || fail "acme/m, pulled a moment ago, was evicted instead of acme/n"
status || fail "status: $(cat "$T/status.err")"
[ "$(jq .capacity.releases_evicted "$T/status.json")" = 1 ] || fail "capacity: $(jq -c .capacity "$T/status.json")"
jq -r .capacity.last_evicted "$T/status.json" | grep -q "acme/n 1.0" || fail "last evicted: $(jq -c .capacity "$T/status.json")"
CAIRN_NODE=$b_GRPC "$CAIRN" status >"$T/status.txt" 2>&1
grep -q "capacity: .* of max_bytes" "$T/status.txt" || fail "status text: $(cat "$T/status.txt")"
# The eviction started a garbage collection (its chunks go once no client
# was told of them within two session lifetimes: CapacityTest covers that).
until_true "garbage collection after the eviction" gc_ran

# The evicted release comes back when asked for (on demand, from a).
CAIRN_NODE=$b_GRPC "$CAIRN" pull acme/n --out "$T/got-n" >"$T/pull-n.out" 2>&1 ||
  fail "pull of the evicted acme/n: $(cat "$T/pull-n.out")"
cmp -s "$T/got-n/model.safetensors" "$T/n/model.safetensors" || fail "acme/n came back different"
held_on_b acme/n || fail "acme/n is not held again"
# Room for it: acme/m (pulled before acme/o arrived) went this time.
not_held_on_b acme/m || fail "acme/m was not evicted for acme/n"
held_on_b acme/o || fail "acme/o was evicted although acme/m was older"

# Larger than the cap: passed over with a clear status; what follows arrives.
mkdir -p "$T/big" "$T/p" "$T/q"
head -c 15000000 </dev/urandom >"$T/big/model.safetensors"
publish "$a_GRPC" "$T/big" acme/big 1.0
head -c 500000 </dev/urandom >"$T/p/w.bin"
publish "$a_GRPC" "$T/p" acme/p 1.0
until_true "b to replicate acme/p past acme/big" held_on_b acme/p
not_held_on_b acme/big || fail "acme/big was fetched"
refused "acme/big 1.0 (15000000 bytes) is larger than this node may hold" ||
  fail "no word of acme/big: $(jq -c .capacity "$T/status.json")"
[ "$(jq '.upstreams[0].events_skipped_for_space' "$T/status.json")" -ge 1 ] ||
  fail "acme/big not counted as passed over for space: $(jq -c '.upstreams[0]' "$T/status.json")"
[ "$(jq '.upstreams[0].events_outside_policy' "$T/status.json")" = 0 ] ||
  fail "space skips counted as policy skips: $(jq -c '.upstreams[0]' "$T/status.json")"
# Asked for over HTTP (pull-through): 507 Insufficient Storage, saying why.
for url in v1/files/acme/big/1.0/model.safetensors api/models/acme/big/revision/main; do
  code=$(curl -s -o "$T/big.http" -w '%{http_code}' "http://$b_HTTP/$url")
  [ "$code" = 507 ] || fail "GET /$url on b answered $code: $(cat "$T/big.http")"
  grep -q "larger than this node may hold" "$T/big.http" || fail "507 body: $(cat "$T/big.http")"
done
# And over gRPC (cairn pull from b): RESOURCE_EXHAUSTED, saying why.
if CAIRN_NODE=$b_GRPC "$CAIRN" pull acme/big --out "$T/got-big" >"$T/pull-big.out" 2>&1; then
  fail "acme/big was pulled through b"
fi
grep -q "larger than this node may hold" "$T/pull-big.out" || fail "pull of acme/big said: $(cat "$T/pull-big.out")"
curl -s "http://$b_HTTP/metrics" >"$T/metrics"
grep -q '^cairn_capacity_max_bytes 14000000$' "$T/metrics" || fail "no capacity metrics: $(grep capacity "$T/metrics")"
grep -q '^cairn_capacity_releases_evicted_total [1-9]' "$T/metrics" || fail "no evictions counted: $(grep capacity "$T/metrics")"

# A release published to b itself (it counts against max_bytes too, and fits)
# and the pinned acme/p are never evicted: acme/r makes room by evicting
# acme/o, the least recent of the others.
head -c 1000000 </dev/urandom >"$T/q/w.bin"
publish "$b_GRPC" "$T/q" acme/q 1.0
make_model "$T/r" r
publish "$a_GRPC" "$T/r" acme/r 1.0
until_true "b to replicate acme/r" held_on_b acme/r
held_on_b acme/q || fail "acme/q, published to b, was evicted"
held_on_b acme/p || fail "the pinned acme/p was evicted"
not_held_on_b acme/o || fail "acme/o was not evicted for acme/r"
# A tag moved upstream onto a release b evicted is applied all the same:
# b's latest leads to it (fetched on demand), not to the old target. acme/m
# 1.0 is evicted on b; 2.0 arrives (latest -> 2.0), then a's publisher rolls
# latest back to 1.0.
not_held_on_b acme/m || fail "acme/m 1.0 is held on b"
make_model "$T/m2" m2
publish "$a_GRPC" "$T/m2" acme/m 2.0
dm2=$(jq -r .manifest "$T/publish.json")
b_latest() {
  CAIRN_NODE=$b_GRPC "$CAIRN" ls acme/m --json 2>/dev/null |
    jq -r '.[] | select(.name == "acme/m") | .tags[] | select(.tag == "latest") | .manifest'
}
latest_on_b_is() { [ "$(b_latest)" = "$1" ]; }
until_true "b to move latest to acme/m 2.0" latest_on_b_is "$dm2"
CAIRN_NODE=$a_GRPC "$CAIRN" tag "acme/m@$dm1" latest --key "$T/pub.key" >"$T/rollback.out" 2>&1 ||
  fail "tag rollback: $(cat "$T/rollback.out")"
until_true "b to move latest back to the evicted acme/m 1.0" latest_on_b_is "$dm1"
CAIRN_NODE=$b_GRPC "$CAIRN" pull acme/m --out "$T/got-latest" >"$T/pull-latest.out" 2>&1 ||
  fail "pull acme/m from b: $(cat "$T/pull-latest.out")"
cmp -s "$T/got-latest/model.safetensors" "$T/m/model.safetensors" ||
  fail "b's latest served something other than acme/m 1.0"
echo "capacity OK"
