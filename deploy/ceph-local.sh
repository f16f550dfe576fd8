#!/usr/bin/env bash
# A throw-away one-node Ceph cluster with an S3 gateway, on 127.0.0.1 only,
# from Debian's Ceph packages, as root and without systemd: one monitor, one
# OSD keeping objects in memory (memstore), one radosgw. For the S3 chunk
# store's tests and benchmarks, and to try the multi-frontend layout on one
# machine (docs/operators.md, "Chunks in an S3 object store").
#
#   deploy/ceph-local.sh start DIR [--memory-mib N] [--owner PID]   # prints S3 endpoint and keys
#   deploy/ceph-local.sh stop DIR                      # stops what start started (by PID)
#
# start writes DIR/env (CAIRN_S3_ENDPOINT, CAIRN_S3_ACCESS_KEY,
# CAIRN_S3_SECRET_KEY, CAIRN_S3_REGION; source it) and DIR/pids. Everything
# the cluster holds lives in DIR and in the OSD's memory: stop it and it is
# gone. With --owner PID the cluster also stops by itself once process PID
# is gone (a test killed by its timeout leaves no daemons behind). Not for
# production: a real deployment has several OSDs on disks.
set -euo pipefail
usage() { echo "usage: $0 start|stop DIR [--memory-mib N]" >&2; exit 2; }
[ $# -ge 2 ] || usage
CMD=$1 DIR=$2
shift 2
MEMORY_MIB=2048 OWNER=
while [ $# -gt 0 ]; do
  case "$1" in
    --memory-mib) MEMORY_MIB=$2; shift 2 ;;
    --owner) OWNER=$2; shift 2 ;;
    *) usage ;;
  esac
done

stop() {
  [ -f "$DIR/pids" ] || return 0
  # Throw-away daemons: SIGKILL (a graceful OSD stop waits ~5 s for the
  # monitor), then wait for each to be gone.
  local pid
  for pid in $(cat "$DIR/pids"); do kill -9 "$pid" 2>/dev/null || true; done
  for pid in $(cat "$DIR/pids"); do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  done
  rm -f "$DIR/pids"
}
case "$CMD" in
  stop) stop; exit 0 ;;
  start) ;;
  *) usage ;;
esac

if [ "$(id -u)" != 0 ]; then echo "ceph-local: needs root (the Ceph daemons run as root here)" >&2; exit 1; fi
if ! command -v ceph-mon >/dev/null || ! command -v radosgw >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    ceph-mon ceph-osd radosgw ceph-common >/dev/null
fi
[ -e "$DIR/pids" ] && { echo "ceph-local: $DIR already has a cluster running (stop it first)" >&2; exit 1; }
rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MON_PORT=$(free_port) RGW_PORT=$(free_port)
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$DIR/ceph.conf
cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $DIR
admin socket = $DIR/\$name.asok
log file = $DIR/\$name.log
pid file = $DIR/\$name.pid
# One OSD: pools of one copy, placement within the host.
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
# Pool creation (radosgw makes several) waits on paxos: 1 s a proposal by
# default, ~12 s in all; 0.05 s brings the start under a few seconds.
paxos propose interval = 0.05
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = $((MEMORY_MIB << 20))
[mon.a]
mon data = $DIR/mon.a
[osd.0]
osd data = $DIR/osd.0
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw thread pool size = 64
rgw data = $DIR/rgw.a
keyring = $DIR/rgw.keyring
EOF
: >"$DIR/pids"
fail() {
  echo "ceph-local: $*" >&2
  for l in "$DIR"/*.log; do [ -f "$l" ] && { echo "--- $l" >&2; tail -5 "$l" >&2; }; done
  stop
  exit 1
}
trap 'fail "start failed (line $LINENO)"' ERR
CEPH=(ceph -c "$CONF" --connect-timeout 10)
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
  --cap mgr 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
ceph-mon -c "$CONF" -i a -f >"$DIR/mon.a.out" 2>&1 &
echo $! >>"$DIR/pids"
for _ in $(seq 200); do "${CEPH[@]}" mon stat >/dev/null 2>&1 && break; sleep 0.05; done
"${CEPH[@]}" mon stat >/dev/null 2>&1 || fail "the monitor did not answer"

OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
mkdir -p "$DIR/osd.0"
ceph-authtool --create-keyring "$DIR/osd.0/keyring" --gen-key -n osd.0 >/dev/null
echo "{\"cephx_secret\": \"$(ceph-authtool -p "$DIR/osd.0/keyring" -n osd.0)\"}" >"$DIR/osd.0/secret.json"
ID=$("${CEPH[@]}" osd new "$OSD_UUID" -i "$DIR/osd.0/secret.json")
[ "$ID" = 0 ] || fail "osd new answered '$ID'"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" --keyring "$DIR/osd.0/keyring" 2>"$DIR/osd-mkfs.err" ||
  fail "osd mkfs: $(tail -2 "$DIR/osd-mkfs.err")"
ceph-osd -c "$CONF" -i 0 -f --keyring "$DIR/osd.0/keyring" >"$DIR/osd.0.out" 2>&1 &
echo $! >>"$DIR/pids"
for _ in $(seq 400); do "${CEPH[@]}" osd stat 2>/dev/null | grep -q '1 up' && break; sleep 0.05; done
"${CEPH[@]}" osd stat | grep -q '1 up' || fail "the OSD did not come up"

"${CEPH[@]}" auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' -o "$DIR/rgw.keyring"
mkdir -p "$DIR/rgw.a"
radosgw -c "$CONF" -n client.rgw.a -f >"$DIR/rgw.a.out" 2>&1 &
echo $! >>"$DIR/pids"
for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break; sleep 0.05; done
curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" || fail "radosgw did not answer on 127.0.0.1:$RGW_PORT"

ACCESS=$(head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
SECRET=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
radosgw-admin -c "$CONF" -n client.admin user create --uid=cairn --display-name=cairn \
  --access-key="$ACCESS" --secret-key="$SECRET" >/dev/null
trap - ERR
# Clients sign with AWS SigV4 (region "default", the zonegroup's name) and
# must send x-amz-content-sha256 (curl 7.88's --aws-sigv4 does not by itself).
cat >"$DIR/env" <<EOF
export CAIRN_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export CAIRN_S3_REGION=default
export CAIRN_S3_ACCESS_KEY=$ACCESS
export CAIRN_S3_SECRET_KEY=$SECRET
EOF
chmod 600 "$DIR/env"
if [ -n "$OWNER" ]; then
  # Polls the owner once a second; stops the cluster when it is gone.
  SELF=$(readlink -f "$0")
  (
    while kill -0 "$OWNER" 2>/dev/null && [ -f "$DIR/pids" ]; do sleep 1; done
    "$SELF" stop "$DIR"
  ) </dev/null >/dev/null 2>&1 &
  disown
fi
echo "ceph-local: started in $SECONDS s"
echo "ceph-local: S3 at http://127.0.0.1:$RGW_PORT (credentials in $DIR/env); stop: $0 stop $DIR"
