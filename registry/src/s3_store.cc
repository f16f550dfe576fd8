// The S3 chunk store: packs of chunk records PUT whole, then the index
// object naming them; ranged GETs, every chunk re-hashed.
#include "cairn/s3_store.h"

#include <openssl/rand.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "cairn/hash.h"
#include "cairn/limits.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "s3_cache.h"
#include "s3_client.h"
#include "s3_index.h"
#include "s3_windows.h"

namespace cairn {

namespace {

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
bool AddPlace(std::multimap<Digest, s3::Loc>* m, const Digest& d, const s3::Loc& loc) {
  if (m->size() >= kMaxOtherPlaces) return false;
  auto [it, end] = m->equal_range(d);
  size_t n = 0;
  for (; it != end; ++it, ++n) {
    if (it->second.pack == loc.pack && it->second.offset == loc.offset) return false;
  }
  if (n >= kMaxPlacesPerChunk) return false;
  m->emplace(d, loc);
  return true;
}

using s3::IndexEntry;
using s3::Loc;

std::string Hex16(uint64_t id) {
  static const char* kHex = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) s[i] = kHex[id & 15];
  return s;
}

template <typename T>
void Append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

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

  absl::Status Open() {
    if (o_.index_dir.empty())
      return absl::InvalidArgumentError("an S3 store needs a folder for its index");
    bool emptied = false;
    CAIRN_ASSIGN_OR_RETURN(index_,
                           s3::Index::Open(o_.index_dir, o_.bucket + "/" + o_.prefix, &emptied));
    if (emptied) {
      Notice(StrCat("S3 chunk index ", o_.index_dir, " was made for another bucket or prefix;",
                    " emptied, to be rebuilt from s3://", o_.bucket, "/", o_.prefix));
    }
    CAIRN_RETURN_IF_ERROR(client_.CreateBucket());
    CAIRN_RETURN_IF_ERROR(Refresh(/*first=*/true));
    if (o_.cache_bytes > 0) {
      if (o_.cache_dir.empty())
        return absl::InvalidArgumentError("an S3 read cache needs a folder");
      CAIRN_ASSIGN_OR_RETURN(cache_, ChunkCache::Open(o_.cache_dir, o_.cache_bytes));
    }
    windows_ = std::make_unique<PackWindows>(
        &client_, cache_.get(),
        [this](const std::string& key, uint64_t start) { return WindowEnd(key, start); },
        kWindowsKept, kWindowsAhead, kWindowsAhead);
    for (int i = 0; i < std::max(1, o_.parallel_uploads); ++i) {
      uploaders_.emplace_back([this] { UploadLoop(); });
    }
    return absl::OkStatus();
  }

