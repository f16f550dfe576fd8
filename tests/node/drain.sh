#!/bin/bash
# A graceful stop: on SIGTERM a download in progress finishes within
# [node] drain_seconds while new connections are refused; past the deadline
# it is cut, and the log says so.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"

make_model "$T/m" 1
head -c 24000000 /dev/urandom >"$T/m/model.safetensors"
URL_PATH=/v1/files/acme/m/1.0/model.safetensors
# slow_get HTTP OUT: a 24 MB download at 4 MB/s (about 6 s; the node is done
# sending about 2.5 s before the end, when socket buffers hold the rest).
slow_get() { curl -s --limit-rate 4M -o "$2" -w '%{http_code}' "http://$1$URL_PATH" >"$2.code" 2>/dev/null; }
# until DESC CMD...: polls CMD (a condition, not a guess at timing) for up to 10 s.
until_true() {
  local what=$1
  shift
  for _ in $(seq 1000); do "$@" && return 0; sleep 0.01; done
  fail "timed out waiting for $what"
}
receiving() { [ -s "$1" ] && [ "$(stat -c %s "$1")" -gt 1000000 ]; }
stopping() { grep -q "http: draining, no new connections" "$1"; }

printf '[node]\ndrain_seconds = 15\n' >"$T/long.toml"
node_start a --config "$T/long.toml"
publish "$a_GRPC" "$T/m" acme/m 1.0
slow_get "$a_HTTP" "$T/got" &
get=$!
until_true "the download to start" receiving "$T/got"
kill -TERM "$a_PID"
until_true "the node to start draining" stopping "$T/a.log"
# Draining: a new connection is not accepted.
if curl -sf -m 2 -o /dev/null "http://$a_HTTP/healthz" 2>/dev/null; then fail "a new request was answered while draining"; fi
wait "$get" || true
cmp -s "$T/got" "$T/m/model.safetensors" || fail "the download in progress was cut ($(stat -c %s "$T/got") bytes)"
wait "$a_PID" 2>/dev/null || true
grep -q "stopped cleanly" "$T/a.log" || fail "no clean stop: $(tail -3 "$T/a.log")"

printf '[node]\ndrain_seconds = 1\n' >"$T/short.toml"
node_start b --config "$T/short.toml"
publish "$b_GRPC" "$T/m" acme/m 1.0
slow_get "$b_HTTP" "$T/got2" &
get=$!
until_true "the download to start" receiving "$T/got2"
kill -TERM "$b_PID"
wait "$get" || true
wait "$b_PID" 2>/dev/null || true
[ "$(stat -c %s "$T/got2")" -lt 24000000 ] || fail "a download longer than the deadline was not cut"
grep -q "HTTP answers still in progress were cut" "$T/b.log" || fail "the cut was not logged: $(tail -3 "$T/b.log")"
# Pull-through: a download through an edge that is fetching the release on
# demand (at the upstream's rate cap, 8 MB/s: about 3 s) goes on through the
# drain, and so does the fetch it waits on.
node_start c
publish "$c_GRPC" "$T/m" acme/m 1.0
printf '[node]\ndrain_seconds = 15\n[[upstream]]\naddress = "%s"\ninclude = ["nobody/*"]\nmax_bytes_per_second = 8_000_000\n' \
  "$c_GRPC" >"$T/edge.toml"
node_start d --config "$T/edge.toml"
curl -s -o "$T/got3" "http://$d_HTTP/acme/m/resolve/main/model.safetensors" 2>/dev/null &
get=$!
until_true "the pull-through download to start" receiving "$T/got3"
kill -TERM "$d_PID"
wait "$get" || true
cmp -s "$T/got3" "$T/m/model.safetensors" ||
  fail "the pull-through download was cut ($(stat -c %s "$T/got3") bytes): $(grep -i 'on-demand\|cut' "$T/d.log" | tail -3)"
wait "$d_PID" 2>/dev/null || true
grep -q "stopped cleanly" "$T/d.log" || fail "no clean stop: $(tail -3 "$T/d.log")"
grep -q "on-demand: committed acme/m 1.0" "$T/d.log" || fail "the fetch did not complete: $(grep on-demand "$T/d.log" | tail -3)"
# A download that ends before the fetch it read from commits (a small file
# first): the fetch still goes on through the drain and commits, rather than
# being cut as soon as no answer is in progress.
node_start e --config "$T/edge.toml"
curl -sf -o "$T/got4" "http://$e_HTTP/acme/m/resolve/main/config.json" || fail "config.json through the edge"
cmp -s "$T/got4" "$T/m/config.json" || fail "config.json differs"
grep -q "on-demand: committed" "$T/e.log" && fail "the fetch committed before the stop: the case tests nothing"
kill -TERM "$e_PID"
wait "$e_PID" 2>/dev/null || true
grep -q "on-demand: committed acme/m 1.0" "$T/e.log" ||
  fail "a fetch in progress was cut by the drain: $(grep -i 'on-demand\|cut' "$T/e.log" | tail -3)"
echo "drain OK"
