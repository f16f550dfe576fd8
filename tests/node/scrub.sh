#!/bin/bash
# The scrub end to end: a byte flipped in a replicated node's pack file is
# found by `cairn-node scrub --now` (a signal to the running node), the chunk
# is dropped and fetched again from upstream before any client asks for it,
# and cairn status, /metrics say so; a stopped node is scrubbed offline and
# the damage is reported with its exit code. Real binaries, 127.0.0.1 port 0.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"
metric() { curl -s "http://$1/metrics" | sed -n "s/^$2 //p"; }
# flip FILE OFFSET: one byte of a pack file changes, as a rotting disk would.
flip() {
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(((b ^ 90) & 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# wait_pass HTTP BEFORE: until the node ended a pass after BEFORE passes.
wait_pass() {
  for _ in $(seq 300); do
    [ "$(metric "$1" cairn_scrub_passes_total)" -gt "$2" ] && return 0
    sleep 0.1
  done
  fail "no scrub pass ended on $1"
}

node_start a
make_model "$T/m" 1
publish "$a_GRPC" "$T/m" acme/m 1.0
printf '[[upstream]]\naddress = "%s"\n' "$a_GRPC" >"$T/b.toml"
node_start b --config "$T/b.toml"
wait_replicated "$b_HTTP" acme/m
[ "$(metric "$b_HTTP" cairn_scrub_rate_limit_bytes_per_second)" = $((32 << 20)) ] ||
  fail "the default scrub cap is not 32 MiB/s"

# A rotting disk under node b: one byte of its first chunk's bytes.
PACK=$(ls "$T"/b/chunks/packs/pack-*.dat | head -1)
[ "$(stat -c %s "$PACK")" -gt 1000 ] || fail "node b holds no pack bytes"
flip "$PACK" 140
before=$(metric "$b_HTTP" cairn_scrub_passes_total)
"$NODE" scrub --now --data "$T/b" >"$T/scrub.out" || fail "scrub --now"
grep -q "asked cairn-node (pid $b_PID)" "$T/scrub.out" || fail "scrub --now: $(cat "$T/scrub.out")"
wait_pass "$b_HTTP" "$before"
[ "$(metric "$b_HTTP" cairn_scrub_chunks_bad_total)" = 1 ] || fail "the scrub did not find the bad chunk"
[ "$(metric "$b_HTTP" cairn_scrub_releases_damaged)" = 1 ] || fail "the release was not found damaged"
[ "$(metric "$b_HTTP" cairn_scrub_repairs_total)" = 1 ] || fail "no repair was asked for"
grep -q "scrub: stored chunk .* is corrupt" "$T/b.log" || fail "the bad chunk is not in the log"
# The repair comes from upstream with no client asking: the next pass finds
# the release whole.
for _ in $(seq 100); do
  before=$(metric "$b_HTTP" cairn_scrub_passes_total)
  "$NODE" scrub --now --data "$T/b" >/dev/null
  wait_pass "$b_HTTP" "$before"
  [ "$(metric "$b_HTTP" cairn_scrub_releases_damaged)" = 0 ] && break
done
[ "$(metric "$b_HTTP" cairn_scrub_releases_damaged)" = 0 ] || fail "the release was not repaired"
[ "$(metric "$b_HTTP" cairn_scrub_chunks_bad_total)" = 1 ] || fail "the repaired chunk is bad again"
curl -sf -o "$T/got" "http://$b_HTTP/v1/files/acme/m/1.0/model.safetensors" || fail "download from b"
cmp -s "$T/got" "$T/m/model.safetensors" || fail "b served other bytes"
[ "$(metric "$b_HTTP" cairn_verification_failures_total)" = 0 ] ||
  fail "a client met the bad chunk: the scrub did not repair it first"
CAIRN_NODE=$b_GRPC "$CAIRN" status >"$T/status.txt" || fail "cairn status"
grep -q "scrub: last full pass 20.*1 bad chunk(s) dropped" "$T/status.txt" ||
  fail "cairn status: $(cat "$T/status.txt")"
CAIRN_NODE=$b_GRPC "$CAIRN" status --json | jq -e '.scrub.chunks_bad == 1 and .scrub.passes >= 2' \
  >/dev/null || fail "cairn status --json has no scrub"
curl -sf -o "$T/page.html" "http://$b_HTTP/" || fail "status page"
grep -q "<th>Scrub</th><td>last full pass" "$T/page.html" || fail "the status page has no scrub line"

# The upstream is down when the damage is found: the repair fails, is
# counted and said, and is asked for again (after scrub_repair_retry_seconds,
# doubling) until the upstream is back and the release whole.
kill "$b_PID"
wait "$b_PID" 2>/dev/null || true
printf '[node]\nscrub_repair_retry_seconds = 1\n[[upstream]]\naddress = "%s"\n' "$a_GRPC" >"$T/b.toml"
node_start b --config "$T/b.toml"
kill "$a_PID"
wait "$a_PID" 2>/dev/null || true
# (Byte 140 of the first pack is the record dropped above: flip another.)
flip "$(ls "$T"/b/chunks/packs/pack-*.dat | head -1)" 1000000
before=$(metric "$b_HTTP" cairn_scrub_passes_total)
"$NODE" scrub --now --data "$T/b" >/dev/null || fail "scrub --now with the upstream down"
wait_pass "$b_HTTP" "$before"
[ "$(metric "$b_HTTP" cairn_scrub_repairs_failed_total)" -ge 1 ] || fail "a failed repair is not counted"
CAIRN_NODE=$b_GRPC "$CAIRN" status --json | jq -e '.scrub.last_error | test("repair of acme/m 1.0")' \
  >/dev/null || fail "a failed repair is not the scrub's last error"
LISTEN=$a_GRPC node_start a
for _ in $(seq 300); do
  [ "$(metric "$b_HTTP" cairn_scrub_releases_damaged)" = 0 ] && break
  sleep 0.1
done
[ "$(metric "$b_HTTP" cairn_scrub_releases_damaged)" = 0 ] || fail "the repair was not asked for again"
grep -q "scrub: every release is whole again" "$T/b.log" || fail "the recovery is not logged"
curl -sf -o "$T/got" "http://$b_HTTP/v1/files/acme/m/1.0/model.safetensors" || fail "download after repair"
cmp -s "$T/got" "$T/m/model.safetensors" || fail "b served other bytes after the repair"

# A stopped node without an upstream, scrubbed offline.
kill "$a_PID"
wait "$a_PID" 2>/dev/null || true
flip "$(ls "$T"/a/chunks/packs/pack-*.dat | head -1)" 140
"$NODE" scrub --now --data "$T/a" 2>"$T/offline.err" && fail "offline scrub without a trust file"
grep -q "no node serves .*--trust" "$T/offline.err" || fail "offline scrub: $(cat "$T/offline.err")"
rc=0
"$NODE" scrub --now --data "$T/a" --trust "$T/trust.root" >"$T/offline.out" 2>"$T/offline.err" || rc=$?
[ "$rc" = 2 ] || fail "offline scrub of a damaged node exited $rc: $(cat "$T/offline.out" "$T/offline.err")"
grep -q "1 bad (dropped); 1 releases lack 1 chunks" "$T/offline.out" || fail "offline: $(cat "$T/offline.out")"
grep -q "start the node with an upstream" "$T/offline.err" || fail "offline: no next step"
"$NODE" scrub --data "$T/a" >"$T/nonow.out" 2>&1 && fail "scrub without --now ran"
grep -q -- "--now is required" "$T/nonow.out" || fail "scrub without --now: $(cat "$T/nonow.out")"
echo "scrub OK"
