#!/usr/bin/env bash
# deploy/ceph-local.sh starts a real one-node Ceph (monitor, memstore OSD,
# radosgw) on 127.0.0.1: its S3 API takes SigV4-signed bucket and object
# calls, ranged reads are exact, a wrong secret is refused, and stop leaves
# no daemon behind. The ground the S3 chunk store (issue 17) is built on.
# Where the cluster cannot start, this fails with the reason; needs root.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" != 0 ]; then echo "skipped: needs root for the Ceph daemons"; exit 77; fi
T=$(mktemp -d /var/tmp/cairn-s3test.XXXXXX)
cleanup() { "$REPO/deploy/ceph-local.sh" stop "$T/ceph" || true; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
"$REPO/deploy/ceph-local.sh" start "$T/ceph" --owner $$ --memory-mib 512
source "$T/ceph/env"
PIDS=$(cat "$T/ceph/pids")
[ "$(echo $PIDS | wc -w)" = 3 ] || fail "expected three daemons, got: $PIDS"
# s3 [curl args...]: a SigV4-signed call. curl 7.88 signs the query string
# as given: a "/" in it must be sent as %2F.
s3() {
  curl -s --aws-sigv4 "aws:amz:$CAIRN_S3_REGION:s3" --user "$CAIRN_S3_ACCESS_KEY:$CAIRN_S3_SECRET_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}
code() { s3 -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code -X PUT "$CAIRN_S3_ENDPOINT/cairn-test")" = 200 ] || fail "bucket not created"
head -c 5000000 /dev/urandom >"$T/obj"
[ "$(code -T "$T/obj" "$CAIRN_S3_ENDPOINT/cairn-test/packs/0001")" = 200 ] || fail "object not stored"
s3 -o "$T/back" "$CAIRN_S3_ENDPOINT/cairn-test/packs/0001"
cmp -s "$T/obj" "$T/back" || fail "object read back differs"
s3 -o "$T/part" -H 'Range: bytes=1000000-1065535' "$CAIRN_S3_ENDPOINT/cairn-test/packs/0001"
cmp -s "$T/part" <(tail -c +1000001 "$T/obj" | head -c 65536) || fail "ranged read differs"
s3 "$CAIRN_S3_ENDPOINT/cairn-test?list-type=2&prefix=packs%2F" | grep -q '<Key>packs/0001</Key>' ||
  fail "listing does not name the object"
BAD=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$CAIRN_S3_REGION:s3" \
  --user "$CAIRN_S3_ACCESS_KEY:wrong" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
  "$CAIRN_S3_ENDPOINT/cairn-test/packs/0001")
[ "$BAD" = 403 ] || fail "a wrong secret got $BAD"
[ "$(code -X DELETE "$CAIRN_S3_ENDPOINT/cairn-test/packs/0001")" = 204 ] || fail "object not deleted"
"$REPO/deploy/ceph-local.sh" stop "$T/ceph"
for p in $PIDS; do kill -0 "$p" 2>/dev/null && fail "daemon $p still running after stop"; done
echo "ceph_local OK"
