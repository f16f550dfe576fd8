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
grep -q "exists and is not an empty directory" "$T/again.err" || fail "occupied target: $(cat "$T/again.err")"
ln -s "$T/b/meta" "$T/into-b"
for inner in "$T/b/inner" "$T/b/./x/../inner" "$T/into-b/x"; do
  for data in "$T/b" "$T/b/"; do
    "$NODE" backup --data "$data" --to "$inner" >/dev/null 2>"$T/inner.err" &&
      fail "a backup into the data directory ($data -> $inner)"
    grep -q "is inside the data directory" "$T/inner.err" || fail "inner target: $(cat "$T/inner.err")"
  done
done
[ -z "$(find "$T/b" -name 'inner*' -o -name 'x')" ] || fail "a refused backup wrote into the data directory"
"$NODE" backup --data "$T/b" --to "$T/nl
x" >/dev/null 2>"$T/nl.err" && fail "a target with a newline"
grep -q "without control characters" "$T/nl.err" || fail "newline target: $(cat "$T/nl.err")"
# Two at once: both answered, each with its own copy.
"$NODE" backup --data "$T/b" --to "$T/two1" >"$T/two1.out" 2>&1 &
one=$!
"$NODE" backup --data "$T/b" --to "$T/two2" >"$T/two2.out" 2>&1 || fail "the second of two backups: $(cat "$T/two2.out")"
wait "$one" || fail "the first of two backups: $(cat "$T/two1.out")"
[ -d "$T/two1/meta" ] && [ -d "$T/two2/meta" ] || fail "two backups at once did not both land"
[ -z "$(ls "$T/b" | grep '^backup\.')" ] || fail "request or answer files left behind: $(ls "$T/b")"
# A signal the node does not own is never sent: a process holding the lock
# that is not a serving node (an offline command, or anything) is left alone.
mkdir -p "$T/held/meta" && : >"$T/held/meta/CURRENT"
sleep 300 >/dev/null 2>&1 &
victim=$!
PIDS+=("$victim")
(exec 9>"$T/held/LOCK" && flock 9 && exec sleep 300) >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do flock -n "$T/held/LOCK" true 2>/dev/null || break; sleep 0.05; done
echo "$victim" >"$T/held/LOCK"
"$NODE" scrub --now --data "$T/held" >/dev/null 2>"$T/held.err" && fail "signalled a process that is not a node"
grep -q "is not a serving cairn-node" "$T/held.err" || fail "held: $(cat "$T/held.err")"
kill -0 "$victim" || fail "the process named in LOCK was signalled"
# A mistyped data directory is not taken for an empty node.
"$NODE" backup --data "$T/typo" --to "$T/typo-bk" --trust "$T/trust.root" >/dev/null 2>"$T/typo.err" &&
  fail "a backup of a directory with no node data"
grep -q "no node data in $T/typo" "$T/typo.err" || fail "typo: $(cat "$T/typo.err")"
[ ! -e "$T/typo" ] && [ ! -e "$T/typo-bk" ] || fail "a refused backup created directories"

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
