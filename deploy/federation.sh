#!/usr/bin/env bash
# A local Cairn federation on loopback: a hub, a regional mirror that follows
# the hub (a tier), and a campus mirror that follows the regional mirror and
# the hub (a mesh: regional and campus also follow each other). Publishes a
# model to the hub, shows it replicating, pulls it from all three mirrors at
# once, then again with every mirror named after the hub and the regional
# mirror have stopped (the client skips them), and stops everything cleanly.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$REPO/deploy/ports.sh"
WORK=$(mktemp -d /tmp/cairn-federation.XXXXXX)
# The demo's client state (rollback floors) stays with the demo.
export XDG_STATE_HOME=$WORK/state
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do if [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)" = "$$" ]; then kill -TERM "$p" 2>/dev/null || true; fi; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
say() { printf '\n== %s\n' "$*"; }

start() {  # name port [upstreams...]
  local name=$1 port=$2; shift 2
  local ups=()
  for u in "$@"; do ups+=(--upstream "$u"); done
  $NODE serve --data "$WORK/$name" --listen "127.0.0.1:$port" --trust trust.root --region "$name" \
    "${ups[@]}" >"$name.out" 2>"$name.log" &
  PIDS+=($!)
  eval "PID_$name=$!"
  for _ in $(seq 100); do
    grep -q listening "$name.out" 2>/dev/null && return
    kill -0 "$!" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 30 "$name.log"; echo "$name did not start" >&2; exit 1
}
wait_for() {  # node ref
  for _ in $(seq 300); do $CAIRN info "$2" --node "$1" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "$2 did not reach $1" >&2; exit 1
}

say "keys and trust root"
$CAIRN keygen --out root.key >/dev/null
$CAIRN keygen --out publisher.key >/dev/null
$CAIRN trust init --key root.key --out trust.root >/dev/null
$CAIRN trust delegate --trust trust.root --key root.key --namespace cmu --publisher publisher.key.pub

HUB=127.0.0.1:$(free_port); REGIONAL=127.0.0.1:$(free_port); CAMPUS=127.0.0.1:$(free_port)
say "starting hub $HUB, regional $REGIONAL (follows hub and campus), campus $CAMPUS (follows regional and hub)"
start hub "${HUB#*:}"
start regional "${REGIONAL#*:}" "$HUB" "$CAMPUS"
start campus "${CAMPUS#*:}" "$REGIONAL" "$HUB"

say "publishing cmu/en-us to the hub"
cp -r /usr/share/pocketsphinx/model/en-us model
$CAIRN publish model --name cmu/en-us --version 1.0 --key publisher.key --node "$HUB"
T0=$(date +%s.%N)
wait_for "$REGIONAL" cmu/en-us
wait_for "$CAMPUS" cmu/en-us
echo "replicated to both mirrors in $(echo "$(date +%s.%N) - $T0" | bc | cut -c1-4) s (they poll every 2 s)"
$CAIRN status --node "$CAMPUS"

say "pulling from the edge with every mirror named: chunks come from all three"
$CAIRN pull cmu/en-us --out pulled-all --node "$CAMPUS" --node "$REGIONAL" --node "$HUB" \
  --trust trust.root --store "$WORK/cache-all"
diff -r --exclude=.cairn model pulled-all

say "stopping the hub and the regional mirror; pulling again with all three named"
kill -TERM "$PID_hub" "$PID_regional"
wait "$PID_hub" "$PID_regional"
$CAIRN pull cmu/en-us --out pulled --node "$CAMPUS" --node "$REGIONAL" --node "$HUB" \
  --timeout 2 --trust trust.root --store "$WORK/cache"
$CAIRN verify pulled --trust trust.root
diff -r --exclude=.cairn model pulled && echo "byte-for-byte identical to what was published at the hub"

say "stopping the campus mirror"
kill -TERM "$PID_campus"; wait "$PID_campus"
tail -n 1 campus.log
echo "federation demo OK"
