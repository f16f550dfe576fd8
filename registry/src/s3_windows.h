// Sequential reads from S3 pack objects (issue 17): a chunk that misses the
// read cache is fetched with the records after it, one ranged GET of a
// window (4 MiB) from its record on; every whole record in the window is
// verified against its digest, kept in memory among the last few windows
// and added to the read cache, and the next window of the same pack is
// fetched in the background while this one is served. A chunk of a file is
// thus one request per window, not per chunk, and a sequential pull waits
// for the bucket about once, not once per window.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cairn/hash.h"
#include "s3_cache.h"
#include "s3_client.h"

namespace cairn {

class PackWindows {
 public:
  // Where the window that starts at record `start` of object `key` ends: the
  // end of the last whole record within `window` bytes (of the first record
  // when it alone is longer); 0 when `start` is no known record's start.
  using WindowEnd = std::function<uint64_t(const std::string& key, uint64_t start)>;
  // `cache` may be null. At most `keep` windows are held in memory, plus
  // those being fetched: `ahead` windows after the one being read are
  // fetched in the background by `fetchers` threads.
  PackWindows(s3::Client* client, ChunkCache* cache, WindowEnd window_end, size_t keep, int ahead,
              int fetchers);
  ~PackWindows();

  // The chunk from a window in memory (no request); false when none holds it.
  bool InMemory(const std::string& key, const Digest& d, std::string* out);
  // The chunk `d` (`length` bytes) whose record starts at `record` in
  // object `key`: from a window in memory, one being fetched, or a new one.
  // False when the window did not hold it intact (the caller reads the
  // chunk alone and reports what it finds); the request's error when it
  // failed.
  absl::StatusOr<bool> Read(const std::string& key, uint64_t record, const Digest& d,
                            uint32_t length, std::string* out);

 private:
  struct Window {
    std::string key;
    uint64_t start = 0, end = 0;  // [start, end) of the object: whole records
    std::string bytes;
    std::map<Digest, std::pair<uint32_t, uint32_t>> chunks;  // offset in bytes, length
  };
  struct Want {
    std::string key;
    uint64_t start, end;
    bool operator<(const Want& o) const { return std::tie(key, start) < std::tie(o.key, o.start); }
  };
  // `length` bytes from `start`, its whole records verified (and cached);
  // null when the request failed or held no whole record.
  absl::StatusOr<std::shared_ptr<Window>> Fetch(const std::string& key, uint64_t start,
                                                uint64_t length);
  void Keep(std::shared_ptr<Window> w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Window> FindLocked(const std::string& key, const Digest& d)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the `ahead_` windows after `w` for the background fetchers,
  // but those held or queued.
  void AheadLocked(const Window& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HeldLocked(const std::string& key, uint64_t start) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool InFlightLocked(const std::string& key, uint64_t record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FetchLoop();

  s3::Client* const client_;
  ChunkCache* const cache_;
  const WindowEnd window_end_;
  const size_t keep_;
  const int ahead_n_;
  absl::Mutex mu_;
  std::deque<std::shared_ptr<Window>> windows_ ABSL_GUARDED_BY(mu_);  // newest last
  std::set<Want> in_flight_ ABSL_GUARDED_BY(mu_);
  std::deque<Want> ahead_ ABSL_GUARDED_BY(mu_);  // windows to fetch in the background
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> fetchers_;
};

}  // namespace cairn
