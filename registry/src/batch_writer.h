// Stores verified chunks on a thread of its own, in batches: the importer's
// thread reads and hashes each chunk straight into a batch buffer, and a full
// batch (a few MiB, hundreds of chunks) goes to the writer thread at once,
// which skips the chunks the store holds and copies the rest into the pack
// files. The importer never waits for the store's lock, which the store
// holds while it writes. One hand-off per batch, not per chunk
// (a futex wake per 64 KiB chunk cost a fifth of an import on this kind of
// VM), and no zero-filled buffer per chunk.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "cairn/hash.h"
#include "cairn/store.h"

namespace cairn {

class BatchWriter {
 public:
  // Flushes the store every `flush_every` bytes stored (what a killed import
  // keeps); `batch_bytes` per batch, at most `max_batches` in flight.
  BatchWriter(ChunkStore* store, size_t flush_every, size_t batch_bytes = 4 << 20,
              size_t max_batches = 4);
  ~BatchWriter();
  BatchWriter(const BatchWriter&) = delete;
  BatchWriter& operator=(const BatchWriter&) = delete;

  // Room for the next chunk of `n` bytes (at most kMaxChunkSize), valid until
  // Commit or the next Reserve. Waits while max_batches are in flight. The
  // first store error, once one happened.
  absl::StatusOr<char*> Reserve(size_t n);
  // The `n` bytes last reserved, hashed against `d`, are to be stored.
  absl::Status Commit(const Digest& d, size_t n);
  // Stores what is left, waits for it, flushes: the first error.
  absl::Status Close();
  // After Close: chunks the store held already, chunks (and bytes) stored.
  uint64_t chunks_held() const { return held_; }
  uint64_t chunks_stored() const { return stored_; }
  uint64_t bytes_stored() const { return bytes_stored_; }

 private:
  struct Batch {
    std::unique_ptr<char[]> bytes;  // batch_bytes + kMaxChunkSize, not zeroed
    size_t used = 0;
    struct Chunk {
      Digest digest;
      size_t offset, size;
    };
    std::vector<Chunk> chunks;
  };
  absl::Status Send();  // hands the current batch to the writer
  void Loop();

  ChunkStore* const store_;
  const size_t flush_every_, batch_bytes_, max_batches_;
  std::unique_ptr<Batch> current_;  // the importer's
  absl::Mutex mu_;
  std::deque<std::unique_ptr<Batch>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Batch>> spare_ ABSL_GUARDED_BY(mu_);  // for reuse
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;                       // queued or being written
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool flushed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  uint64_t held_ = 0, stored_ = 0, bytes_stored_ = 0;  // the writer thread's until joined
  std::thread thread_;                                 // last: starts once the rest is set
};

}  // namespace cairn
