// Append-only pack files indexed by RocksDB: writes, reads, crash recovery
// and backup. The layout is described in pack_store_impl.h.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "cairn/crc32c.h"
#include "cairn/limits.h"
#include "cairn/page_cache.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "pack_store_impl.h"
#include "rocks_util.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace cairn {
namespace pack {

std::string EncodeLoc(const Loc& l) {
  char b[28];
  std::memcpy(b, &l.pack, 4);
  std::memcpy(b + 4, &l.offset, 8);
  std::memcpy(b + 12, &l.length, 4);
  std::memcpy(b + 16, &l.stored_unix, 8);
  std::memcpy(b + 24, &l.crc, 4);
  return std::string(b, l.has_crc ? 28 : 24);
}

bool DecodeLoc(std::string_view s, Loc* l) {
  if (s.size() != 16 && s.size() != 24 && s.size() < 28) return false;
  std::memcpy(&l->pack, s.data(), 4);
  std::memcpy(&l->offset, s.data() + 4, 8);
  std::memcpy(&l->length, s.data() + 12, 4);
  l->stored_unix = 0;
  if (s.size() >= 24) std::memcpy(&l->stored_unix, s.data() + 16, 8);
  l->has_crc = s.size() >= 28;
  l->crc = 0;
  if (l->has_crc) std::memcpy(&l->crc, s.data() + 24, 4);
  // A length no chunk has is damage: reading it would allocate up to 4 GiB.
  return l->length > 0 && l->length <= kMaxChunkSize;
}

rocksdb::Slice DigestSlice(const Digest& d) {
  return rocksdb::Slice(reinterpret_cast<const char*>(d.data()), d.size());
}

std::string PackPath(const std::string& dir, uint32_t id) {
  return absl::StrFormat("%s/packs/pack-%08u.dat", dir, id);
}

absl::Status MkdirP(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot create " + dir);
  return absl::OkStatus();
}

static std::string EncodeTail(uint32_t pack, uint64_t offset) {
  char b[12];
  std::memcpy(b, &pack, 4);
  std::memcpy(b + 4, &offset, 8);
  return std::string(b, 12);
}

PackChunkStore::PackChunkStore(std::string dir, PackStoreOptions opts,
                               std::unique_ptr<rocksdb::DB> index)
    : dir_(std::move(dir)),
      opts_(opts),
      clock_(opts.clock != nullptr ? opts.clock : Clock::Real()),
      index_(std::move(index)) {}

PackChunkStore::~PackChunkStore() {
  absl::MutexLock l(&mu_);
  // Best effort on a clean shutdown; Sync() is the contract.
  FlushLocked().IgnoreError();
  if (active_fd_ >= 0) {
    ::close(active_fd_);
    // A store opened and closed without a write leaves no empty pack.
    if (active_size_ == 0 && buffer_.empty()) ::unlink(PackPath(dir_, active_id_).c_str());
  }
}

absl::Status PackChunkStore::Init() {
  CAIRN_RETURN_IF_ERROR(MkdirP(dir_ + "/packs"));
  uint32_t max_id = 0;
  DIR* d = ::opendir((dir_ + "/packs").c_str());
  if (d == nullptr) return ErrnoStatus(errno, "cannot list " + dir_ + "/packs");
  while (dirent* e = ::readdir(d)) {
    unsigned id;
    if (std::sscanf(e->d_name, "pack-%08u.dat", &id) == 1) max_id = std::max<uint32_t>(max_id, id);
  }
  ::closedir(d);
  // Appends always go to a new pack: an empty newest pack may be one cut to
  // nothing since (damage, an operator's mistake) that the index still
  // names, and new records written at its old offsets would be found under
  // the old chunks' digests.
  absl::MutexLock l(&mu_);
  CAIRN_RETURN_IF_ERROR(RecoverLocked(max_id));
  return OpenActiveLocked(max_id + 1);
}

absl::Status PackChunkStore::Put(const Digest& digest, std::string_view data, PutMode mode) {
  if (data.empty() || data.size() > kMaxChunkSize) {
    return absl::InvalidArgumentError(StrCat("chunk size ", data.size(), " out of range"));
  }
  if (mode == PutMode::kVerify && Sha256Of(data) != digest) {
    return absl::DataLossError("chunk bytes do not match digest " + DigestName(digest));
  }
  const uint32_t crc = Crc32c(data);  // of the bytes just checked, for later reads
  absl::MutexLock l(&mu_);
  if (mem_.contains(digest)) return absl::OkStatus();
  const bool removing = removing_.contains(digest);
  if (!removing) {
    CAIRN_ASSIGN_OR_RETURN(bool indexed, InIndexLocked(digest));
    if (indexed) return absl::OkStatus();
  }
  CAIRN_RETURN_IF_ERROR(CheckFreeLocked(kHeader + data.size()));
  CAIRN_RETURN_IF_ERROR(AppendLocked(digest, data, crc, clock_->NowUnix()));
  if (removing) {
    auto it = mem_.find(digest);
    if (it != mem_.end()) reput_[digest] = it->second;
  }
  return absl::OkStatus();
}

absl::Status PackChunkStore::AppendLocked(const Digest& digest, std::string_view data, uint32_t crc,
                                          int64_t stored_unix) {
  if (active_size_ + buffer_.size() + kHeader + data.size() > opts_.pack_bytes &&
      active_size_ + buffer_.size() > 0) {
    // Everything of the old pack is indexed before a new one starts.
    CAIRN_RETURN_IF_ERROR(FlushLocked());
    CAIRN_RETURN_IF_ERROR(OpenActiveLocked(active_id_ + 1));
  }
  Loc loc{active_id_,
          active_size_ + buffer_.size() + kHeader,
          static_cast<uint32_t>(data.size()),
          stored_unix,
          /*has_crc=*/true,
          crc};
  uint32_t len = loc.length;
  buffer_.append("CRN1", 4);
  buffer_.append(reinterpret_cast<const char*>(&len), 4);
  buffer_.append(reinterpret_cast<const char*>(digest.data()), 32);
  buffer_.append(data.data(), data.size());
  mem_.insert_or_assign(digest, loc);
  if (buffer_.size() < opts_.buffer_bytes) return absl::OkStatus();
  if (!opts_.durable) return IndexUnsyncedLocked();
  CAIRN_RETURN_IF_ERROR(WriteBufferLocked());
  if (unsynced_bytes_ >= opts_.sync_bytes) return SyncLocked();
  return absl::OkStatus();
}

absl::Status PackChunkStore::Get(const Digest& digest, std::string* out) {
  return Read(digest, opts_.verify_on_read, out);
}

absl::StatusOr<uint32_t> PackChunkStore::Check(const Digest& digest) {
  std::string bytes;
  CAIRN_RETURN_IF_ERROR(Read(digest, /*verify=*/true, &bytes));
  // An entry written before CRCs were kept gets the CRC of the bytes just
  // verified (if it still names the same place), so the gateway stops
  // re-hashing the chunk once the scrub has passed over it.
  absl::MutexLock l(&mu_);
  if (!mem_.contains(digest)) {
    auto loc = LocateLocked(digest);
    if (loc.ok() && !loc->has_crc && loc->length == bytes.size()) {
      loc->has_crc = true;
      loc->crc = Crc32c(bytes);
      index_->Put(rocksdb::WriteOptions(), DigestSlice(digest), EncodeLoc(*loc))
          .PermitUncheckedError();  // the next pass tries again
    }
  }
  return static_cast<uint32_t>(bytes.size());
}

absl::Status PackChunkStore::List(const Digest* after, size_t max, std::vector<Digest>* out) {
  std::vector<StoredChunk> stored;
  CAIRN_RETURN_IF_ERROR(ListStored(after, max, &stored));
  out->clear();
  for (const StoredChunk& c : stored) out->push_back(c.digest);
  return absl::OkStatus();
}

absl::Status PackChunkStore::ForgetDamagedLocked(const Digest& digest) {
  mem_.erase(digest);
  index_->Delete(rocksdb::WriteOptions(), DigestSlice(digest)).PermitUncheckedError();
  return absl::DataLossError("stored chunk " + DigestName(digest) +
                             " is named by the index at bytes its pack never held (a pack cut "
                             "short or replaced); dropped from the index, to be stored again");
}

void PackChunkStore::Forget(const Digest& digest) {
  absl::MutexLock l(&mu_);
  mem_.erase(digest);
  index_->Delete(rocksdb::WriteOptions(), DigestSlice(digest)).PermitUncheckedError();
}

// Whether the record header before `loc` names this digest and length (one
// 40-byte read): an index entry pointing at other bytes fails it.
static bool RecordHeaderMatches(int fd, const Loc& loc, const Digest& digest) {
  char header[kHeader];
  uint32_t len = 0;
  return loc.offset >= kHeader &&
         ::pread(fd, header, kHeader, loc.offset - kHeader) == static_cast<ssize_t>(kHeader) &&
         std::memcmp(header, "CRN1", 4) == 0 &&
         (std::memcpy(&len, header + 4, 4), len == loc.length) &&
         std::memcmp(header + 8, digest.data(), 32) == 0;
}

// The record's header (magic, length, digest) and extent are checked: one
// 40-byte pread and an fstat, not a re-hash (that is the scrub's job).
absl::StatusOr<bool> PackChunkStore::HasIntact(const Digest& digest) {
  Loc loc;
  std::shared_ptr<ReadFd> fd;
  {
    absl::MutexLock l(&mu_);
    if (mem_.contains(digest)) return true;
    std::string v;
    rocksdb::Status s = index_->Get(rocksdb::ReadOptions(), DigestSlice(digest), &v);
    if (s.IsNotFound()) return false;
    CAIRN_RETURN_IF_ERROR(FromRocks(s, "chunk index"));
    if (!DecodeLoc(v, &loc) || loc.offset < kHeader) {
      index_->Delete(rocksdb::WriteOptions(), DigestSlice(digest)).PermitUncheckedError();
      return false;
    }
    auto opened = ReadFdLocked(loc.pack);
    if (absl::IsNotFound(opened.status())) {  // the pack itself is gone
      index_->Delete(rocksdb::WriteOptions(), DigestSlice(digest)).PermitUncheckedError();
      return false;
    }
    CAIRN_RETURN_IF_ERROR(opened.status());
    fd = *opened;
  }
  struct stat st;
  bool intact = RecordHeaderMatches(fd->fd(), loc, digest) && ::fstat(fd->fd(), &st) == 0 &&
                static_cast<uint64_t>(st.st_size) >= loc.offset + loc.length;
  if (!intact) Forget(digest);
  return intact;
}

absl::StatusOr<bool> PackChunkStore::Has(const Digest& digest) {
  absl::MutexLock l(&mu_);
  if (mem_.contains(digest)) return true;
  if (removing_.contains(digest)) return false;
  return InIndexLocked(digest);
}

absl::Status PackChunkStore::Flush() {
  absl::MutexLock l(&mu_);
  return FlushLocked();
}

absl::Status PackChunkStore::Sync() {
  absl::MutexLock l(&mu_);
  return SyncLocked();
}

// The free-space floor: statvfs every 4 MiB appended (and at the first
// Put), the bytes appended since subtracted in between.
absl::Status PackChunkStore::CheckFreeLocked(uint64_t adding) {
  if (opts_.min_free_bytes == 0) return absl::OkStatus();
  if (!free_known_ || since_free_check_ >= (4u << 20)) {
    struct statvfs sv;
    if (::statvfs(dir_.c_str(), &sv) != 0) return ErrnoStatus(errno, "statvfs " + dir_);
    free_ = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
    free_known_ = true;
    since_free_check_ = 0;
  }
  const uint64_t left = free_ > since_free_check_ ? free_ - since_free_check_ : 0;
  if (left < opts_.min_free_bytes + adding) {
    free_known_ = false;  // look again next time: space may have been freed
    return absl::ResourceExhaustedError(
        StrCat("the node's disk is nearly full: ", left, " bytes free under ", dir_,
               ", and it keeps ", opts_.min_free_bytes,
               " free (min_free_bytes); it takes no new chunks until space is freed"));
  }
  since_free_check_ += adding;
  return absl::OkStatus();
}

absl::StatusOr<Loc> PackChunkStore::LocateLocked(const Digest& digest) {
  auto it = mem_.find(digest);
  if (it != mem_.end()) return it->second;
  std::string v;
  rocksdb::Status s = index_->Get(rocksdb::ReadOptions(), DigestSlice(digest), &v);
  if (s.IsNotFound()) return absl::NotFoundError("chunk " + DigestName(digest) + " not found");
  CAIRN_RETURN_IF_ERROR(FromRocks(s, "chunk index"));
  Loc loc;
  if (!DecodeLoc(v, &loc)) {
    index_->Delete(rocksdb::WriteOptions(), DigestSlice(digest)).PermitUncheckedError();
    return absl::DataLossError("corrupt chunk index entry for " + DigestName(digest) +
                               "; dropped, to be stored again");
  }
  return loc;
}

absl::StatusOr<ChunkExtent> PackChunkStore::Locate(const Digest& digest) {
  Loc loc;
  std::shared_ptr<ReadFd> fd;
  {
    absl::MutexLock l(&mu_);
    CAIRN_ASSIGN_OR_RETURN(loc, LocateLocked(digest));
    if (loc.pack == active_id_ && loc.offset >= active_size_) {
      if (loc.offset - active_size_ + loc.length > buffer_.size()) {
        return ForgetDamagedLocked(digest);
      }
      return absl::UnimplementedError("chunk " + DigestName(digest) + " is not written yet");
    }
    CAIRN_ASSIGN_OR_RETURN(fd, ReadFdLocked(loc.pack));
  }
  // The record's header (one 40-byte read, no hash): an index entry that
  // names other bytes (a pack cut short and written again, say) is dropped,
  // never handed out.
  if (!RecordHeaderMatches(fd->fd(), loc, digest)) {
    Forget(digest);
    return absl::DataLossError("stored chunk " + DigestName(digest) +
                               " has a damaged or foreign record header; dropped from the index, "
                               "to be stored again");
  }
  ChunkExtent e;
  e.fd = fd->fd();
  e.offset = loc.offset;
  e.length = loc.length;
  e.has_crc32c = loc.has_crc;
  e.crc32c = loc.crc;
  e.pin = std::move(fd);  // PunchHoles skips a pack whose descriptor is held
  return e;
}

// Reads a chunk; with `verify`, re-hashes it and drops it on mismatch.
absl::Status PackChunkStore::Read(const Digest& digest, bool verify, std::string* out) {
  Loc loc;
  std::shared_ptr<ReadFd> fd;
  {
    absl::MutexLock l(&mu_);
    CAIRN_ASSIGN_OR_RETURN(loc, LocateLocked(digest));
    if (loc.pack == active_id_ && loc.offset >= active_size_) {
      if (loc.offset - active_size_ + loc.length > buffer_.size()) {
        return ForgetDamagedLocked(digest);
      }
      out->assign(buffer_.data() + (loc.offset - active_size_), loc.length);
      return absl::OkStatus();
    }
    CAIRN_ASSIGN_OR_RETURN(fd, ReadFdLocked(loc.pack));
  }
  out->resize(loc.length);
  size_t got = 0;
  while (got < loc.length) {
    ssize_t r = ::pread(fd->fd(), out->data() + got, loc.length - got, loc.offset + got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus(errno, "pack read");
    if (r == 0) {
      Forget(digest);
      return absl::DataLossError("stored chunk " + DigestName(digest) +
                                 " is cut short (its pack file is shorter than its index "
                                 "says); dropped from the index, to be stored again");
    }
    got += r;
  }
  // The record's header too: a damaged one would break the next open's
  // recovery and a HasIntact, though the bytes still hash right.
  if (verify && !RecordHeaderMatches(fd->fd(), loc, digest)) {
    Forget(digest);
    return absl::DataLossError("stored chunk " + DigestName(digest) +
                               " has a damaged record header; dropped from the index, to be "
                               "stored again");
  }
  if (verify && Sha256Of(*out) != digest) {
    Forget(digest);
    return absl::DataLossError("stored chunk " + DigestName(digest) +
                               " is corrupt; dropped from the index, to be stored again");
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PackChunkStore::InIndexLocked(const Digest& digest) {
  rocksdb::PinnableSlice v;
  rocksdb::Status s =
      index_->Get(rocksdb::ReadOptions(), index_->DefaultColumnFamily(), DigestSlice(digest), &v);
  if (s.IsNotFound()) return false;
  CAIRN_RETURN_IF_ERROR(FromRocks(s, "chunk index"));
  return true;
}

// Indexes the whole, matching records written after the recorded tail
// (every pack from the tail's to `max_id`; with no tail recorded, the
// newest pack): what a crash left unindexed.
absl::Status PackChunkStore::RecoverLocked(uint32_t max_id) {
  uint32_t first = max_id;
  uint64_t from = 0;
  std::string v;
  rocksdb::Status s = index_->Get(rocksdb::ReadOptions(), rocksdb::Slice(kTailKey), &v);
  if (s.ok() && v.size() == 12) {
    std::memcpy(&first, v.data(), 4);
    std::memcpy(&from, v.data() + 4, 8);
  } else if (!s.IsNotFound()) {
    CAIRN_RETURN_IF_ERROR(FromRocks(s, "chunk index tail"));
  }
  for (uint32_t id = std::max<uint32_t>(first, 1); id <= max_id; ++id) {
    CAIRN_RETURN_IF_ERROR(RecoverPackLocked(id, id == first ? from : 0));
  }
  return absl::OkStatus();
}

absl::Status PackChunkStore::RecoverPackLocked(uint32_t id, uint64_t off) {
  const std::string path = PackPath(dir_, id);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return absl::OkStatus();
  if (fd < 0) return ErrnoStatus(errno, "cannot open " + path);
  ReadFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "cannot stat " + path);
  const uint64_t size = st.st_size;
  const int64_t now = clock_->NowUnix();
  rocksdb::WriteBatch batch;
  std::string data;
  while (off + kHeader <= size) {
    char header[kHeader];
    uint32_t len = 0;
    if (::pread(fd, header, kHeader, off) != static_cast<ssize_t>(kHeader) ||
        std::memcmp(header, "CRN1", 4) != 0) {
      break;
    }
    std::memcpy(&len, header + 4, 4);
    if (len == 0 || len > kMaxChunkSize || off + kHeader + len > size) break;
    data.resize(len);
    if (::pread(fd, data.data(), len, off + kHeader) != static_cast<ssize_t>(len)) break;
    Digest d;
    std::memcpy(d.data(), header + 8, 32);
    if (Sha256Of(data) != d) break;  // torn or rotten: nothing after it is trusted
    CAIRN_ASSIGN_OR_RETURN(bool indexed, InIndexLocked(d));
    if (!indexed) {
      batch.Put(DigestSlice(d), EncodeLoc(Loc{id, off + kHeader, len, now, true, Crc32c(data)}));
    }
    off += kHeader + len;
  }
  batch.Put(rocksdb::Slice(kTailKey), EncodeTail(id, off));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(index_->Write(wo, &batch), "chunk index write");
}

// The file itself is made at the first write: opening a store and closing
// it leaves no empty pack behind.
absl::Status PackChunkStore::OpenActiveLocked(uint32_t id) {
  if (active_fd_ >= 0) ::close(active_fd_);
  active_fd_ = -1;
  active_id_ = id;
  active_size_ = 0;
  return absl::OkStatus();
}

absl::Status PackChunkStore::CreateActiveLocked() {
  const std::string path = PackPath(dir_, active_id_);
  active_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (active_fd_ < 0) return ErrnoStatus(errno, "cannot create " + path);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ReadFd>> PackChunkStore::ReadFdLocked(uint32_t pack) {
  auto it = read_fds_.find(pack);
  if (it != read_fds_.end()) return it->second;
  const std::string path = PackPath(dir_, pack);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open " + path);
  auto held = std::make_shared<ReadFd>(fd);
  read_fds_[pack] = held;
  return held;
}

// Forgets the chunks whose bytes were still in the buffer (they are not
// stored, and Has() says so, so a writer sends them again).
void PackChunkStore::DropBufferedLocked() {
  const auto id = active_id_;
  const auto size = active_size_;
  absl::erase_if(mem_,
                 [&](const auto& kv) { return kv.second.pack == id && kv.second.offset >= size; });
  buffer_.clear();
}

absl::Status PackChunkStore::WriteBufferLocked() {
  if (buffer_.empty()) return absl::OkStatus();
  if (active_fd_ < 0) {
    if (absl::Status st = CreateActiveLocked(); !st.ok()) {
      DropBufferedLocked();
      return st;
    }
  }
  size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t w =
        PwritePiece(active_fd_, buffer_.data() + done, buffer_.size() - done, active_size_ + done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int err = errno;
      if (::ftruncate(active_fd_, active_size_) != 0) { /* the tail stays unindexed */
      }
      DropBufferedLocked();
      return ErrnoStatus(err, "pack write");
    }
    done += w;
  }
  if (opts_.durable) {
    // Start the disk writes now, without waiting for them: the next
    // fdatasync then finds little left to do, and the disk works while the
    // next buffer is filled (docs/benchmarks.md, offline bundles).
    (void)::sync_file_range(active_fd_, static_cast<off_t>(active_size_),
                            static_cast<off_t>(buffer_.size()), SYNC_FILE_RANGE_WRITE);
  }
  active_size_ += buffer_.size();
  unsynced_bytes_ += buffer_.size();
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status PackChunkStore::IndexLocked(bool sync) {
  if (mem_.empty()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  for (const auto& [digest, loc] : mem_) batch.Put(DigestSlice(digest), EncodeLoc(loc));
  batch.Put(rocksdb::Slice(kTailKey), EncodeTail(active_id_, active_size_));
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  CAIRN_RETURN_IF_ERROR(FromRocks(index_->Write(wo, &batch), "chunk index write"));
  mem_.clear();
  return absl::OkStatus();
}

absl::Status PackChunkStore::IndexUnsyncedLocked() {
  CAIRN_RETURN_IF_ERROR(WriteBufferLocked());
  return IndexLocked(/*sync=*/false);
}

absl::Status PackChunkStore::SyncLocked() {
  CAIRN_RETURN_IF_ERROR(WriteBufferLocked());
  if (active_fd_ >= 0 && (unsynced_bytes_ > 0 || !mem_.empty())) {
    if (::fdatasync(active_fd_) != 0) {
      int err = errno;
      // Nothing unsynced can be trusted now: forget it (it is re-sent).
      mem_.clear();
      return ErrnoStatus(err, "pack fdatasync");
    }
  }
  unsynced_bytes_ = 0;
  return IndexLocked(/*sync=*/true);
}

}  // namespace pack

absl::StatusOr<std::unique_ptr<ChunkStore>> OpenPackChunkStore(const std::string& dir,
                                                               const PackStoreOptions& opts) {
  CAIRN_RETURN_IF_ERROR(pack::MkdirP(dir));
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_open_files = 256;
  // Most lookups are for chunks not yet stored (every Put checks first): a
  // bloom filter answers those without touching index blocks.
  rocksdb::BlockBasedTableOptions t;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  o.optimize_filters_for_hits = false;
  o.keep_log_file_num = 2;
  rocksdb::DB* db = nullptr;
  CAIRN_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(o, dir + "/index", &db), dir));
  auto store = std::make_unique<pack::PackChunkStore>(dir, opts, std::unique_ptr<rocksdb::DB>(db));
  CAIRN_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<ChunkStore>(std::move(store));
}

}  // namespace cairn
