// The S3 chunk store: packs of chunk records PUT whole, then the index
// object naming them; ranged GETs, every chunk re-hashed.
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cairn/limits.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "s3_gc_rounds.h"
#include "s3_store_impl.h"

namespace cairn::s3 {

namespace {
template <typename T>
void Append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(v));
}
}  // namespace

bool AddPlace(std::multimap<Digest, Loc>* m, const Digest& d, const Loc& loc) {
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

absl::Status S3ChunkStore::Open() {
  uint64_t ignored = 0;
  if (o_.index_dir.empty())
    return absl::InvalidArgumentError("an S3 store needs a folder for its index");
  bool emptied = false;
  CAIRN_ASSIGN_OR_RETURN(index_,
                         s3::Index::Open(o_.index_dir, o_.bucket + "/" + o_.prefix, &emptied));
  if (emptied) {
    Notice(StrCat("S3 chunk index ", o_.index_dir, " was made for another bucket or prefix;",
                  " emptied, to be rebuilt from s3://", o_.bucket, "/", o_.prefix));
  }
  // The id outlives the index: a frontend whose index was deleted (to be
  // rebuilt) is the same frontend, not one more for rounds to wait for.
  const std::string id_file = std::filesystem::path(o_.index_dir).parent_path() / "s3-frontend-id";
  std::string saved;
  if (std::ifstream in(id_file); in && std::getline(in, saved) && s3::ParseHex16(saved, &ignored)) {
    fid_ = saved;
  } else {
    CAIRN_ASSIGN_OR_RETURN(fid_, index_->FrontendId());
    std::ofstream out(id_file, std::ios::trunc);
    out << fid_ << "\n";
    if (!out.flush()) return absl::UnavailableError("cannot write " + id_file);
  }
  CAIRN_RETURN_IF_ERROR(client_.CreateBucket());
  // Named before the rounds are read: a collector either waits for this
  // frontend's answer or opened its round before this start read it.
  CAIRN_RETURN_IF_ERROR(Register());
  CAIRN_RETURN_IF_ERROR(Refresh(/*first=*/true));
  if (o_.cache_bytes > 0) {
    if (o_.cache_dir.empty()) return absl::InvalidArgumentError("an S3 read cache needs a folder");
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

absl::Status S3ChunkStore::Refresh(bool first) {
  absl::MutexLock r(&refresh_mu_);
  // The rounds are listed before the index objects: the copies a round's
  // collector made before its list are then read too.
  CAIRN_ASSIGN_OR_RETURN(s3::Rounds rounds, s3::ListRounds(client_, o_.prefix));
  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> keys, client_.List(o_.prefix + "index/"));
  absl::flat_hash_set<uint64_t> listed;
  std::vector<std::pair<uint64_t, std::string>> todo;  // not read yet
  for (const std::string& key : keys) {
    uint64_t id = 0;
    if (!s3::ParseHex16(std::string_view(key).substr(key.rfind('/') + 1), &id)) continue;
    listed.insert(id);
    absl::MutexLock l(&mu_);
    if (!index_->Known(id)) todo.emplace_back(id, key);
  }
  // Packs deleted by rounds that ended are forgotten first, then the packs
  // of new rounds condemned, then new index objects read (a copy of a
  // condemned chunk becomes its place).
  CAIRN_RETURN_IF_ERROR(LoadRounds(rounds, listed));
  CAIRN_RETURN_IF_ERROR(s3::ReadIndexObjects(
      client_, todo, [this](uint64_t id, std::string_view bytes) { return AddIndex(id, bytes); },
      [this](const std::string& line) { Notice(line); }));
  if (!first) return absl::OkStatus();
  CAIRN_ASSIGN_OR_RETURN(std::vector<uint64_t> known, index_->KnownObjects());
  size_t gone = 0;
  for (uint64_t id : known) {
    if (listed.contains(id)) continue;
    absl::MutexLock l(&mu_);
    CAIRN_RETURN_IF_ERROR(DropPackLocked(id));
    ++gone;
  }
  if (gone > 0) {
    Notice(StrCat(gone, " index object(s) read before are gone from the bucket; their chunks are",
                  " no longer counted as held"));
  }
  return absl::OkStatus();
}

absl::Status S3ChunkStore::Put(const Digest& d, std::string_view data, PutMode mode) {
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

absl::Status S3ChunkStore::Get(const Digest& d, std::string* out) {
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
    // No pack object: none of its chunks is held there (one failed read
    // for the pack, not one per chunk).
    if (absl::IsNotFound(st)) PackGoneLocked(loc.pack);
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

absl::StatusOr<bool> S3ChunkStore::HasIntact(const Digest& d) {
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

absl::StatusOr<bool> S3ChunkStore::Has(const Digest& d) {
  Loc condemned;
  bool copy = false;
  {
    absl::MutexLock l(&mu_);
    if (HasLocked(d)) return true;
    copy = CondemnedPlaceLocked(d, &condemned);
  }
  if (copy) return CopyForward(d, condemned);
  // Another frontend may have stored it since: look at the bucket's
  // index objects again, at most once a second.
  if (!RefreshDue()) return false;
  CAIRN_RETURN_IF_ERROR(Refresh());
  {
    absl::MutexLock l(&mu_);
    if (HeldLocked(d)) return true;
    copy = CondemnedPlaceLocked(d, &condemned);
  }
  if (copy) return CopyForward(d, condemned);
  return false;
}

absl::Status S3ChunkStore::Flush() {
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

bool S3ChunkStore::NextLocationLocked(const Digest& d, std::vector<Loc>* tried, Loc* loc) {
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

void S3ChunkStore::MarkGoodLocked(const Digest& d, Loc loc) {
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

absl::Status S3ChunkStore::ReadAt(const Digest& d, const Loc& loc, std::string* out) {
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

absl::Status S3ChunkStore::AddIndex(uint64_t id, std::string_view index) {
  // A damaged index object costs its own entries, never the frontend:
  // whole entries are used, the rest reported.
  std::vector<IndexEntry> entries, others;
  const size_t skipped = s3::ParseIndexObject(id, index, kRecordHeader, &entries);
  absl::MutexLock l(&mu_);
  CAIRN_RETURN_IF_ERROR(index_->AddObject(id, entries, /*overwrite=*/false, &others, NowUnix()));
  for (const IndexEntry& e : others) {  // other copies of chunks already placed
    // A copy outside the condemned packs becomes the place (the collector
    // copied the chunk out of a pack it condemned).
    if (Loc held; index_->Find(e.digest, &held) && CondemnedLocked(held.pack) &&
                  !CondemnedLocked(e.loc.pack)) {
      CAIRN_RETURN_IF_ERROR(index_->Set(e.digest, e.loc));
      AddPlace(&extra_, e.digest, held);
    } else {
      AddPlace(&extra_, e.digest, e.loc);
    }
  }
  if (skipped > 0 || index.size() % s3::kIndexEntryBytes != 0) {
    Notice(StrCat("S3 index object ", IndexKey(id), " is damaged: ", skipped,
                  " entries name no chunk a pack can hold",
                  index.size() % s3::kIndexEntryBytes != 0 ? ", and it ends inside an entry" : "",
                  "; its other entries are used"));
  }
  return absl::OkStatus();
}

absl::Status S3ChunkStore::SealLocked() {
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

void S3ChunkStore::UploadLoop() {
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
    if (st.ok()) st = index_->AddObject(id, entries, /*overwrite=*/true, nullptr, NowUnix());
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

}  // namespace cairn::s3

namespace cairn {

absl::StatusOr<std::unique_ptr<ChunkStore>> OpenS3ChunkStore(const S3Options& options) {
  if (options.endpoint.empty() || options.bucket.empty()) {
    return absl::InvalidArgumentError("an S3 store needs an endpoint and a bucket");
  }
  if (options.access_key.empty() || options.secret_key.empty()) {
    return absl::InvalidArgumentError(
        "an S3 store needs credentials (CAIRN_S3_ACCESS_KEY, CAIRN_S3_SECRET_KEY)");
  }
  auto s = std::make_unique<s3::S3ChunkStore>(options);
  CAIRN_RETURN_IF_ERROR(s->Open());
  return std::unique_ptr<ChunkStore>(std::move(s));
}

}  // namespace cairn
