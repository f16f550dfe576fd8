#!/usr/bin/env bash
# The container image end to end (issue 16, packaging): deploy/container.sh
# builds deploy/Containerfile around this build's binaries on a Debian
# bookworm base (made with debootstrap: no container registry is reachable
# here), then:
#  1. the container becomes healthy (its HEALTHCHECK: GET /healthz on the
#     HTTP port) and the node in it runs as the unprivileged user cairn;
#  2. a model published through the published gRPC port is pulled back
#     byte-exact, and served over the published HTTP port;
#  3. `podman stop` with the engine's default 10 s timeout, while a slow
#     download is in flight: the download completes byte-exact (drained, not
#     cut) and the node exits 0 (not killed);
#  4. a new container on the same data volume serves the model.
# Usage: container.sh BUILD_DIR. Installs podman, runc and debootstrap when
# missing (needs root; skips with 77 otherwise). Run by tests/run.sh.
HERE_DEPLOY=$(cd "$(dirname "$0")" && pwd)
source "$HERE_DEPLOY/../gateway/lib.sh" "$@"
[ "$(id -u)" = 0 ] || { echo "skip: needs root"; exit 77; }
SRC=$(cd "$HERE_DEPLOY/../.." && pwd)
need=()
for c in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >"$T/apt.log" 2>&1 || fail "apt-get update: $(tail -3 "$T/apt.log")"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
    >"$T/apt.log" 2>&1 || fail "apt-get install ${need[*]}: $(tail -3 "$T/apt.log")"
fi
# This VM: hybrid cgroups (which crun refuses) and a hard NOFILE limit below
# podman's default. Settings of this test only, through CONTAINERS_CONF.
cat >"$T/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
export CONTAINERS_CONF=$T/containers.conf
IMAGE=localhost/cairn-node:test-$$ NAME=cairn-test-$$ VOL=cairn-test-$$
# Removes what the test made, however it ends (the trap of lib.sh runs after).
container_cleanup() {
  local rc=$?
  if [ $rc != 0 ]; then podman logs "$NAME" 2>&1 | tail -30 || true; fi
  podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  podman volume rm -f "$VOL" >/dev/null 2>&1 || true
  podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  set +e
  (exit $rc)
  cleanup  # lib.sh's: prints the nodes' logs when rc is not 0
}
trap container_cleanup EXIT

"$SRC/deploy/container.sh" --debootstrap --binaries "$BUILD" --tag "$IMAGE" >"$T/build.log" 2>&1 ||
  fail "deploy/container.sh: $(tail -20 "$T/build.log")"
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = cairn ] || fail "the image does not run as cairn"

chmod 755 "$T"
chmod 644 "$T/trust.root"
start() {
  podman run -d --name "$NAME" -p 127.0.0.1::7070 -p 127.0.0.1::8080 \
    -v "$T/trust.root:/etc/cairn/trust.root:ro" -v "$VOL:/var/lib/cairn" "$IMAGE" >/dev/null 2>"$T/run.log" ||
    fail "podman run"
  GRPC=$(podman port "$NAME" 7070/tcp) HTTP=$(podman port "$NAME" 8080/tcp)
  [ -n "$GRPC" ] && [ -n "$HTTP" ] || fail "no published ports"
  # Healthy: the image's own HEALTHCHECK passes (polled, 60 s at most).
  for _ in $(seq 600); do
    podman healthcheck run "$NAME" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "the container never became healthy"
}
start
echo "ok: healthy, gRPC on $GRPC, HTTP on $HTTP"
# The node (PID 1 in the container) runs as cairn, not root.
uid=$(podman exec "$NAME" awk '/^Uid:/ {print $2}' /proc/1/status)
[ "$uid" = 10001 ] || fail "the node runs as uid $uid, not 10001 (cairn)"
[ "$(podman exec "$NAME" stat -c %U /var/lib/cairn)" = cairn ] || fail "the data volume is not cairn's"
echo "ok: the node runs as cairn (uid 10001) and owns its volume"

make_model "$T/m" 1
publish "$GRPC" "$T/m" acme/m 1.0
CAIRN_NODE=$GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/m@1.0 --out "$T/got" >"$T/pull.log" 2>&1 ||
  fail "pull: $(cat "$T/pull.log")"
diff -r -x .cairn "$T/m" "$T/got" || fail "the pulled model differs"
curl -sf "http://$HTTP/v1/files/acme/m/1.0/model.safetensors" -o "$T/http.bin" || fail "HTTP download"
cmp "$T/m/model.safetensors" "$T/http.bin" || fail "the HTTP download differs"
echo "ok: published, pulled byte-exact over gRPC and HTTP"

# A graceful stop with the engine's default timeout (10 s) while a download
# is in flight: 6 MB at 3 MB/s, about 2 s, within drain_seconds (5).
curl -sf --limit-rate 3M "http://$HTTP/v1/files/acme/m/1.0/model.safetensors" -o "$T/slow.bin" &
SLOW=$!
for _ in $(seq 100); do [ -s "$T/slow.bin" ] && break; sleep 0.05; done
[ -s "$T/slow.bin" ] || fail "the slow download did not start"
podman stop "$NAME" >/dev/null || fail "podman stop"
wait "$SLOW" || fail "the download in flight was cut by the stop"
cmp -s "$T/m/model.safetensors" "$T/slow.bin" || fail "the download in flight came out different"
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || fail "the node exited $code on SIGTERM (137: killed after the stop timeout)"
echo "ok: stopped with a download in flight: it completed, the node exited 0"

# The data volume outlives the container.
podman rm "$NAME" >/dev/null
start
rm -rf "$T/got"
CAIRN_NODE=$GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" pull acme/m@1.0 --out "$T/got" >"$T/pull2.log" 2>&1 ||
  fail "pull after a restart: $(cat "$T/pull2.log")"
diff -r -x .cairn "$T/m" "$T/got" || fail "the model differs after a restart"
echo "ok: a new container on the same volume serves the model"
echo "PASS"
