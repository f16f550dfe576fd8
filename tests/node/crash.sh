#!/bin/bash
# kill -9 at random points, 52 times: a quarter during a publish, a quarter
# during a replication, a quarter during garbage collection and compaction of
# what the killed publishes left (no grace period, 16 MiB packs), a quarter
# during the import of a bundle (then every bundle is imported again: each
# resumes and ends visible). After each, the stopped node's data directory is scrubbed
# offline (every visible release whole, every chunk matching its hash) and at
# the end every publish that reported success is served. Seeded: the seed is
# printed, and CAIRN_CRASH_SEED=N replays a run.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"
SEED=${CAIRN_CRASH_SEED:-$(od -An -tu2 -N2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "seed $SEED (replay with CAIRN_CRASH_SEED=$SEED)"
ITER=${CAIRN_CRASH_ITERATIONS:-52}
fail_seed() { fail "seed $SEED, iteration $i: $*"; }
# releases HTTP NAME: the versions served; none when no release of NAME was
# ever committed (404: every publish of it may have been killed).
releases() { { curl -sf "http://$1/v1/releases/$2" || true; } | jq -r '.releases[]?.version' | sort -n | xargs; }
# crash_later PID [MS]: SIGKILL after a random 0 to MS-1 ms (400 by default).
crash_later() { sleep "0.$(printf '%03d' $((RANDOM % ${2:-400})))"; kill -9 "$1" 2>/dev/null || true; }
# Waits for a killed node and forgets its pid (it may be reused).
reap() { wait "$1" 2>/dev/null || true; PIDS=("${PIDS[@]/#$1/}"); }
whole() {  # whole NAME: an offline scrub of NAME's data finds nothing wrong
  "$NODE" scrub --now --data "$T/$1" --trust "$T/trust.root" >"$T/scrub.out" 2>&1 ||
    fail_seed "after a crash $1 is not whole: $(cat "$T/scrub.out")"
  grep -q " 0 bad (dropped); 0 releases lack" "$T/scrub.out" || fail_seed "$(cat "$T/scrub.out")"
}

node_start hub
mkdir -p "$T/shared"
head -c 3000000 /dev/urandom >"$T/shared/base.bin"
printf '[[upstream]]\naddress = "%s"\n' "$hub_GRPC" >"$T/follow.toml"
printf '[node]\ngc_grace_hours = 0\ngc_interval_hours = 0\ngc_compact_below_percent = 90\npack_file_mib = 16\n' >"$T/p.toml"
gc_passes=0
gc_cut=0
published=()
bundles=()
imports_done=0
for i in $(seq "$ITER"); do
  rm -rf "$T/m"
  mkdir -p "$T/m"
  cp "$T/shared/base.bin" "$T/m/"
  head -c $((2000000 + RANDOM * 100)) /dev/urandom >"$T/m/new.bin"
  if [ $((i % 4)) = 3 ]; then
    # A bundle of a new hub release, imported into node q over gRPC; q is
    # killed 0-149 ms after the import starts.
    publish "$hub_GRPC" "$T/m" acme/q "$i"
    CAIRN_NODE=$hub_GRPC "$CAIRN" export "acme/q@$i" --to "$T/q$i.cairn" >/dev/null 2>&1 ||
      fail_seed "export acme/q@$i"
    bundles+=("$i")
    node_start q
    CAIRN_NODE=$q_GRPC "$CAIRN" import "$T/q$i.cairn" >/dev/null 2>&1 &
    imp=$!
    crash_later "$q_PID" 150
    if wait "$imp"; then imports_done=$((imports_done + 1)); fi
    reap "$q_PID"
    whole q
  elif [ $((i % 4)) = 0 ]; then
    # Garbage collection on node p, killed at a random point of its sweep or
    # compaction. First garbage: a publish of 24 MB more whose client is
    # killed once 6 MB arrived, then a restart (which forgets what clients
    # were told).
    node_start p --config "$T/p.toml"
    head -c 24000000 /dev/urandom >"$T/m/more.bin"
    cut_publish p "$T/m" acme/p "$i" 6000000
    node_stop p
    node_start p --config "$T/p.toml"
    "$NODE" gc --data "$T/p" >"$T/gc.out" 2>&1 &
    gc=$!
    # The crash point: 0-29 ms into the pass.
    for _ in $(seq 400); do grep -q "pass started" "$T/p.log" && break; sleep 0.005; done
    crash_later "$p_PID" 30
    if wait "$gc"; then gc_passes=$((gc_passes + 1)); fi
    reap "$p_PID"
    if grep -q "garbage collection: pass started" "$T/p.log" &&
      ! grep -q "garbage collection: removed" "$T/p.log"; then
      gc_cut=$((gc_cut + 1))
    fi
    whole p
  elif [ $((i % 4)) = 1 ]; then
    # A publish to node p, killed at a random point.
    node_start p --config "$T/p.toml"
    CAIRN_NODE=$p_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" publish "$T/m" --name acme/p --version "$i" \
      --key "$T/pub.key" >/dev/null 2>&1 &
    pub=$!
    crash_later "$p_PID"
    if wait "$pub"; then published+=("$i"); fi
    reap "$p_PID"
    whole p
  else
    # A release on the hub, then node f replicating it, killed at a random point.
    publish "$hub_GRPC" "$T/m" acme/f "$i"
    node_start f --config "$T/follow.toml"
    crash_later "$f_PID"
    reap "$f_PID"
    whole f
  fi
done
# Nothing a publish reported as committed was lost; the follower catches up.
node_start p --config "$T/p.toml"
# (A publish killed after the commit but before its answer arrived is served
# though it reported failure: the commit was durable, the reply was lost.)
served=" $(releases "$p_HTTP" acme/p) "
for v in "${published[@]}"; do
  [[ "$served" == *" $v "* ]] || fail "seed $SEED: p serves '$served', lost $v (published '${published[*]}')"
done
# A whole pass after all those cut ones: it ends, and everything stays served.
"$NODE" gc --data "$T/p" >"$T/gc.out" 2>&1 || fail "seed $SEED: gc after the crashes: $(cat "$T/gc.out")"
[ "$(releases "$p_HTTP" acme/p)" = "$(echo $served)" ] || fail "seed $SEED: gc changed what p serves"
node_start f --config "$T/follow.toml"
want=$(releases "$hub_HTTP" acme/f)
for _ in $(seq 300); do [ "$(releases "$f_HTTP" acme/f)" = "$want" ] && break; sleep 0.1; done
[ "$(releases "$f_HTTP" acme/f)" = "$want" ] || fail "seed $SEED: f did not catch up after the crashes"
# Every bundle imported again (the killed ones resume): all of them served.
node_start q
for v in "${bundles[@]}"; do
  CAIRN_NODE=$q_GRPC "$CAIRN" import "$T/q$v.cairn" >"$T/imp.out" 2>&1 ||
    fail "seed $SEED: import of q$v after the crashes: $(cat "$T/imp.out")"
done
[ "$(releases "$q_HTTP" acme/q)" = "$(echo "${bundles[@]}" | tr ' ' '\n' | sort -n | xargs)" ] ||
  fail "seed $SEED: q serves '$(releases "$q_HTTP" acme/q)', imported '${bundles[*]}'"
echo "crash OK: $ITER kills, ${#published[@]} publishes committed before theirs, $gc_passes GC passes ended before theirs, $gc_cut cut mid-pass, $imports_done of ${#bundles[@]} imports ended before theirs"
