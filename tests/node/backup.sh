#!/bin/bash
# Backups end to end: `cairn-node backup` of a follower while it serves and
# replicates, the copy scrubbed offline (every release whole), restored as
# another node that catches up with its upstream by the feed; a stopped
# node copied offline; targets that would be unsafe refused. Real binaries,
# nodes on 127.0.0.1 port 0.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"
releases() { curl -sf "http://$1/v1/releases/acme/m" | jq -r '.releases[].version' | sort | xargs; }
wait_releases() {  # HTTP WANT
  for _ in $(seq 300); do
    [ "$(releases "$1" 2>/dev/null)" = "$2" ] && return 0
    sleep 0.1
  done
  fail "$1 holds '$(releases "$1" 2>/dev/null)', not '$2'"
}
version_dir() {  # VERSION: a model folder whose weights differ per version
  make_model "$T/m$1" "$1"
  head -c 3000000 /dev/urandom >"$T/m$1/extra-$1.bin"
}

node_start a
version_dir 1
publish "$a_GRPC" "$T/m1" acme/m 1.0
printf '[[upstream]]\naddress = "%s"\n' "$a_GRPC" >"$T/follow.toml"
node_start b --config "$T/follow.toml"
wait_releases "$b_HTTP" "1.0"

# A backup while b serves and replicates 2.0.
version_dir 2
publish "$a_GRPC" "$T/m2" acme/m 2.0
"$NODE" backup --data "$T/b" --to "$T/bk" >"$T/backup.out" 2>"$T/backup.err" ||
  fail "online backup: $(cat "$T/backup.err")"
grep -q "backed up $T/b to $T/bk" "$T/backup.out" || fail "backup said: $(cat "$T/backup.out")"
grep -q "backup to $T/bk done" "$T/b.log" || fail "the node did not log the backup"
[ ! -e "$T/bk/LOCK" ] || fail "the backup holds the node's lock file"
# Every release in the copy is whole (an offline scrub of it finds nothing).
"$NODE" scrub --now --data "$T/bk" --trust "$T/trust.root" >"$T/bkscrub.out" 2>&1 ||
  fail "the backup is not consistent: $(cat "$T/bkscrub.out")"
# Unsafe or occupied targets are refused, and nothing is written.
"$NODE" backup --data "$T/b" --to "$T/bk" >/dev/null 2>"$T/again.err" && fail "backup over a backup"
grep -q "exists and is not empty" "$T/again.err" || fail "occupied target: $(cat "$T/again.err")"
"$NODE" backup --data "$T/b" --to "$T/b/inner" >/dev/null 2>"$T/inner.err" && fail "backup inside"
grep -q "outside the data directory" "$T/inner.err" || fail "inner target: $(cat "$T/inner.err")"

# b is lost; its backup becomes node c on another machine, which catches up
# with what a published since (3.0) through the feed.
kill "$b_PID"
wait "$b_PID" 2>/dev/null || true
version_dir 3
publish "$a_GRPC" "$T/m3" acme/m 3.0
mv "$T/bk" "$T/c"
node_start c --config "$T/follow.toml"
wait_releases "$c_HTTP" "1.0 2.0 3.0"
for v in 1 3; do
  curl -sf -o "$T/got" "http://$c_HTTP/v1/files/acme/m/$v.0/extra-$v.bin" || fail "download $v.0 from c"
  cmp -s "$T/got" "$T/m$v/extra-$v.bin" || fail "c served other bytes for $v.0"
done

# A stopped node is copied offline (it needs the trust root to open).
kill "$a_PID"
wait "$a_PID" 2>/dev/null || true
"$NODE" backup --data "$T/a" --to "$T/abk" >/dev/null 2>"$T/off.err" && fail "offline without trust"
grep -q "pass --trust" "$T/off.err" || fail "offline: $(cat "$T/off.err")"
"$NODE" backup --data "$T/a" --to "$T/abk" --trust "$T/trust.root" >"$T/off.out" ||
  fail "offline backup"
mv "$T/abk" "$T/d"
node_start d
[ "$(releases "$d_HTTP")" = "1.0 2.0 3.0" ] || fail "the offline copy serves '$(releases "$d_HTTP")'"
echo "backup OK"
