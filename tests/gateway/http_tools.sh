#!/usr/bin/env bash
# Plain HTTP with the tools people have: curl (Range, resume after a cut,
# If-None-Match), wget -c, and aria2c splitting one file across two nodes;
# every download compared byte for byte.
source "$(dirname "$0")/lib.sh"
node_start a
make_model "$T/m" 3
publish "$a_GRPC" "$T/m" acme/m 1.0
printf '[[upstream]]\naddress = "%s"\n' "$a_GRPC" >"$T/b.toml"
node_start b --config "$T/b.toml"
wait_replicated "$b_HTTP" acme/m
W=$T/m/model.safetensors
SIZE=$(stat -c %s "$W")
URL_A="http://$a_HTTP/v1/files/acme/m/latest/model.safetensors"
URL_B="http://$b_HTTP/v1/files/acme/m/1.0/model.safetensors"

curl -sf -o "$T/c" "$URL_A" && cmp "$T/c" "$W" || fail "curl whole file"
curl -sf -r 1000000-2999999 -o "$T/r" "$URL_A" || fail "curl range"
cmp "$T/r" <(tail -c +1000001 "$W" | head -c 2000000) || fail "curl range bytes"
# Resume after a cut: the first 1,234,567 bytes, then curl -C - and wget -c.
head -c 1234567 "$W" >"$T/cut1"
curl -sf -C - -o "$T/cut1" "$URL_A" || fail "curl -C -"
cmp "$T/cut1" "$W" || fail "curl -C - bytes"
head -c 3333333 "$W" >"$T/cut2"
wget -q -c -O "$T/cut2" "$URL_B" || fail "wget -c"
cmp "$T/cut2" "$W" || fail "wget -c bytes"
ETAG=$(curl -sI "$URL_A" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
[ "$ETAG" = "\"$(sha256sum "$W" | cut -c1-64)\"" ] || fail "ETag $ETAG is not the file's SHA-256"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$URL_A")" = 304 ] ||
  fail "If-None-Match"
[ "$(curl -s -o /dev/null -w '%{http_code}' -r "$SIZE-" "$URL_A")" = 416 ] || fail "range past the end"

# aria2c: one file from two nodes at once, in 1 MiB pieces.
aria2c -q -x 2 -s 2 -k 1M --min-split-size=1M --allow-overwrite=true -d "$T" -o aria \
  "$URL_A" "$URL_B" || fail "aria2c"
cmp "$T/aria" "$W" || fail "aria2c bytes"
sent() { curl -s "http://$1/metrics" | sed -n 's/^cairn_http_bytes_sent_total{source="store"} //p'; }
# Whether aria2c uses the second node is its own choice, made on timing (on
# a loaded machine its first connection can finish the file before the
# second starts): up to three tries, each byte-exact, one of them split.
split=0
for _ in 1 2 3; do
  before_a=$(sent "$a_HTTP")
  before_b=$(sent "$b_HTTP")
  rm -f "$T/aria"
  aria2c -q -x 2 -s 2 -k 1M --min-split-size=1M --uri-selector=inorder -d "$T" -o aria "$URL_A" "$URL_B" ||
    fail "aria2c again"
  cmp "$T/aria" "$W" || fail "aria2c bytes again"
  # aria2c can exit before the nodes count their last write: wait for it.
  for _ in $(seq 50); do
    da=$(($(sent "$a_HTTP") - before_a)) db=$(($(sent "$b_HTTP") - before_b))
    [ $((da + db)) -ge "$SIZE" ] && break
    sleep 0.1
  done
  echo "aria2c took $da bytes from a and $db from b"
  if [ "$da" -gt 0 ] && [ "$db" -gt 0 ]; then split=1; break; fi
done
[ "$split" = 1 ] || fail "aria2c did not split the file across both nodes in three tries"
[ $((da + db)) -ge "$SIZE" ] || fail "the nodes sent fewer bytes than the file has"
# HTTPS on the HTTP port with the node's certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$T/tls.key" -out "$T/tls.pem" 2>/dev/null
node_start s --tls-cert "$T/tls.pem" --tls-key "$T/tls.key"
grep -q '(https)' "$T/s.out" || fail "the HTTP port did not say https"
CAIRN_TLS_CA=$T/tls.pem publish "$s_GRPC" "$T/m" acme/m 1.0
curl -sf --cacert "$T/tls.pem" -o "$T/tls-got" "https://$s_HTTP/acme/m/resolve/main/model.safetensors" ||
  fail "HTTPS download"
cmp "$T/tls-got" "$W" || fail "HTTPS bytes"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$s_HTTP/" || true)" != 200 ] ||
  fail "plain HTTP answered on the HTTPS port"
# (Read whole, then searched: grep -q stopping early would make curl fail on
# SIGPIPE, and pipefail report it.)
curl -sf --cacert "$T/tls.pem" -o "$T/tls-metrics" "https://$s_HTTP/metrics" || fail "metrics over HTTPS"
grep -q cairn_http_requests_total "$T/tls-metrics" || fail "metrics over HTTPS lack the request counts"
echo "http_tools OK"
