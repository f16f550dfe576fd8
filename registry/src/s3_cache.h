// The S3 chunk store's bounded read cache on local disk (issue 17): chunks
// read from the bucket are appended to segment files; when the cache holds
// more than its limit, the oldest segment is deleted whole (first in, first
// out: no per-chunk bookkeeping on disk, no fragmentation). Every hit is
// re-hashed, so a damaged or edited cache file costs a read from the bucket,
// never a wrong byte. The cache survives a restart: its segments are read
// back at open, up to the first damaged record of each.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cairn/hash.h"

namespace cairn {

class ChunkCache {
 public:
  // Opens (creating) the cache in `dir`, holding at most `max_bytes` of
  // segment files.
  static absl::StatusOr<std::unique_ptr<ChunkCache>> Open(const std::string& dir,
                                                          uint64_t max_bytes);
  ~ChunkCache();

  // The chunk into *out when the cache holds it intact; false otherwise
  // (a record that fails its digest is forgotten).
  bool Lookup(const Digest& d, std::string* out);
  // Adds a chunk whose bytes were verified against `d`. Best effort: a
  // write error disables nothing, it is only a miss later.
  void Insert(const Digest& d, std::string_view data);

  struct Stats {
    uint64_t hits = 0, misses = 0, bytes = 0, chunks = 0;
  };
  Stats stats();

 private:
  struct Segment;
  struct Entry {
    std::shared_ptr<Segment> seg;
    uint64_t offset = 0;  // of the chunk's bytes in the segment
    uint32_t length = 0;
  };
  ChunkCache(std::string dir, uint64_t max_bytes);
  absl::Status Load();
  absl::Status StartSegmentLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropOldestLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const uint64_t max_bytes_, segment_bytes_;
  absl::Mutex mu_;
  std::map<Digest, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<Segment>> segments_ ABSL_GUARDED_BY(mu_);  // oldest first
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0, misses_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cairn
