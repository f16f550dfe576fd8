#!/usr/bin/env bash
# Cairn quick start: installs dependencies, builds, starts a local node on
# embedded defaults, creates a root key, a trust root and a publisher key
# delegated for a namespace, publishes a real open model (CMU's US-English
# acoustic model from Debian's pocketsphinx-en-us) and a fine-tuned derivative
# of it, pulls both into a fresh managed store (the derivative copies its
# base's unchanged chunks from the base's files), verifies them byte for
# byte, and stops the node cleanly.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d /tmp/cairn-quickstart.XXXXXX)
# The demo's client state (rollback floors) and store stay with the demo.
export XDG_STATE_HOME=$WORK/state CAIRN_STORE=$WORK/store
NODE_PID=""
cleanup() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then kill -TERM "$NODE_PID"; wait "$NODE_PID" || true; fi
}
trap cleanup EXIT
cd "$WORK"
say() { printf '\n== %s\n' "$*"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }

say "keys and trust root"
ROOT_ID=$($CAIRN keygen --out root.key)
PUB_ID=$($CAIRN keygen --out publisher.key)
$CAIRN trust init --key root.key --out trust.root
$CAIRN trust delegate --trust trust.root --key root.key --namespace cmu --publisher publisher.key.pub
echo "root key $ROOT_ID, publisher key $PUB_ID delegated for namespace cmu"

say "starting cairn-node"
$NODE serve --data "$WORK/node-data" --listen 127.0.0.1:0 --trust trust.root >node.out 2>node.log &
NODE_PID=$!
for _ in $(seq 100); do grep -q listening node.out 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^cairn-node listening on //p' node.out)
[ -n "$ADDR" ] || { cat node.log; echo "node did not start" >&2; exit 1; }
echo "node listening on $ADDR (data in $WORK/node-data)"
export CAIRN_NODE=$ADDR CAIRN_TRUST=$WORK/trust.root

say "publishing cmu/en-us 1.0 (pocketsphinx US-English acoustic model)"
cp -r /usr/share/pocketsphinx/model/en-us base-model
$CAIRN publish base-model --name cmu/en-us --version 1.0 --key publisher.key --license BSD-2-Clause --json >pub-base.json
BASE=$(jq -r .manifest pub-base.json)
echo "manifest $BASE: $(jq .files pub-base.json) files, $(mb "$(jq .bytes_total pub-base.json)"), uploaded $(mb "$(jq .bytes_uploaded pub-base.json)")"

say "publishing cmu/en-us-adapted 1.0, a speaker-adapted derivative (new Gaussian means)"
cp -r base-model derived-model
# Speaker adaptation rewrites the acoustic model's Gaussian means; model it by
# new bytes over the means table (after its header), in place.
dd if=/dev/urandom of=derived-model/en-us/means bs=4096 seek=1 count=200 conv=notrunc status=none
$CAIRN publish derived-model --name cmu/en-us-adapted --version 1.0 --key publisher.key \
  --base "cmu/en-us@$BASE" --relation finetune --license BSD-2-Clause --json >pub-derived.json
echo "manifest $(jq -r .manifest pub-derived.json): $(mb "$(jq .bytes_total pub-derived.json)"), uploaded only $(mb "$(jq .bytes_uploaded pub-derived.json)") ($(jq .chunks_uploaded pub-derived.json) of $(jq .chunks_total pub-derived.json) chunks)"

say "pulling both into the store ($CAIRN_STORE)"
$CAIRN pull cmu/en-us --json >pull-base.json
$CAIRN pull cmu/en-us-adapted:latest --json >pull-derived.json
pulled_base=$(jq -r .path pull-base.json)
pulled_derived=$(jq -r .path pull-derived.json)
echo "base:       fetched $(mb "$(jq .bytes_fetched pull-base.json)") of $(mb "$(jq .bytes_total pull-base.json)") into $pulled_base"
echo "derivative: fetched $(mb "$(jq .bytes_fetched pull-derived.json)") of $(mb "$(jq .bytes_total pull-derived.json)"), $(jq .chunks_local pull-derived.json) chunks copied from the base's files"
$CAIRN ls --local
ln -sfn "$pulled_base" pulled-base
ln -sfn "$pulled_derived" pulled-derived

say "verifying"
$CAIRN verify pulled-base
$CAIRN verify pulled-derived
diff -r --exclude=.cairn base-model pulled-base
diff -r --exclude=.cairn derived-model pulled-derived
echo "byte-for-byte identical to what was published"
$CAIRN lineage cmu/en-us

say "summary"
DT=$(jq .bytes_total pull-derived.json); DF=$(jq .bytes_fetched pull-derived.json)
awk -v t="$DT" -v f="$DF" 'BEGIN { printf "the derivative cost %.2f%% of its %.1f MB to pull (saved %.1f MB)\n", 100*f/t, t/1e6, (t-f)/1e6 }'

say "stopping the node"
kill -TERM "$NODE_PID"
wait "$NODE_PID"
NODE_PID=""
tail -n 1 node.log
rm -rf "$WORK"
echo "quickstart OK"