  // Reads the index objects not read yet: what other frontends wrote (at
  // the first, since this frontend last ran). The first also forgets the
  // objects read before that the bucket no longer holds.
  absl::Status Refresh(bool first = false) {
    absl::MutexLock r(&refresh_mu_);
    CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> keys, client_.List(o_.prefix + "index/"));
    std::set<uint64_t> listed;
    std::vector<std::pair<uint64_t, std::string>> todo;  // not read yet
    for (const std::string& key : keys) {
      const std::string name = key.substr(key.rfind('/') + 1);
      char* end = nullptr;
      const uint64_t id = std::strtoull(name.c_str(), &end, 16);
      // Not one of ours: the names are 16 lowercase hex digits (strtoull
      // would read "ABC..." as the same number as "abc...").
      if (name.size() != 16 || *end != '\0' ||
          name.find_first_not_of("0123456789abcdef") != std::string::npos) {
        continue;
      }
      if (first) listed.insert(id);
      absl::MutexLock l(&mu_);
      if (!index_->Known(id)) todo.emplace_back(id, key);
    }
    CAIRN_RETURN_IF_ERROR(s3::ReadIndexObjects(
        client_, todo, [this](uint64_t id, std::string_view bytes) { return AddIndex(id, bytes); },
        [this](const std::string& line) { Notice(line); }));
    if (!first) return absl::OkStatus();
    CAIRN_ASSIGN_OR_RETURN(std::vector<uint64_t> known, index_->KnownObjects());
    size_t gone = 0;
    for (uint64_t id : known) {
      if (listed.contains(id)) continue;
      CAIRN_RETURN_IF_ERROR(index_->DropObject(id));
      ++gone;
    }
    if (gone > 0) {
      Notice(StrCat(gone, " index object(s) read before are gone from the bucket; their chunks are",
                    " no longer counted as held"));
    }
    return absl::OkStatus();
  }

  absl::Status Put(const Digest& d, std::string_view data, PutMode mode) override {
    if (mode == PutMode::kVerify && Sha256Of(data) != d) {
      return absl::DataLossError("chunk bytes do not match " + DigestName(d));
    }
    if (data.empty() || data.size() > o_.pack_bytes || data.size() > UINT32_MAX) {
      return absl::InvalidArgumentError("chunk larger than a pack");
    }
    absl::MutexLock l(&mu_);
    if (HasLocked(d)) return absl::OkStatus();
    // Memory stays bounded when the bucket is slow: at most the buffer and
    // parallel_uploads + 1 sealed packs. A Put waits for room, and fails
    // when every sealed pack has failed (the next Flush tries them again).
    mu_.Await(absl::Condition(
        +[](S3ChunkStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
          return s->sealed_.size() < s->MaxSealed() || s->AllFailedLocked();
        },
        this));
    if (sealed_.size() >= MaxSealed()) {
      return absl::UnavailableError(
          StrCat("the object store takes no writes: ", FirstErrorLocked().message()));
    }
    buffer_.append("CRN1", 4);
    Append(&buffer_, static_cast<uint32_t>(data.size()));
    buffer_.append(reinterpret_cast<const char*>(d.data()), d.size());
    buffered_[d] = Loc{0, buffer_.size(), static_cast<uint32_t>(data.size())};
    buffer_.append(data);
    if (buffer_.size() >= o_.pack_bytes) return SealLocked();
    return absl::OkStatus();
  }

  absl::Status Get(const Digest& d, std::string* out) override {
    Loc loc;
    std::vector<Loc> tried;  // each place at most once a read (a few: AddPlace)
    bool known = false;
    {
      absl::MutexLock l(&mu_);
      if (auto b = buffered_.find(d); b != buffered_.end()) {
        out->assign(buffer_, b->second.offset, b->second.length);
        return absl::OkStatus();
      }
      if (auto p = pending_.find(d); p != pending_.end()) {
        const Sealed& s = *sealed_.at(p->second.pack);
        out->assign(s.pack, p->second.offset, p->second.length);
        return absl::OkStatus();
      }
      known = NextLocationLocked(d, &tried, &loc);
    }
    if (!known) {
      if (RefreshDue()) CAIRN_RETURN_IF_ERROR(Refresh());
      absl::MutexLock l(&mu_);
      if (!NextLocationLocked(d, &tried, &loc)) {
        return absl::NotFoundError("chunk " + DigestName(d) + " not found");
      }
    }
    // Each place the bucket holds the chunk, until one matches its digest.
    for (;;) {
      absl::Status st = ReadAt(d, loc, out);
      absl::MutexLock l(&mu_);
      if (st.ok()) {
        MarkGoodLocked(d, loc);
        return st;
      }
      if (!absl::IsDataLoss(st) && !absl::IsNotFound(st)) return st;
      // Bad bytes or no pack object there: the chunk is no longer counted
      // as held (a publish or a repair stores a good copy), but its place
      // is kept and tried again on later reads (a flip on the way heals).
      AddPlace(&suspect_, d, loc);  // once per place, however often it fails
      for (auto [it, end] = extra_.equal_range(d); it != end; ++it) {
        if (SameLoc(it->second, loc)) {
          extra_.erase(it);
          break;
        }
      }
      if (Loc held; index_->Find(d, &held) && SameLoc(held, loc) && !held.suspect) {
        held.suspect = true;
        held.verified = false;
        index_->Set(d, held).IgnoreError();  // a place to try again, not held
      }
      if (!NextLocationLocked(d, &tried, &loc)) {
        out->clear();
        return st;
      }
    }
  }

  // Has, and for a chunk that only an index object names (another
  // frontend's, or one planted in the bucket), read back and matched against
  // its digest first: a publish then uploads what the bucket does not truly
  // hold, and its commit never counts on bytes stored nowhere.
  absl::StatusOr<bool> HasIntact(const Digest& d) override {
    CAIRN_ASSIGN_OR_RETURN(bool has, Has(d));
    if (!has) return false;
    {
      absl::MutexLock l(&mu_);
      if (buffered_.contains(d) || pending_.contains(d)) return true;
      if (Loc held; index_->Find(d, &held) && held.verified && !held.suspect) return true;
    }
    std::string data;
    absl::Status st = Get(d, &data);
    if (st.ok()) return true;
    if (absl::IsDataLoss(st) || absl::IsNotFound(st)) return false;
    return st;
  }

  absl::StatusOr<bool> Has(const Digest& d) override {
    {
      absl::MutexLock l(&mu_);
      if (HasLocked(d)) return true;
    }
    // Another frontend may have stored it since: look at the bucket's
    // index objects again, at most once a second.
    if (!RefreshDue()) return false;
    CAIRN_RETURN_IF_ERROR(Refresh());
    absl::MutexLock l(&mu_);
    return HeldLocked(d);
  }

  absl::Status List(const Digest* after, size_t max, std::vector<Digest>* out) override {
    absl::MutexLock l(&mu_);
    return index_->List(after, max, out);
  }

  // Seals the buffer and waits until every sealed pack is in the bucket
  // with its index object, trying the ones that failed once more.
  absl::Status Flush() override {
    absl::MutexLock l(&mu_);
    if (!buffer_.empty()) CAIRN_RETURN_IF_ERROR(SealLocked());
    for (auto& [id, s] : sealed_) s->error = absl::OkStatus();
    mu_.Await(absl::Condition(
        +[](S3ChunkStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->AllFailedLocked(); },
        this));
    if (sealed_.empty()) return absl::OkStatus();
    return absl::UnavailableError(StrCat(sealed_.size(), " pack(s) of chunks could not be written",
                                         " to the object store: ", FirstErrorLocked().message()));
  }
  absl::Status Sync() override { return Flush(); }

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
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto take = [&](const Loc& l) {
      for (const Loc& t : *tried) {
        if (SameLoc(t, l)) return false;
      }
      tried->push_back(l);
      *loc = l;
      return true;
    };
    Loc held;
    const bool have = index_->Find(d, &held);
    if (have && !held.suspect && take(held)) return true;
    for (auto [it, end] = extra_.equal_range(d); it != end; ++it) {
      if (take(it->second)) return true;
    }
    if (have && take(held)) return true;
    for (auto [it, end] = suspect_.equal_range(d); it != end; ++it) {
      if (take(it->second)) return true;
    }
    return false;
  }

  // `loc` held `d` intact: it is the chunk's place again, verified.
  // (`loc` as NextLocationLocked gave it: a primary place already verified
  // since this frontend started is not written again, so reads write nothing.)
  void MarkGoodLocked(const Digest& d, Loc loc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!loc.verified || loc.suspect) {
      // A place that failed before stays known, to be tried again.
      if (Loc old; index_->Find(d, &old) && !SameLoc(old, loc)) AddPlace(&suspect_, d, old);
      loc.verified = true;
      loc.suspect = false;
      index_->Set(d, loc).IgnoreError();  // a failed write costs a read later
    }
    for (auto* m : {&suspect_, &extra_}) {
      auto range = m->equal_range(d);
      for (auto it = range.first; it != range.second;) {
        it = SameLoc(it->second, loc) ? m->erase(it) : std::next(it);
      }
    }
  }

  // One place's bytes, verified: from memory, the read cache, a window of
  // the pack or the chunk's own range (read once more on a mismatch: a
  // flipped bit on the way is not the object's fault).
  absl::Status ReadAt(const Digest& d, const Loc& loc, std::string* out) {
    const std::string key = PackKey(loc.pack);
    if (windows_->InMemory(key, d, out)) return absl::OkStatus();
    if (cache_ && cache_->Lookup(d, out)) return absl::OkStatus();
    CAIRN_ASSIGN_OR_RETURN(bool read,
                           windows_->Read(key, loc.offset - kRecordHeader, d, loc.length, out));
    if (read) return absl::OkStatus();
    for (int attempt = 0; attempt < 2; ++attempt) {
      CAIRN_ASSIGN_OR_RETURN(*out, client_.Get(key, loc.offset, loc.length));
      if (out->size() == loc.length && Sha256Of(*out) == d) {
        if (cache_) cache_->Insert(d, *out);
        return absl::OkStatus();
      }
    }
    out->clear();
    return absl::DataLossError("chunk " + DigestName(d) + " read from S3 object " + key +
                               " does not match its digest");
  }

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
  // In the bucket, at a place no read has found bad.
  bool HeldLocked(const Digest& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Loc held;
    return index_->Find(d, &held) && !held.suspect;
  }

  absl::Status FirstErrorLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, s] : sealed_) {
      if (!s->error.ok()) return s->error;
    }
    return absl::UnavailableError("uploads pending");
  }

  absl::Status AddIndex(uint64_t id, std::string_view index) {
    // A damaged index object costs its own entries, never the frontend:
    // whole entries are used, the rest reported.
    std::vector<IndexEntry> entries, others;
    const size_t skipped = s3::ParseIndexObject(id, index, kRecordHeader, &entries);
    absl::MutexLock l(&mu_);
    CAIRN_RETURN_IF_ERROR(index_->AddObject(id, entries, /*overwrite=*/false, &others));
    for (const IndexEntry& e : others) {  // other copies of chunks already placed
      AddPlace(&extra_, e.digest, e.loc);
    }
    if (skipped > 0 || index.size() % s3::kIndexEntryBytes != 0) {
      Notice(StrCat("S3 index object ", IndexKey(id), " is damaged: ", skipped,
                    " entries name no chunk a pack can hold",
                    index.size() % s3::kIndexEntryBytes != 0 ? ", and it ends inside an entry" : "",
                    "; its other entries are used"));
    }
    return absl::OkStatus();
  }

  // The buffer becomes a sealed pack, named at random, for an uploader; its
  // chunks stay readable from memory until their index object is written.
  absl::Status SealLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint64_t id = 0;
    do {
      if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof(id)) != 1) {
        return absl::InternalError("no random pack name");
      }
    } while (sealed_.contains(id) || index_->Known(id));
    auto s = std::make_unique<Sealed>();
    for (const auto& [d, loc] : buffered_) {
      s->trailer.append(reinterpret_cast<const char*>(d.data()), d.size());
      Append(&s->trailer, loc.offset);
      Append(&s->trailer, loc.length);
      s->digests.push_back(d);
      pending_[d] = Loc{id, loc.offset, loc.length};
    }
    s->pack = std::move(buffer_);
    s->pack += s->trailer;
    Append(&s->pack, static_cast<uint64_t>(s->trailer.size()));
    sealed_[id] = std::move(s);
    buffered_.clear();
    buffer_.clear();
    return absl::OkStatus();
  }

  // One uploader: takes a sealed pack no one uploads and that has not
  // failed since the last Flush, PUTs it, then its index object; only then
  // are its chunks in the index (and visible to other frontends).
  void UploadLoop() {
    mu_.Lock();
    for (;;) {
      mu_.Await(absl::Condition(
          +[](S3ChunkStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || s->NextLocked().has_value();
          },
          this));
      if (stopping_) break;
      const uint64_t id = *NextLocked();
      Sealed* s = sealed_.at(id).get();
      s->uploading = true;
      mu_.Unlock();
      absl::Status st = client_.Put(PackKey(id), s->pack);
      if (st.ok()) st = client_.Put(IndexKey(id), s->trailer);
      mu_.Lock();
      s->uploading = false;
      std::vector<IndexEntry> entries;
      for (const Digest& d : s->digests) {
        Loc loc = pending_.at(d);
        loc.verified = true;
        entries.push_back({d, loc});
      }
      if (st.ok()) st = index_->AddObject(id, entries, /*overwrite=*/true, nullptr);
      if (!st.ok()) {
        s->error = st;
        continue;
      }
      for (const Digest& d : s->digests) {
        suspect_.erase(d);
        pending_.erase(d);
      }
      sealed_.erase(id);
    }
    mu_.Unlock();
  }

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
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkStore>> OpenS3ChunkStore(const S3Options& options) {
  if (options.endpoint.empty() || options.bucket.empty()) {
    return absl::InvalidArgumentError("an S3 store needs an endpoint and a bucket");
  }
  if (options.access_key.empty() || options.secret_key.empty()) {
    return absl::InvalidArgumentError(
        "an S3 store needs credentials (CAIRN_S3_ACCESS_KEY, CAIRN_S3_SECRET_KEY)");
  }
  auto s = std::make_unique<S3ChunkStore>(options);
  CAIRN_RETURN_IF_ERROR(s->Open());
  return std::unique_ptr<ChunkStore>(std::move(s));
}

}  // namespace cairn
