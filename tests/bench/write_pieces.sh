#!/usr/bin/env bash
# How the size of each write(2) into a new file changes the cost of filling
# the page cache on this machine (the measurement behind cairn/page_cache.h):
# dd of a cached 1 GiB file into a new file with bs from 16 KiB to 4 MiB, each
# after removing the previous copy and 3 s of rest, three rounds in turn.
#   tests/bench/write_pieces.sh [--size-mib N]   (1024 by default)
set -euo pipefail
SIZE_MIB=1024
[ "${1:-}" = --size-mib ] && SIZE_MIB=$2
WORK=$(mktemp -d /var/tmp/cairn-writes.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(df -T . | awk 'NR==2 {print $2}'); $(date -u +%Y-%m-%dT%H:%MZ)"
head -c $((SIZE_MIB << 20)) /dev/urandom >src
cat src >/dev/null
for round in 1 2 3; do
  line="round $round:"
  for bs in 16K 64K 128K 1M 4M; do
    rm -f dst
    sleep 3
    t0=$(date +%s.%N)
    dd if=src of=dst bs=$bs 2>/dev/null
    line+=" bs=$bs $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f s", b - a }'),"
  done
  echo "${line%,}"
done
