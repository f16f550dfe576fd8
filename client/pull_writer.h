// Positioned, batched writes of a file being assembled from chunks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace cairn::client {

// Keeps the chunks given to it (moved in, not copied) until about 1 MiB wait,
// then writes them with pwritev(2) in pieces of at most kWritePiece bytes
// (page_cache.h). All-zero chunks become holes (as cp --sparse=auto makes
// them), so the caller sets the file's size at the end.
class ChunkWriter {
 public:
  explicit ChunkWriter(int fd) : fd_(fd) {}
  // The file offset the next chunk goes to.
  uint64_t pos() const { return at_ + pending_bytes_; }
  // The bytes of [off, off+len) written so far, flushed or not.
  absl::Status ReadBack(uint64_t off, uint32_t len, std::string* out) const;
  // Places `data` at pos(); leaves it empty.
  void Append(std::string&& data);
  bool full() const { return pending_bytes_ >= kBatchBytes; }
  absl::Status Flush();
  // After bytes were placed at [pos(), to) by other means (a clone).
  void Skip(uint64_t to) { at_ = to; }
  int fd() const { return fd_; }

 private:
  // Small: what waits here is lost to a kill (not yet indexed, fetched again).
  static constexpr size_t kBatchBytes = 1 << 20;
  struct Piece {
    std::string data;
    bool hole = false;
  };
  int fd_;
  uint64_t at_ = 0;  // where pending_[0] goes
  uint64_t pending_bytes_ = 0;
  std::vector<Piece> pending_;
};

}  // namespace cairn::client
