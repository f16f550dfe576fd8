#!/usr/bin/env bash
# Upstreams in a loop: three nodes, each following the two others. A publish
# of a new name to one of them answers at once and the others get the
# release; asking any of them for a name no node holds says "not found" at
# once. A node fetching on demand tells its upstream so (gRPC metadata
# cairn-on-demand-hops), and past three such nodes a request is answered from
# what a node holds: before, each Resolve of a name no node held chased
# itself around the ring until the client's 15 s deadline, and the publish
# (which resolves the name first) failed.
source "$(dirname "$0")/../gateway/lib.sh" "$@"
source "$HERE/../../deploy/ports.sh"
BASE=$(free_port 3)
for i in 0 1 2; do
  LISTEN=127.0.0.1:$((BASE + i)) node_start "n$i" \
    --upstream 127.0.0.1:$((BASE + (i + 1) % 3)) --upstream 127.0.0.1:$((BASE + (i + 2) % 3))
done
make_model "$T/m" 1
T0=$(date +%s)
publish "$n0_GRPC" "$T/m" acme/ring 1.0
[ $(($(date +%s) - T0)) -lt 10 ] || fail "the publish into the ring took $(($(date +%s) - T0)) s"
wait_replicated "$n1_HTTP" acme/ring
wait_replicated "$n2_HTTP" acme/ring
T0=$(date +%s)
if CAIRN_TRUST=$T/trust.root "$CAIRN" info acme/nowhere --node "$n1_GRPC" >/dev/null 2>"$T/info.err"; then
  fail "a name no node holds was found"
fi
[ $(($(date +%s) - T0)) -lt 10 ] || fail "not found took $(($(date +%s) - T0)) s"
grep -qi "deadline" "$T/info.err" && fail "not found ended in a deadline: $(cat "$T/info.err")"
echo "mesh OK"
