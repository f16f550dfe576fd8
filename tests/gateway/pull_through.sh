#!/usr/bin/env bash
# Pull-through across a three-node chain hub <- mid <- edge where only the hub
# holds the models (the feeds of mid and edge take nothing): a snapshot
# download from the edge's HTTP port completes byte-exact, and afterwards the
# edge (and mid, through its gRPC Resolve) hold the release; two concurrent
# downloads of a model cause one fetch; a model outside the on-demand policy
# is RepoNotFound.
source "$(dirname "$0")/lib.sh"
node_start hub
make_model "$T/m" 1
publish "$hub_GRPC" "$T/m" acme/m 1.0
mkdir -p "$T/big"
head -c 40000000 </dev/urandom >"$T/big/model.safetensors"
publish "$hub_GRPC" "$T/big" acme/big 1.0
mkdir -p "$T/secret" && echo classified >"$T/secret/config.json"
publish "$hub_GRPC" "$T/secret" acme/secret 1.0

follow() {  # follow UPSTREAM: a config whose feed takes nothing
  cat <<TOML
[[upstream]]
address = "$1"
include = ["nobody/*"]
[on_demand]
exclude = ["acme/secret"]
TOML
}
follow "$hub_GRPC" >"$T/mid.toml"
node_start mid --config "$T/mid.toml"
follow "$mid_GRPC" >"$T/edge.toml"
node_start edge --config "$T/edge.toml"

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "http://$edge_HTTP/v1/releases/acme/m")" = 404 ] || fail "the edge holds acme/m before any request"

hf_client "http://$edge_HTTP" acme/m "$T/m" "$T/hf-cache" 1
[ "$(code "http://$edge_HTTP/v1/releases/acme/m")" = 200 ] || fail "the edge does not hold acme/m afterwards"
[ "$(code "http://$mid_HTTP/v1/releases/acme/m")" = 200 ] || fail "mid does not hold acme/m afterwards"
grep -q 'on-demand: committed acme/m 1.0' "$T/edge.log" || fail "no on-demand commit logged on the edge"

# Two concurrent downloads of a model nobody downstream holds: one fetch.
URL="http://$edge_HTTP/acme/big/resolve/main/model.safetensors"
curl -sf -o "$T/big1" "$URL" &
c1=$!
curl -sf -o "$T/big2" "$URL" &
c2=$!
wait $c1 || fail "first concurrent download"
wait $c2 || fail "second concurrent download"
cmp "$T/big1" "$T/big/model.safetensors" || fail "first concurrent download differs"
cmp "$T/big2" "$T/big/model.safetensors" || fail "second concurrent download differs"
n=$(grep -c 'on-demand: fetching acme/big' "$T/edge.log" || true)
[ "$n" = 1 ] || fail "two concurrent requests caused $n fetches on the edge"
curl -s "http://$edge_HTTP/metrics" >"$T/metrics"
grep -q '^cairn_on_demand_fetches_total{result="ok"} [1-9]' "$T/metrics" || fail "metrics count no on-demand fetch"
grep -q '^cairn_chunk_reads_total{result="miss"} [1-9]' "$T/metrics" || fail "metrics count no chunk waited for"

# A chunk that fails its hash while served: the download is cut (never
# wrong), the edge fetches the chunk again from upstream, the retry is whole.
P=$(find "$T/edge" -name 'pack-*' -size +20M | head -1)
[ -n "$P" ] || fail "no pack file holds acme/big on the edge"
printf 'XXXXXXXX' | dd of="$P" bs=1 seek=$(($(stat -c %s "$P") / 2)) conv=notrunc status=none
if curl -sf -o "$T/big3" "$URL"; then cmp -s "$T/big3" "$T/big/model.safetensors" && fail "no corruption hit"; fi
cmp -s "$T/big3" "$T/big/model.safetensors" && fail "a corrupt download completed"
cmp -n "$(stat -c %s "$T/big3")" "$T/big3" "$T/big/model.safetensors" || fail "a cut download holds wrong bytes"
for _ in $(seq 300); do grep -q 'on-demand: committed acme/big' <(grep -A100 'repairing acme/big' "$T/edge.log") && break; sleep 0.1; done
grep -q 'on-demand: repairing acme/big' "$T/edge.log" || fail "no repair started"
curl -sf -o "$T/big4" "$URL" || fail "download after the repair"
cmp "$T/big4" "$T/big/model.safetensors" || fail "bytes after the repair"

# Outside the policy: the Hub's RepoNotFound, nothing fetched.
hdr=$(curl -s -D - -o /dev/null "http://$edge_HTTP/api/models/acme/secret")
echo "$hdr" | grep -qi '^X-Error-Code: RepoNotFound' || fail "acme/secret: $hdr"
! grep -q 'fetching acme/secret' "$T/edge.log" || fail "acme/secret was fetched"
echo "pull_through OK"
