// Writes into the page cache in pieces of at most 64 KiB.
//
// Measured on the 2-core development VM (kernel 6.18, ext4; docs/benchmarks.md,
// "Writes in 64 KiB pieces"): `dd` of a cached 2 GiB file into a new file took
// 0.76-0.84 s with bs=16K or 64K and 6-19 s with bs=128K to 4M, run after run.
// A write of 128 KiB or more lets the kernel put it in large folios, and on this
// VM those come from memory the host has taken back and is slow to touch
// again. 64 KiB pieces cost 16 system calls per MiB, nothing measurable
// elsewhere.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstddef>

namespace cairn {

inline constexpr size_t kWritePiece = 64 << 10;

// pwrite(2) of at most kWritePiece bytes of [p, p + n): callers loop on the
// count written, as for any pwrite.
inline ssize_t PwritePiece(int fd, const void* p, size_t n, off_t off) {
  return ::pwrite(fd, p, std::min(n, kWritePiece), off);
}
inline ssize_t WritePiece(int fd, const void* p, size_t n) {
  return ::write(fd, p, std::min(n, kWritePiece));
}

}  // namespace cairn
