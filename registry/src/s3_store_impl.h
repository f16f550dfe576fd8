// The S3 chunk store's class: s3_store.cc has its reads, writes and index
// upkeep, s3_store_gc.cc garbage collection on the shared bucket.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "cairn/hash.h"
#include "cairn/s3_store.h"
#include "s3_cache.h"
#include "s3_client.h"
#include "s3_gc_rounds.h"
#include "s3_index.h"
#include "s3_windows.h"

namespace cairn::s3 {

constexpr size_t kRecordHeader = 40;  // "CRN1", u32 length, digest
// A read that misses the cache fetches this much of the pack (4 MiB), and
// the last kWindowsKept such windows stay in memory (32 MiB).
constexpr uint64_t kReadAhead = 4 << 20;
constexpr size_t kWindowsKept = 8;
// Windows fetched ahead of the one being read, each by its own thread.
constexpr int kWindowsAhead = 3;

// Places kept in memory beside the on-disk index: other copies index
// objects name, and places that failed a read. Past this many in all, or
// kMaxPlacesPerChunk for one chunk, more are not kept: a planted index
// object naming one chunk a million times costs neither memory nor more
// than a few reads of that chunk.
constexpr size_t kMaxOtherPlaces = 1 << 16;
constexpr size_t kMaxPlacesPerChunk = 8;

// Adds `loc` to the places kept for `d` in `m`, within the bounds above;
// false when it was there already or there is no room.
bool AddPlace(std::multimap<Digest, Loc>* m, const Digest& d, const Loc& loc);

class S3ChunkStore final : public ChunkStore {
 public:
  explicit S3ChunkStore(const S3Options& o) : o_(o), client_(o) {}

  ~S3ChunkStore() override {
    // Best effort, like the pack store on a clean shutdown: Sync() is the
    // contract, and what no commit named is garbage anyway.
    Flush().IgnoreError();
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    for (auto& t : uploaders_) t.join();
  }

  absl::Status Open();

  // Reads the index objects not read yet: what other frontends wrote (at
  // the first, since this frontend last ran). The first also forgets the
  // objects read before that the bucket no longer holds.
  absl::Status Refresh(bool first = false);

  absl::Status Put(const Digest& d, std::string_view data, PutMode mode) override;

  absl::Status Get(const Digest& d, std::string* out) override;

  // Has, and for a chunk that only an index object names (another
  // frontend's, or one planted in the bucket), read back and matched against
  // its digest first: a publish then uploads what the bucket does not truly
  // hold, and its commit never counts on bytes stored nowhere.
  absl::StatusOr<bool> HasIntact(const Digest& d) override;

  absl::StatusOr<bool> Has(const Digest& d) override;

  absl::Status List(const Digest* after, size_t max, std::vector<Digest>* out) override {
    absl::MutexLock l(&mu_);
    return index_->List(after, max, out);
  }

  // Seals the buffer and waits until every sealed pack is in the bucket
  // with its index object, trying the ones that failed once more.
  absl::Status Flush() override;
  absl::Status Sync() override { return Flush(); }

  // Garbage collection (s3_store_gc.cc). On the collector: the chunks in
  // the index with the time their index object was first read; Remove
  // nominates chunks for the next round; Compact closes the open round
  // (once every frontend answered) and opens the next. On other frontends
  // nothing is listed and Compact says who collects.
  absl::Status ListStored(const Digest* after, size_t max, std::vector<StoredChunk>* out) override;
  absl::StatusOr<uint64_t> Remove(const std::vector<Digest>& digests) override;
  absl::StatusOr<CompactReport> Compact(double live_below, Cancellation* cancel) override;
  absl::Status AnswerCollection(const NeededChunks& needed) override;

 private:
  // A pack waiting to be written: its bytes with the trailer, and the
  // trailer alone (the index object).
  struct Sealed {
    std::string pack, trailer;
    std::vector<Digest> digests;
    bool uploading = false;
    absl::Status error;  // of the last attempt
  };

