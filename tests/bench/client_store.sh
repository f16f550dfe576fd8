#!/usr/bin/env bash
# The client's managed store, each figure beside its reference in the same run:
#   1. disk used by the store after pulling a model (two shards) and a
#      derivative with 10 % of its tensors changed, against the files' own
#      size (goal: overhead <= 1 % of the files)
#   2. the same two pulls into a store on a loop-mounted XFS with reflink
#      (needs root): what the derivative adds on disk against its changed
#      bytes (goal <= 1.05 x)
#   3. a pull whose chunks are all local (into a fresh --out tree) against
#      `cp -r` of the same files; warm page cache for both, order alternated,
#      median of 3 (goal >= 0.8 x); and on XFS against `cp -r --reflink=never`
#   4. a pull naming one 1 MiB file of the release: bytes fetched (goal
#      <= 1 MiB + metadata)
#
#   tests/bench/client_store.sh [--size-mib N]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
SIZE_MIB=1024
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
deploy/install-deps.sh
command -v mkfs.xfs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q xfsprogs >/dev/null
deploy/build.sh cairn cairn-node gen_model
BIN=$REPO/${CAIRN_BUILD_DIR:-build}
CAIRN=$BIN/client/cairn NODE=$BIN/mirror-node/cairn-node GEN=$BIN/tests/bench/gen_model
WORK=$(mktemp -d /var/tmp/cairn-storebench.XXXXXX)  # on disk, not tmpfs
export XDG_STATE_HOME=$WORK/state CAIRN_TRUST=$WORK/trust.root
PIDS=() MNT=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$MNT" ] && { umount "$MNT" 2>/dev/null || umount -l "$MNT"; }
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$REPO/tests/bench/lib.sh"
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", 100 * a / b }'; }
# Bytes used on the file system at $1, after a sync; on XFS after dropping
# the speculative preallocations (blocks reserved past a file's end or for
# copy-on-write, freed by XFS itself within minutes) so the figure is what
# stays on disk.
used() {
  sync
  [ "$(stat -f -c %T "$1")" = xfs ] && xfs_spaceman -c "prealloc -s" "$1"
  df -B1 --output=used "$1" | tail -1
}

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(df -T "$WORK" | awk 'NR==2 {print $2}')"
echo "# date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$REPO" rev-parse --short HEAD)"
$CAIRN keygen --out root.key >/dev/null; $CAIRN keygen --out pub.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace acme --publisher pub.key.pub >/dev/null
"$GEN" make base --shards 2 --shard-mib $((SIZE_MIB / 2)) --seed 1 >/dev/null
cp -r base ft
for f in ft/*.safetensors; do "$GEN" mutate "$f" --fraction 0.1 --seed 2 >/dev/null; done
$NODE serve --data node --listen 127.0.0.1:0 --trust trust.root >node.out 2>node.log &
PIDS+=($!)
for _ in $(seq 200); do grep -q 'listening on' node.out 2>/dev/null && break; sleep 0.05; done
export CAIRN_NODE=$(sed -n 's/^cairn-node listening on //p' node.out)
$CAIRN publish base --name acme/base --version 1 --key pub.key >/dev/null
$CAIRN publish ft --name acme/ft --version 1 --key pub.key --base acme/base >/dev/null
FILES_BYTES=$(( $(du -sb --apparent-size base | cut -f1) + $(du -sb --apparent-size ft | cut -f1) ))

echo; echo "## 1. store overhead after a $SIZE_MIB MiB model and a 10 %-changed derivative ($(df -T "$WORK" | awk 'NR==2 {print $2}'))"
export CAIRN_STORE=$WORK/store
$CAIRN pull acme/base --json >pull-base.json
$CAIRN pull acme/ft --json >pull-ft.json
STORE_BYTES=$($CAIRN cache du --json | jq .bytes)
echo "files $FILES_BYTES bytes, store $STORE_BYTES bytes: overhead $((STORE_BYTES - FILES_BYTES)) bytes = $(pct $((STORE_BYTES - FILES_BYTES)) "$FILES_BYTES") % (goal <= 1 %)"
echo "derivative fetched $(jq .bytes_fetched pull-ft.json) of $(jq .bytes_total pull-ft.json) bytes"

echo; echo "## 3. a pull with every chunk local vs cp -r (median of 3, warm, alternating)"
BASE_DIR=$(jq -r .path pull-base.json)
cat "$BASE_DIR"/* >/dev/null
# (para: the same pull with --paranoid, every local chunk re-read and hashed)
: >t_pull; : >t_cp; : >t_para
for i in 1 2 3; do
  order="pull cp para"; [ $((i % 2)) = 0 ] && order="para cp pull"
  for who in $order; do
    rm -rf out-$who; sync
    T0=$(now)
    case $who in
      pull) $CAIRN pull acme/base --out out-pull --json >local.json ;;
      para) $CAIRN pull acme/base --out out-para --paranoid --json >/dev/null ;;
      cp) cp -r "$BASE_DIR" out-cp ;;
    esac
    since "$T0" >>t_$who
  done
done
B=$(jq .bytes_total local.json); P=$(median t_pull); C=$(median t_cp); Q=$(median t_para)
echo "the local pull placed $(jq .bytes_local_unread local.json) of $B bytes without reading them back (unchanged files)"
[ "$(jq .bytes_fetched local.json)" = 0 ] || echo "WARNING: the local pull fetched bytes"
echo "pull $(gbps "$B" "$P") GB/s ($P s), cp -r $(gbps "$B" "$C") GB/s ($C s): ratio $(ratio "$C" "$P")x (goal >= 0.8)"
echo "pull --paranoid $(gbps "$B" "$Q") GB/s ($Q s): ratio $(ratio "$C" "$Q")x"

echo; echo "## 4. one 1 MiB file of the release"
mkdir -p one-src && cp base/* one-src/ && head -c 1048576 /dev/urandom >one-src/extra.bin
$CAIRN publish one-src --name acme/withfile --version 1 --key pub.key >/dev/null
CAIRN_STORE=$WORK/store-empty $CAIRN pull acme/withfile extra.bin --json >one.json
echo "fetched $(jq .bytes_fetched one.json) bytes for a 1048576-byte file of a $(( $(du -sb --apparent-size one-src | cut -f1) )) -byte release (goal <= 1 MiB + metadata)"

echo; echo "## 2. the same on XFS with reflink (loop device)"
if [ "$(id -u)" != 0 ]; then echo "skipped: needs root to mount a loop device"; exit 0; fi
truncate -s $((SIZE_MIB * 5 + 512))M xfs.img
mkfs.xfs -q -m reflink=1 xfs.img
MNT=$WORK/mnt; mkdir -p "$MNT"
if ! mount -o loop xfs.img "$MNT" 2>mount.err; then echo "skipped: $(cat mount.err)"; MNT=""; exit 0; fi
export CAIRN_STORE=$MNT/store
$CAIRN pull acme/base --json >x-base.json
U0=$(used "$MNT") I0=$(du -sb "$MNT/store/index" | cut -f1)
$CAIRN pull acme/ft --json >x-ft.json
U1=$(used "$MNT") I1=$(du -sb "$MNT/store/index" | cut -f1)
CHANGED=$(jq .bytes_fetched x-ft.json)
echo "derivative changed (fetched) $CHANGED bytes, added $((U1 - U0)) bytes on disk (of which the index $((I1 - I0))): $(ratio $((U1 - U0)) "$CHANGED")x (goal <= 1.05)"
XB=$(jq -r .path x-base.json)
cat "$XB"/* >/dev/null
: >t_xpull; : >t_xcp; : >t_xcpr
for i in 1 2 3; do
  for who in xpull xcp xcpr; do
    rm -rf "$MNT/out-$who"; sync
    T0=$(now)
    case $who in
      xpull) $CAIRN pull acme/base --out "$MNT/out-xpull" --json >/dev/null ;;
      xcp) cp -r --reflink=never "$XB" "$MNT/out-xcp" ;;
      xcpr) cp -r --reflink=always "$XB" "$MNT/out-xcpr" ;;
    esac
    since "$T0" >>t_$who
  done
done
P=$(median t_xpull); C=$(median t_xcp); R=$(median t_xcpr)
echo "XFS: pull $(gbps "$B" "$P") GB/s ($P s), cp -r --reflink=never $(gbps "$B" "$C") GB/s ($C s): ratio $(ratio "$C" "$P")x; cp --reflink=always $R s"
