// Content-defined chunking: normalized FastCDC over a Gear rolling hash, with
// optional forced cuts at safetensors tensor boundaries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/hash.h"
#include "cairn/limits.h"

namespace cairn {

struct ChunkerParams {
  uint32_t min_size = 16 * 1024;   // Default: 16 KiB
  uint32_t avg_size = 64 * 1024;   // Default: 64 KiB (power of two)
  uint32_t max_size = 256 * 1024;  // Default: 256 KiB
  // Force cuts at safetensors tensor boundaries when the file parses as one.
  // Default: true (docs/benchmarks.md: dedup for in-place tensor edits).
  bool tensor_boundaries = true;
  // ChunkFd: compute the whole-file SHA-256 on a second thread when the
  // machine has more than one core. Default: true.
  bool parallel_file_hash = true;

  // Params with min = avg/4 and max = avg*4.
  static ChunkerParams ForAverage(uint32_t avg);
};

// kMaxChunkSize (cairn/limits.h) bounds every chunk, whatever parameters made it.

// Stateless cut-point finder. Thread-compatible (const methods only).
class FastCdc {
 public:
  explicit FastCdc(const ChunkerParams& p);

  // Returns the length of the chunk that starts at data[0], given `len`
  // available bytes. `limit` (<= len) is a forced boundary: the chunk never
  // extends past it, and ends exactly there if no earlier cut is found.
  // When `len` < max_size and more data may follow, a result equal to `len`
  // means "no cut found yet": call again with more data.
  size_t Cut(const uint8_t* data, size_t len) const;

  const ChunkerParams& params() const { return p_; }

 private:
  ChunkerParams p_;
  uint64_t mask_small_;  // stricter mask before the average size
  uint64_t mask_large_;  // looser mask after it
};

// Offsets (from file start) where a safetensors file changes region: the end of
// its header and each tensor's start and end. Empty when `head` (the start of
// the file) does not parse as safetensors; never fails.
std::vector<uint64_t> SafetensorsBoundaries(std::string_view head, uint64_t file_size);

// The boundaries adjacent to a region of at least `min_region` bytes: those a
// chunker forces cuts at.
std::vector<uint64_t> KeepLargeRegionBoundaries(const std::vector<uint64_t>& bounds,
                                                uint64_t file_size, uint64_t min_region);

struct ChunkInfo {
  uint64_t offset;
  uint32_t length;
  Digest digest;
};

// Chunks an open file descriptor (must support pread) from offset 0, calling `sink` for each chunk
// with its bytes (valid only during the call). Also computes the whole-file
// SHA-256 into *file_digest and the byte count into *file_size.
// Memory: one buffer of 2 * max_size + 4 MiB, reused.
// Errors: the read's errno status; whatever `sink` returns.
absl::Status ChunkFd(int fd, const ChunkerParams& params,
                     const std::function<absl::Status(const ChunkInfo&, std::string_view)>& sink,
                     Digest* file_digest, uint64_t* file_size);

}  // namespace cairn
