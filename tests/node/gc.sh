#!/bin/bash
# Garbage collection end to end on a real node: chunks an upload left behind
# (its publisher killed) are found by `cairn-node gc --dry-run`, removed by
# `cairn-node gc` while the node serves, and their disk space comes back;
# every release stays whole and pulls verified; a stopped node is collected
# offline; status, metrics and the status page report the pass. The grace
# period is 0 here (gc_grace_hours = 0) so that the test need not wait a day;
# the touch window (a session lifetime) ends with the node's restart.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"

printf '[node]\ngc_grace_hours = 0\ngc_interval_hours = 0\n' >"$T/gc.toml"
node_start a --config "$T/gc.toml"
make_model "$T/m1" 1
publish "$a_GRPC" "$T/m1" acme/m 1.0
# A publish of 1.1 killed mid-upload: the chunks it sent are garbage.
store_bytes() { du -sk --block-size=1 "$T/a/chunks/packs" | cut -f1; }
mkdir -p "$T/m2" && head -c 300000000 /dev/urandom >"$T/m2/big.bin"
cut_publish a "$T/m2" acme/m 1.1 30000000

# A restart forgets which chunks clients were told of (their sessions are gone).
node_stop a
node_start a --config "$T/gc.toml"
before=$(store_bytes)
"$NODE" gc --dry-run --data "$T/a" >"$T/dry.out" 2>&1 || fail "gc --dry-run: $(cat "$T/dry.out")"
grep -q "would remove [1-9][0-9]* of" "$T/dry.out" || fail "dry run found nothing: $(cat "$T/dry.out")"
[ "$(store_bytes)" -ge "$before" ] || fail "a dry run freed space"
"$NODE" gc --data "$T/a" >"$T/gc.out" 2>&1 || fail "gc: $(cat "$T/gc.out")"
removed=$(sed -n 's/.*: removed \([0-9]*\) of.*/\1/p' "$T/gc.out")
[ "${removed:-0}" -gt 0 ] || fail "gc removed nothing: $(cat "$T/gc.out")"
grep -q "garbage collection: removed $removed of" "$T/a.log" || fail "the node did not log the pass"
after=$(store_bytes)
# The killed upload's bytes came back (holes punched in the packs).
[ $((before - after)) -gt 25000000 ] || fail "only $((before - after)) bytes freed ($before -> $after)"
# 1.0 is whole: an offline check after the pull, and a verified pull now.
CAIRN_NODE=$a_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/m@1.0 --out "$T/got" >/dev/null 2>"$T/pull.err" ||
  fail "pull after gc: $(cat "$T/pull.err")"
diff -r -x .cairn "$T/m1" "$T/got" >&2 || fail "the pulled release differs"
# Nothing left: a second pass removes nothing.
"$NODE" gc --data "$T/a" >"$T/gc2.out" 2>&1 || fail "second gc: $(cat "$T/gc2.out")"
grep -q ": removed 0 of" "$T/gc2.out" || fail "second pass: $(cat "$T/gc2.out")"
# Reported in status, metrics and the page.
CAIRN_NODE=$a_GRPC "$CAIRN" status --json >"$T/status.json" || fail "status"
[ "$(jq '.gc.chunks_removed_total' "$T/status.json")" = "$removed" ] || fail "status: $(jq -c .gc "$T/status.json")"
curl -sf "http://$a_HTTP/metrics" >"$T/metrics" || fail "metrics"
grep -q "^cairn_gc_chunks_removed_total $removed$" "$T/metrics" || fail "metrics: $(grep "^cairn_gc" "$T/metrics")"
grep -q "^cairn_gc_passes_total 2$" "$T/metrics" || fail "passes: $(grep cairn_gc_passes "$T/metrics")"
curl -sf "http://$a_HTTP/" >"$T/page.html" || fail "status page"
grep -q "Garbage collection" "$T/page.html" || fail "no GC line on the status page"

# Offline: a stopped node is collected in-process (1.1's upload again, cut).
cut_publish a "$T/m2" acme/m 1.1 30000000
node_stop a
"$NODE" gc --data "$T/a" --config "$T/gc.toml" --trust "$T/trust.root" >"$T/off.out" 2>&1 ||
  fail "offline gc: $(cat "$T/off.out")"
grep -q ": removed [1-9][0-9]* of" "$T/off.out" || fail "offline gc removed nothing: $(cat "$T/off.out")"
"$NODE" scrub --now --data "$T/a" --trust "$T/trust.root" >"$T/scrub.out" 2>&1 ||
  fail "a release lacks chunks after gc: $(cat "$T/scrub.out")"
echo "gc OK"
