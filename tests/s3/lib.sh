# Sourced by the shell tests of nodes on S3 (tests/s3/*.sh): skips without
# root (the Ceph daemons), then everything tests/gateway/lib.sh sets up, a
# throw-away one-node Ceph (deploy/ceph-local.sh) with CAIRN_S3_* exported,
# Whether PID $1 is still a child of this shell: a PID reaped earlier may be
# another process's by now (pid_max is 32768 here, and threads take PIDs).
still_ours() { [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f2)" = "$$" ]; }
# and an exit trap that stops the nodes before the cluster they keep chunks
# in, then the rest.
if [ "$(id -u)" != 0 ]; then echo "skipped: needs root for the Ceph daemons"; exit 77; fi
HERE_S3=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE_S3/../gateway/lib.sh" "$@"
REPO=$(cd "$HERE_S3/../.." && pwd)
"$REPO/deploy/ceph-local.sh" start "$T/ceph" --owner $$ --memory-mib 1024 >/dev/null || fail "Ceph did not start"
trap 'rc=$?; set +e; for p in "${PIDS[@]}"; do still_ours "$p" && kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
      "$REPO/deploy/ceph-local.sh" stop "$T/ceph"; (exit $rc); cleanup' EXIT
source "$T/ceph/env"