  size_t MaxSealed() const { return static_cast<size_t>(std::max(1, o_.parallel_uploads)) + 1; }
  std::string PackKey(uint64_t id) const { return o_.prefix + "packs/" + Hex16(id); }
  std::string IndexKey(uint64_t id) const { return o_.prefix + "index/" + Hex16(id); }

  static bool SameLoc(const Loc& a, const Loc& b) {
    return a.pack == b.pack && a.offset == b.offset;
  }

  // Where to read `d` next, each place once in a read (`tried`): its index
  // entry unless it failed before, the other places index objects named,
  // then the places that failed before (a flip on the way heals; a pack put
  // back is found).
  bool NextLocationLocked(const Digest& d, std::vector<Loc>* tried, Loc* loc)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // `loc` held `d` intact: it is the chunk's place again, verified.
  // (`loc` as NextLocationLocked gave it: a primary place already verified
  // since this frontend started is not written again, so reads write nothing.)
  void MarkGoodLocked(const Digest& d, Loc loc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // One place's bytes, verified: from memory, the read cache, a window of
  // the pack or the chunk's own range (read once more on a mismatch: a
  // flipped bit on the way is not the object's fault).
  absl::Status ReadAt(const Digest& d, const Loc& loc, std::string* out);

  // True when no sealed pack is uploading or waiting for an uploader: each
  // failed its last attempt (or there are none).
  bool AllFailedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, p] : sealed_) {
      if (p->uploading || p->error.ok()) return false;
    }
    return true;
  }

  bool HasLocked(const Digest& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return HeldLocked(d) || buffered_.contains(d) || pending_.contains(d);
  }
  // In the bucket, at a place no read has found bad, in a pack no open
  // collection round condemned.
  bool HeldLocked(const Digest& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Loc held;
    return index_->Find(d, &held) && !held.suspect && !CondemnedLocked(held.pack);
  }
  bool CondemnedLocked(uint64_t pack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [round, packs] : condemned_) {
      if (packs.contains(pack)) return true;
    }
    return false;
  }

  // ---- Collection rounds (s3_store_gc.cc) ----
  int64_t NowUnix() const;
  std::string RoundKey(uint64_t round, std::string_view what) const {
    return o_.prefix + "gc/rounds/" + Hex16(round) + "/" + std::string(what);
  }
  // Names this frontend in the bucket (PREFIX/gc/frontends/<id>).
  absl::Status Register();
  // From the rounds listed (`gc`) and the index objects listed: forgets
  // the packs rounds that ended deleted, then reads the packs new rounds
  // condemn (before new index objects are read: a copy of a condemned
  // chunk becomes its place).
  absl::Status LoadRounds(const Rounds& gc, const absl::flat_hash_set<uint64_t>& listed);
  // A chunk whose place is in `pack` (just condemned) takes another place
  // known for it, if there is one outside condemned packs.
  void PromoteLocked(uint64_t pack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `d` is held only in a condemned pack (*loc): not held, but readable.
  bool CondemnedPlaceLocked(const Digest& d, Loc* loc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Has() of such a chunk: it is read there and stored anew (within the
  // bucket: no chunk fetched over the network, no publish refused for a
  // chunk it was told of before the round); false when it cannot be read.
  absl::StatusOr<bool> CopyForward(const Digest& d, const Loc& loc);
  // Forgets pack `id` (deleted from the bucket): its chunks take another
  // place known for them, if any; no place in it stays known.
  absl::Status DropPackLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pack object `pack` is gone from the bucket: its chunks' places there
  // no longer count as held.
  void PackGoneLocked(uint64_t pack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The collector's two steps of a pass; *closed false: still waiting.
  // `mine`: the collector's record of its open round (u64 number, then the
  // ids of the packs it condemned, native order).
  absl::Status CloseRound(const std::string& mine, CompactReport* r, bool* closed);
  absl::Status OpenRound(uint64_t round, double live_below, Cancellation* cancel, CompactReport* r);

  absl::Status FirstErrorLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, s] : sealed_) {
      if (!s->error.ok()) return s->error;
    }
    return absl::UnavailableError("uploads pending");
  }

  absl::Status AddIndex(uint64_t id, std::string_view index);

  // The buffer becomes a sealed pack, named at random, for an uploader; its
  // chunks stay readable from memory until their index object is written.
  absl::Status SealLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // One uploader: takes a sealed pack no one uploads and that has not
  // failed since the last Flush, PUTs it, then its index object; only then
  // are its chunks in the index (and visible to other frontends).
  void UploadLoop();

  // The first sealed pack no one uploads that has not failed since the
  // last Flush.
  std::optional<uint64_t> NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, s] : sealed_) {
      if (!s->uploading && s->error.ok()) return id;
    }
    return std::nullopt;
  }

  // The end of the read window that starts at record `start` of pack object
  // `key`: the whole records within kReadAhead bytes (at least one); 0 when
  // no record of ours starts there.
  uint64_t WindowEnd(const std::string& key, uint64_t start) {
    const uint64_t id = std::strtoull(key.c_str() + key.size() - 16, nullptr, 16);
    return index_->WindowEnd(id, start, kReadAhead, kRecordHeader);
  }

  // S3Options::log, one line at a time (index objects are read by several
  // threads).
  void Notice(const std::string& line) {
    if (!o_.log) return;
    absl::MutexLock l(&log_mu_);
    o_.log(line);
  }

  bool RefreshDue() {
    const auto now = std::chrono::steady_clock::now();
    absl::MutexLock l(&mu_);
    if (now - last_refresh_ < std::chrono::seconds(1)) return false;
    last_refresh_ = now;
    return true;
  }

  const S3Options o_;
  s3::Client client_;
  absl::Mutex refresh_mu_;  // one listing at a time
  absl::Mutex log_mu_;
  absl::Mutex mu_;
  std::chrono::steady_clock::time_point last_refresh_ ABSL_GUARDED_BY(mu_);
  // Where each chunk lies, each pack's records, the index objects read.
  std::unique_ptr<s3::Index> index_;
  std::map<Digest, Loc> buffered_ ABSL_GUARDED_BY(mu_);  // offsets in buffer_
  std::string buffer_ ABSL_GUARDED_BY(mu_);
  // Sealed packs not yet in the bucket, and where their chunks are in them.
  std::map<uint64_t, std::unique_ptr<Sealed>> sealed_ ABSL_GUARDED_BY(mu_);
  std::map<Digest, Loc> pending_ ABSL_GUARDED_BY(mu_);
  // Other places index objects name for a chunk already in index_ (rare:
  // two frontends storing it at once), and places that failed a read.
  std::multimap<Digest, Loc> extra_ ABSL_GUARDED_BY(mu_);
  std::multimap<Digest, Loc> suspect_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> uploaders_;
  std::unique_ptr<ChunkCache> cache_;  // null when off
  std::unique_ptr<PackWindows> windows_;
  // Collection rounds: this frontend's name, the packs each open round
  // condemns, the rounds answered, those refused (a condemned list not of
  // ours), the one the collector is opening (condemned here before the
  // bucket says so), and the chunks nominated for the next one.
  std::string fid_;
  std::map<uint64_t, std::set<uint64_t>> condemned_ ABSL_GUARDED_BY(mu_);
  struct Answered {
    std::string bytes;    // what this frontend answered
    bool listed = false;  // and the bucket listed it at the last look
  };
  std::map<uint64_t, Answered> answered_ ABSL_GUARDED_BY(mu_);
  int64_t started_ = 0;  // unix seconds, for the registration
  std::chrono::steady_clock::time_point registered_{};
  std::set<uint64_t> refused_ ABSL_GUARDED_BY(mu_);
  uint64_t opening_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<Digest, DigestHash> nominated_ ABSL_GUARDED_BY(mu_);
  // The round whose rescued chunks a round's choice last took as live
  // (Compact: one pass at a time).
  uint64_t rescue_applied_ = 0;
};

}  // namespace cairn::s3
