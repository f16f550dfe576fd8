#!/usr/bin/env bash
# A regional node B follows an upstream A over a thin, long, lossy link
# (20 Mbit/s, 300 ms RTT, 2 % loss each way). Mid-release the link goes down
# for 30 s; B keeps serving, retries with backoff, and completes once the
# link is back, without fetching any chunk twice.
source "$(dirname "$0")/lib.sh"
SIZE=$((32 << 20))
ns a; ns b
wire a b cw0 10.77.0.1 10.77.0.2 --delay-ms 150 --loss 0.02 --rate-mbit 20
setup_model $SIZE
node a a 10.77.0.1:7000
inns a "$CAIRN" publish "$T/model" --name acme/m --version 1 --key "$T/pub.key" \
  --node 10.77.0.1:7000 >/dev/null
START=$(now)
node b b 127.0.0.1:7001 --upstream 10.77.0.1:7000
info() { inns b "$CAIRN" info acme/m --node 127.0.0.1:7001 --trust "$T/trust.root" --timeout 5 >/dev/null 2>&1; }
sleep "${DOWN_AFTER:-6}"
info && fail "B already had the whole release before the link dropped: nothing was tested"
echo "link down at $(elapsed "$START") s"
kill -USR1 "$WIRE_PID"
sleep 30
STATUS=$(inns b "$CAIRN" status --node 127.0.0.1:7001 --json)
ERR=$(echo "$STATUS" | jq -r '.upstreams[0].last_error')
[ -n "$ERR" ] || fail "B's status shows no error while its upstream is unreachable: $STATUS"
echo "B during the outage: last_error: $ERR"
kill -USR2 "$WIRE_PID"
echo "link up at $(elapsed "$START") s"
for _ in $(seq 600); do info && break; sleep 0.5; done
info || fail "B did not complete the release within 300 s of the link coming back"
echo "B holds the release at $(elapsed "$START") s"
inns b "$CAIRN" pull acme/m --node 127.0.0.1:7001 --trust "$T/trust.root" --out "$T/out" \
  --store "$T/cache" >/dev/null
cmp "$T/out/weights.bin" "$T/model/weights.bin" || fail "pulled bytes differ"
# Status is published when the sync that committed the release returns.
for _ in $(seq 100); do
  STATUS=$(inns b "$CAIRN" status --node 127.0.0.1:7001 --json)
  [ "$(echo "$STATUS" | jq '.upstreams[0].releases_replicated')" -ge 1 ] && break
  sleep 0.2
done
FETCHED=$(echo "$STATUS" | jq '.upstreams[0].bytes_fetched')
echo "B fetched $FETCHED bytes for a $SIZE-byte release"
[ "$FETCHED" -ge "$SIZE" ] || fail "B's status counts $FETCHED bytes fetched, less than the release: $STATUS"
[ "$FETCHED" -le $((SIZE + SIZE / 100 + 4096)) ] || fail "B fetched chunks twice ($FETCHED bytes)"
echo "PASS"
