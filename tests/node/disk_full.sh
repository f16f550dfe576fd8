#!/bin/bash
# A full disk, on small tmpfs file systems the test mounts: a publish and a
# replication that do not fit stop at the node's free-space floor with a
# clear error, the node keeps serving what it holds, and once space is freed
# the same commands (and the replication, on its own) complete with no
# restart or manual step; garbage collection on a full disk gives back what a
# cut publish left; a node started on a full disk refuses with the reason and
# changes nothing. Needs root (mount); exit 77 without it.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"
[ "$(id -u)" = 0 ] || { echo "skipped: mounting a small file system needs root"; exit 77; }
MOUNTS=()
umount_all() { for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done; }
small() {  # small DIR SIZE
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2" tmpfs "$1" || { echo "skipped: cannot mount tmpfs"; exit 77; }
  MOUNTS+=("$1")
}
# The nodes are stopped (lib.sh's trap) before the file systems go.
# Whether PID $1 is still a child of this shell: a PID reaped earlier may be
# another process's by now (pid_max is 32768 here, and threads take PIDs).
still_ours() { [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f2)" = "$$" ]; }
trap 'rc=$?; for p in "${PIDS[@]}"; do { still_ours "$p" && kill "$p" 2>/dev/null; } || true; done;
      for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; umount_all;
      (exit $rc); cleanup' EXIT
free_bytes() { df -B1 --output=avail "$1" | tail -1 | tr -d ' '; }
releases() { curl -sf "http://$1/v1/releases/$2" | jq -r '.releases[].version' | xargs; }

small "$T/sa" 48m
small "$T/sb" 40m
printf '[node]\nmin_free_bytes = 8388608\n' >"$T/a.toml"
mkdir -p "$T/sa/a" "$T/sb/b" && ln -s "$T/sa/a" "$T/a" && ln -s "$T/sb/b" "$T/b" && ln -s "$T/sb/b" "$T/c"
node_start a --config "$T/a.toml"
mkdir -p "$T/m1" "$T/m2"
head -c 10000000 /dev/urandom >"$T/m1/w.bin"
head -c 50000000 /dev/urandom >"$T/m2/w.bin"
publish "$a_GRPC" "$T/m1" acme/one 1

# 50 MB into 38 MB left: refused at the floor, with the reason.
CAIRN_NODE=$a_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$T/m2" --name acme/two --version 1 \
  --key "$T/pub.key" >/dev/null 2>"$T/full.err" && fail "a publish larger than the disk succeeded"
grep -q "disk is nearly full: .* keeps 8388608 free (min_free_bytes)" "$T/full.err" ||
  fail "the publish said: $(cat "$T/full.err")"
# The floor is what chunks leave; the metadata databases' own files (RocksDB
# preallocates its logs) may use part of it, which is what it is for.
[ "$(free_bytes "$T/sa")" -ge $((2 << 20)) ] || fail "the node filled its disk: $(free_bytes "$T/sa") bytes free"
# Still serving what it holds.
CAIRN_NODE=$a_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/one --out "$T/got1" >/dev/null ||
  fail "pull from a node whose disk is full"
cmp -s "$T/got1/w.bin" "$T/m1/w.bin" || fail "pulled other bytes"
# Space is freed (the file system grows): the same publish completes, without
# a restart, sending only what did not arrive before.
mount -o remount,size=160m "$T/sa"
CAIRN_NODE=$a_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$T/m2" --name acme/two --version 1 \
  --key "$T/pub.key" --json >"$T/pub2.json" || fail "the publish after space was freed"
[ "$(jq -r .bytes_uploaded "$T/pub2.json")" -lt 50000000 ] || fail "the second publish sent everything again"
CAIRN_NODE=$a_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/two --out "$T/got2" >/dev/null ||
  fail "pull of the release published after space was freed"
cmp -s "$T/got2/w.bin" "$T/m2/w.bin" || fail "pulled other bytes"

# A follower whose disk cannot hold both releases: replication stops at the
# floor and says why; once space is freed it completes on its own.
printf '[node]\nmin_free_bytes = 8388608\n[[upstream]]\naddress = "%s"\n' "$a_GRPC" >"$T/b.toml"
node_start b --config "$T/b.toml"
for _ in $(seq 300); do
  CAIRN_NODE=$b_GRPC "$CAIRN" status >"$T/bstatus.txt" 2>&1 || true
  grep -q "disk is nearly full" "$T/bstatus.txt" && break
  sleep 0.1
done
grep -q "disk is nearly full" "$T/bstatus.txt" || fail "the follower's status: $(cat "$T/bstatus.txt")"
[ "$(releases "$b_HTTP" acme/one)" = 1 ] || fail "the follower does not serve the release that fitted"
[ "$(free_bytes "$T/sb")" -ge $((2 << 20)) ] || fail "the follower filled its disk: $(free_bytes "$T/sb") bytes free"
mount -o remount,size=160m "$T/sb"
for _ in $(seq 600); do
  [ "$(releases "$b_HTTP" acme/two 2>/dev/null)" = 1 ] && break
  sleep 0.1
done
[ "$(releases "$b_HTTP" acme/two 2>/dev/null)" = 1 ] || fail "replication did not resume after space was freed"
curl -sf -o "$T/got3" "http://$b_HTTP/v1/files/acme/two/1/w.bin" || fail "download from the follower"
cmp -s "$T/got3" "$T/m2/w.bin" || fail "the follower served other bytes"

# Garbage collection on a full disk: what a publish cut by the floor left is
# collected (the floor, 20 MiB, is above the 16 MiB a node needs to start, as
# the default 1 GiB is) (holes punched, 16 MiB packs compacted where space allows) and the
# node takes new releases again with no other step.
small "$T/sg" 64m
mkdir -p "$T/sg/g" && ln -s "$T/sg/g" "$T/g"
printf '[node]\nmin_free_bytes = 20971520\ngc_grace_hours = 0\ngc_interval_hours = 0\npack_file_mib = 16\ngc_compact_below_percent = 90\n' >"$T/g.toml"
node_start g --config "$T/g.toml"
publish "$g_GRPC" "$T/m1" acme/g1 1
CAIRN_NODE=$g_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$T/m2" --name acme/g2 --version 1 \
  --key "$T/pub.key" >/dev/null 2>"$T/gfull.err" && fail "a publish larger than g's disk succeeded"
grep -q "disk is nearly full" "$T/gfull.err" || fail "g's publish said: $(cat "$T/gfull.err")"
mkdir -p "$T/m3" && head -c 15000000 /dev/urandom >"$T/m3/w.bin"
CAIRN_NODE=$g_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$T/m3" --name acme/g3 --version 1 \
  --key "$T/pub.key" >/dev/null 2>&1 && fail "g took 15 MB more on a full disk"
node_stop g
node_start g --config "$T/g.toml"
"$NODE" gc --data "$T/g" >"$T/ggc.out" 2>&1 || fail "gc on a full disk: $(cat "$T/ggc.out")"
grep -q ": removed [1-9][0-9]* of" "$T/ggc.out" || fail "gc on a full disk removed nothing: $(cat "$T/ggc.out")"
[ "$(free_bytes "$T/sg")" -ge $((24 << 20)) ] || fail "gc gave back too little: $(free_bytes "$T/sg") bytes free; $(cat "$T/ggc.out")"
publish "$g_GRPC" "$T/m3" acme/g3 1
CAIRN_NODE=$g_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/g1 --out "$T/g1" >/dev/null || fail "pull of one after gc"
cmp -s "$T/g1/w.bin" "$T/m1/w.bin" || fail "one changed under gc"
CAIRN_NODE=$g_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/g3 --out "$T/g3" >/dev/null || fail "pull of three"
cmp -s "$T/g3/w.bin" "$T/m3/w.bin" || fail "three pulled other bytes"
# A bundle import that does not fit stops at the floor, says why and makes
# nothing visible; once space is freed the same import resumes and completes.
small "$T/si" 40m
mkdir -p "$T/si/i" && ln -s "$T/si/i" "$T/i"
CAIRN_NODE=$a_GRPC "$CAIRN" export acme/two --to "$T/two.cairn" >/dev/null 2>&1 || fail "export acme/two"
printf '[node]\nmin_free_bytes = 8388608\n' >"$T/i.toml"
node_start i --config "$T/i.toml"
CAIRN_NODE=$i_GRPC "$CAIRN" import "$T/two.cairn" >"$T/ifull.out" 2>&1 && fail "an import larger than the disk succeeded"
grep -q "disk is nearly full" "$T/ifull.out" || fail "the import said: $(cat "$T/ifull.out")"
[ "$(free_bytes "$T/si")" -ge $((2 << 20)) ] || fail "the import filled the disk"
[ -z "$(releases "$i_HTTP" acme/two 2>/dev/null || true)" ] || fail "a release of a refused import is visible"
mount -o remount,size=160m "$T/si"
CAIRN_NODE=$i_GRPC "$CAIRN" import "$T/two.cairn" --json >"$T/iok.json" 2>&1 || fail "import after space was freed: $(cat "$T/iok.json")"
[ "$(jq .chunks_held "$T/iok.json")" -gt 0 ] || fail "the import did not resume: $(cat "$T/iok.json")"
[ "$(releases "$i_HTTP" acme/two)" = 1 ] || fail "the imported release is not served"
# An export onto a stick too small for it says so and leaves nothing behind.
small "$T/stick" 4m
CAIRN_NODE=$a_GRPC "$CAIRN" export acme/two --to "$T/stick/two.cairn" >"$T/efull.out" 2>&1 &&
  fail "an export larger than the stick succeeded"
grep -q "No space left on device" "$T/efull.out" || fail "the export said: $(cat "$T/efull.out")"
[ -z "$(ls -A "$T/stick")" ] || fail "a cut export left files: $(ls -A "$T/stick")"

# A node started on a full disk refuses, says why, and changes nothing.
kill "$b_PID"
wait "$b_PID" 2>/dev/null || true
head -c 200000000 /dev/zero >"$T/sb/filler" 2>/dev/null || true
[ "$(free_bytes "$T/sb")" -lt $((1 << 20)) ] || fail "could not fill the follower's disk"
before=$(find "$T/sb/b" -type f ! -name LOCK -printf '%p %s %T@\n' | sort | md5sum)
"$NODE" serve --data "$T/sb/b" --listen 127.0.0.1:0 --trust "$T/trust.root" >/dev/null 2>"$T/start.err" &&
  fail "a node started on a full disk"
grep -q "bytes free; a node needs .* free space and start it again" "$T/start.err" ||
  fail "start on a full disk said: $(cat "$T/start.err")"
[ "$(find "$T/sb/b" -type f ! -name LOCK -printf '%p %s %T@\n' | sort | md5sum)" = "$before" ] ||
  fail "a refused start changed the data directory"
rm "$T/sb/filler"
node_start c
[ "$(releases "$c_HTTP" acme/two)" = 1 ] || fail "the node did not serve again once space was freed"
echo "disk full OK"
