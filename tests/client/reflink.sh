#!/bin/bash
# A derivative pulled into a store on a filesystem that shares extents (XFS
# with reflink, on a loop device this test makes) clones its base's
# unchanged chunks instead of copying them: it costs about its changed bytes
# on disk. Skipped (exit 77, with the reason) where the kernel or the
# sandbox cannot mount it.
HERE_CLIENT=$(cd "$(dirname "$0")" && pwd)
source "$HERE_CLIENT/../gateway/lib.sh" "$@"
skip() { echo "SKIPPED: $*"; exit 77; }
command -v mkfs.xfs >/dev/null || skip "mkfs.xfs is not installed (xfsprogs)"
[ "$(id -u)" = 0 ] || skip "mounting a loop device needs root"
truncate -s 600M "$T/xfs.img"
mkfs.xfs -q -m reflink=1 "$T/xfs.img" || skip "mkfs.xfs failed"
mkdir -p "$T/mnt"
mount -o loop "$T/xfs.img" "$T/mnt" 2>"$T/mount.err" || skip "cannot mount XFS: $(cat "$T/mount.err")"
# Unmounted before lib.sh removes $T.
trap 'rc=$?; cd /; umount "$T/mnt" 2>/dev/null || umount -l "$T/mnt"; cleanup; exit $rc' EXIT
# The store moves to XFS (config), so the index lives there too.
export XDG_DATA_HOME=$T/mnt/data CAIRN_TRUST=$T/trust.root
node_start a
export CAIRN_NODE=$a_GRPC
mkdir -p "$T/m1"
head -c 100000000 /dev/urandom >"$T/m1/model.safetensors"
echo '{}' >"$T/m1/config.json"
publish "$a_GRPC" "$T/m1" acme/m 1.0
cp -r "$T/m1" "$T/m2"
# 10 MB changed in place, as a fine-tune rewrites some tensors.
head -c 10000000 /dev/urandom | dd of="$T/m2/model.safetensors" bs=1M seek=40 conv=notrunc \
  status=none iflag=fullblock
publish "$a_GRPC" "$T/m2" acme/m 2.0
"$CAIRN" pull acme/m@1.0 --json >"$T/p1.json" || fail "base pull"
# (XFS's speculative preallocations, which it frees within minutes, freed now)
used() {
  sync
  xfs_spaceman -c "prealloc -s" "$T/mnt" 2>/dev/null || true
  df -B1 --output=used "$T/mnt" | tail -1
}
u0=$(used)
"$CAIRN" pull acme/m@2.0 --json >"$T/p2.json" || fail "derivative pull"
u1=$(used)
P2=$(jq -r .path "$T/p2.json")
cmp -s "$P2/model.safetensors" "$T/m2/model.safetensors" || fail "derivative differs"
"$CAIRN" verify "$P2" >/dev/null || fail "derivative does not verify"
changed=$(jq -r .bytes_fetched "$T/p2.json")
added=$((u1 - u0))
echo "derivative: ${changed} bytes changed (fetched), ${added} bytes added on disk"
# Goal: at most 1.05 x the changed bytes, plus 1 MB for the index and logs.
[ "$added" -le $((changed * 105 / 100 + 1000000)) ] ||
  fail "the derivative took $added bytes on disk for $changed changed: not cloned"
# The same pull as a plain tree elsewhere on the same filesystem clones too.
"$CAIRN" pull acme/m@2.0 --out "$T/mnt/plain" --json >"$T/p3.json" || fail "plain pull"
u2=$(used)
[ "$(jq -r .bytes_fetched "$T/p3.json")" = 0 ] || fail "plain pull fetched"
[ $((u2 - u1)) -le 2000000 ] || fail "the plain tree took $((u2 - u1)) bytes: not cloned"
cmp -s "$T/mnt/plain/model.safetensors" "$T/m2/model.safetensors" || fail "plain tree differs"
# Many small changes (a fine-tune touching 20 scattered places): every changed
# region sits between two clones, and the chunks at a clone's edges are
# written only outside the cloned blocks (rewritten whole, each edge cost a
# chunk more: ~2.5 MB here).
cp -r "$T/m1" "$T/m3"
for i in $(seq 0 19); do
  head -c 50000 /dev/urandom |
    dd of="$T/m3/model.safetensors" bs=1 seek=$((2000000 + i * 4900000)) conv=notrunc status=none
done
publish "$a_GRPC" "$T/m3" acme/m 3.0
u5=$(used)
"$CAIRN" pull acme/m@3.0 --json >"$T/p5.json" || fail "scattered derivative pull"
u6=$(used)
changed=$(jq -r .bytes_fetched "$T/p5.json")
echo "20 scattered changes: ${changed} bytes changed (fetched), $((u6 - u5)) bytes added on disk"
[ $((u6 - u5)) -le $((changed * 105 / 100 + 1000000)) ] ||
  fail "20 scattered changes took $((u6 - u5)) bytes on disk for $changed changed"
cmp -s "$(jq -r .path "$T/p5.json")/model.safetensors" "$T/m3/model.safetensors" || fail "3.0 differs"
# A store on another file system ($T) that also holds the base: plain trees
# on XFS still clone, from the base's files there (a clone refused across
# file systems once no longer turned clones off for the whole pull, and
# sources on the target's file system come first).
export CAIRN_STORE=$T/store2
"$CAIRN" pull acme/m@1.0 --json >/dev/null || fail "base pull into the second store"
"$CAIRN" pull acme/m@1.0 --out "$T/mnt/b2" --json >/dev/null || fail "base --out on XFS"
u3=$(used)
"$CAIRN" pull acme/m@2.0 --out "$T/mnt/d2" --json >"$T/p4.json" || fail "derivative --out on XFS"
u4=$(used)
changed=$(jq -r .bytes_fetched "$T/p4.json")
echo "derivative beside a store elsewhere: ${changed} bytes changed (fetched), $((u4 - u3)) bytes added on XFS"
[ $((u4 - u3)) -le $((changed * 105 / 100 + 1000000)) ] ||
  fail "the derivative took $((u4 - u3)) bytes on XFS for $changed changed: not cloned"
cmp -s "$T/mnt/d2/model.safetensors" "$T/m2/model.safetensors" || fail "derivative tree differs"
echo "reflink.sh: OK"
