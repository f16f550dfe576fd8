#!/usr/bin/env bash
# The status page rendered by headless Chromium (Debian's chromium): the
# visible text names the node, its trust root, the release and its tag; a
# phone-sized screenshot is saved in the test's output folder. /metrics is
# parsed as Prometheus text and its counters follow the requests made.
source "$(dirname "$0")/lib.sh"
node_start n
make_model "$T/m" 5
publish "$n_GRPC" "$T/m" acme/m 2.1
curl -sf -o /dev/null "http://$n_HTTP/acme/m/resolve/main/config.json" || fail "resolve"
curl -s -o /dev/null "http://$n_HTTP/acme/m/resolve/main/no-such-file"

command -v chromium >/dev/null || fail "chromium is not installed (tests/gateway/install-test-deps.sh)"
CHROME=(chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
  --user-data-dir="$T/chromium" --window-size=412,915)
timeout 120 "${CHROME[@]}" --dump-dom "http://$n_HTTP/" >"$T/dom.html" 2>"$T/chromium.log" ||
  fail "chromium --dump-dom"
# Visible text: the rendered DOM without tags.
TEXT=$(sed -e 's/<style>.*<\/style>//' -e 's/<[^>]*>/ /g' "$T/dom.html" | tr -s ' \n' ' ')
for want in "Cairn mirror node" "Trust root version 2" "acme/m" "2.1" "latest" "Upstreams" "free of"; do
  echo "$TEXT" | grep -qF "$want" || fail "status page lacks '$want': $TEXT"
done
mkdir -p "$OUT"
rm -f "$OUT/status_page.png"
timeout 120 "${CHROME[@]}" --screenshot="$OUT/status_page.png" "http://$n_HTTP/" 2>>"$T/chromium.log" ||
  fail "chromium --screenshot"
[ "$(head -c 8 "$OUT/status_page.png" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] ||
  fail "no PNG screenshot"
echo "screenshot: $OUT/status_page.png ($(stat -c %s "$OUT/status_page.png") bytes)"

curl -sf "http://$n_HTTP/metrics" >"$T/metrics" || fail "/metrics"
# Every line is a comment or NAME{LABELS} VALUE.
bad=$(grep -vE '^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+)$' "$T/metrics" || true)
[ -z "$bad" ] || fail "not Prometheus text: $bad"
val() { awk -v k="$1" '$1 == k { print $2 }' "$T/metrics"; }
[ "$(val 'cairn_http_requests_total{endpoint="hf_resolve",code="200"}')" = 1 ] || fail "resolve 200 not counted"
[ "$(val 'cairn_http_requests_total{endpoint="hf_resolve",code="404"}')" = 1 ] || fail "resolve 404 not counted"
[ "$(val 'cairn_releases_held')" = 1 ] || fail "releases held"
[ "$(val 'cairn_trust_root_version')" -ge 1 ] || fail "trust root version"
[ "$(val 'cairn_disk_free_bytes')" -gt 0 ] || fail "disk free"
[ "$(val 'cairn_store_bytes')" -gt 6000000 ] || fail "store size"
[ "$(val 'cairn_http_bytes_sent_total{source="store"}')" -gt 0 ] || fail "bytes sent"
# config.json was checked with the CRC the node recorded, not re-hashed.
[ "$(val 'cairn_http_chunk_checks_total{how="crc32c"}')" -ge 1 ] || fail "CRC checks not counted"
[ "$(val 'cairn_http_chunk_checks_total{how="sha256"}')" = 0 ] || fail "chunks re-hashed"
echo "status_page OK"
