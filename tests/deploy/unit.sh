#!/usr/bin/env bash
# Checks deploy/cairn-node.service as far as a test without a running systemd
# can (issue 12 #16):
#  1. `systemd-analyze verify` accepts it, with no warning (skipped where
#     systemd-analyze is missing);
#  2. its ExecStart command line, with %d pointing at a credentials directory
#     as LoadCredential= makes one, starts a node as an unprivileged user
#     (DynamicUser=) that cannot read the root-owned 0600 trust root in
#     /etc/cairn, and the node serves;
#  3. the same user given the 0600 file directly fails, naming it (what the
#     old unit did).
# Usage: unit.sh BUILD_DIR. Needs root (setpriv to another user); skips (77)
# otherwise.
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
UNIT="$SRC/deploy/cairn-node.service"
NODE="$BUILD/mirror-node/cairn-node"
CAIRN="$BUILD/client/cairn"
[ "$(id -u)" = 0 ] || { echo "skip: needs root"; exit 77; }
WORK=$(mktemp -d)
chmod 755 "$WORK"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if command -v systemd-analyze >/dev/null; then
  sed "s|/usr/local/bin/cairn-node|$NODE|" "$UNIT" >"$WORK/cairn-node.service"
  if ! out=$(systemd-analyze verify "$WORK/cairn-node.service" 2>&1) || [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify: $out"
    exit 1
  fi
  echo "ok: systemd-analyze verify"
else
  echo "note: no systemd-analyze here; unit syntax not verified"
fi

# The ExecStart line, as systemd would run it.
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
[ -n "$EXEC" ] || { echo "FAIL: no ExecStart"; exit 1; }
grep -q '^LoadCredential=trust.root:/etc/cairn/trust.root$' "$UNIT" ||
  { echo "FAIL: the unit does not load the trust root as a credential"; exit 1; }
grep -q '^DynamicUser=yes$' "$UNIT" || { echo "FAIL: expected DynamicUser=yes"; exit 1; }

# /etc/cairn as an operator sets it up: root-owned, trust root 0600.
ETC="$WORK/etc/cairn"
mkdir -p "$ETC"
(cd "$WORK" && "$CAIRN" keygen --out root.key >/dev/null &&
  "$CAIRN" trust init --key root.key --out "$ETC/trust.root" >/dev/null)
chmod 600 "$ETC/trust.root"
sed -e "s|^data = .*|data = \"$WORK/state\"|" -e 's|^listen = .*|listen = "127.0.0.1:0"|' \
  -e 's|^http = .*|http = "127.0.0.1:0"|' \
  "$SRC/deploy/node.toml" >"$ETC/node.toml"
chmod 644 "$ETC/node.toml"
# StateDirectory=: owned by the service user. LoadCredential=: a directory
# only the service user reads, holding copies of the files.
USER_ID=nobody
mkdir -p "$WORK/state" "$WORK/creds"
cp "$ETC/trust.root" "$WORK/creds/trust.root"
chown -R "$USER_ID" "$WORK/state" "$WORK/creds"
chmod 500 "$WORK/creds"
chmod 400 "$WORK/creds/trust.root"
CMD=${EXEC//\/usr\/local\/bin\/cairn-node/$NODE}
CMD=${CMD//\/etc\/cairn/$ETC}
CMD=${CMD//%d/$WORK/creds}
as_service() { setpriv --reuid="$USER_ID" --regid=nogroup --clear-groups --inh-caps=-all "$@"; }

# 3 first: the root-owned file itself is unreadable to the service user.
if as_service "$NODE" serve --config "$ETC/node.toml" >"$WORK/direct.out" 2>&1; then
  echo "FAIL: the service user read a root-owned 0600 trust root"
  exit 1
fi
grep -q "trust.root" "$WORK/direct.out" ||
  { echo "FAIL: the refusal does not name the file: $(cat "$WORK/direct.out")"; exit 1; }
echo "ok: without the credential the node refuses, naming the file"

# 2: the unit's command line.
# shellcheck disable=SC2086  # the unit's words, as systemd splits them
setpriv --reuid="$USER_ID" --regid=nogroup --clear-groups --inh-caps=-all \
  $CMD >"$WORK/node.out" 2>"$WORK/node.log" &
PID=$!
for _ in $(seq 200); do
  grep -q listening "$WORK/node.out" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.05
done
ADDR=$(sed -n 's/^cairn-node listening on //p' "$WORK/node.out")
[ -n "$ADDR" ] || { echo "FAIL: the unit's command did not start: $(cat "$WORK/node.log")"; exit 1; }
"$CAIRN" status --node "$ADDR" >"$WORK/status.out" ||
  { echo "FAIL: cairn status"; exit 1; }
[ "$(stat -c %U "$WORK/state/meta")" = "$USER_ID" ] ||
  { echo "FAIL: the data directory is not the service user's"; exit 1; }
echo "ok: the unit's command line serves as an unprivileged user from its credentials"
# The runbook's admin commands, run as root against the service user's node:
# the node reads root's request (a backup into a folder the service user
# owns, as StateDirectory= would make).
mkdir -p "$WORK/backups" && chown "$USER_ID" "$WORK/backups"
"$NODE" backup --config "$ETC/node.toml" --to "$WORK/backups/b1" >"$WORK/backup.out" 2>&1 ||
  { echo "FAIL: backup as root of the service user's node: $(cat "$WORK/backup.out")"; exit 1; }
[ -f "$WORK/backups/b1/meta/CURRENT" ] || { echo "FAIL: the backup holds no database"; exit 1; }
echo "ok: root's backup request is answered by the service user's node"
kill "$PID"
rc=0
wait "$PID" || rc=$?
[ "$rc" = 0 ] || { echo "FAIL: the node did not stop cleanly (exit $rc): $(tail -3 "$WORK/node.log")"; exit 1; }
PID=
echo PASS
