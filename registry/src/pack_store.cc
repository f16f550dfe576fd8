// Append-only pack files indexed by RocksDB.
//
// Pack record: "CRN1" | u32 length | 32-byte digest | bytes. The index maps a
// raw digest to (pack id, data offset, length). An index entry is written only
// after its bytes reached the pack file (and, with sync_on_flush, after they
// were fdatasync'ed), so the index never points at bytes that are not there.
// A crash can leave unindexed bytes at a pack's tail: they are never read, and
// a restarted store appends to a fresh pack.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "cairn/strings.h"
#include "absl/synchronization/mutex.h"
#include "cairn/status.h"
#include "cairn/store.h"
#include "rocks_util.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace cairn {
namespace {

constexpr size_t kHeader = 40;

struct Loc {
  uint32_t pack;
  uint64_t offset;  // of the data, after the header
  uint32_t length;
};

std::string EncodeLoc(const Loc& l) {
  char b[16];
  std::memcpy(b, &l.pack, 4);
  std::memcpy(b + 4, &l.offset, 8);
  std::memcpy(b + 12, &l.length, 4);
  return std::string(b, 16);
}

bool DecodeLoc(std::string_view s, Loc* l) {
  if (s.size() != 16) return false;
  std::memcpy(&l->pack, s.data(), 4);
  std::memcpy(&l->offset, s.data() + 4, 8);
  std::memcpy(&l->length, s.data() + 12, 4);
  return true;
}

rocksdb::Slice DigestSlice(const Digest& d) {
  return rocksdb::Slice(reinterpret_cast<const char*>(d.data()), d.size());
}

absl::Status MkdirP(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot create " + dir);
  return absl::OkStatus();
}

class PackChunkStore final : public ChunkStore {
 public:
  PackChunkStore(std::string dir, PackStoreOptions opts, std::unique_ptr<rocksdb::DB> index)
      : dir_(std::move(dir)), opts_(opts), index_(std::move(index)) {}

  ~PackChunkStore() override {
    absl::MutexLock l(&mu_);
    FlushLocked(opts_.sync_on_flush).IgnoreError();  // best effort: Sync() is the contract
    if (active_fd_ >= 0) ::close(active_fd_);
    for (auto& [id, fd] : read_fds_) ::close(fd);
  }

  absl::Status Init() {
    CAIRN_RETURN_IF_ERROR(MkdirP(dir_ + "/packs"));
    uint32_t max_id = 0;
    DIR* d = ::opendir((dir_ + "/packs").c_str());
    if (d == nullptr) return ErrnoStatus(errno, "cannot list " + dir_ + "/packs");
    while (dirent* e = ::readdir(d)) {
      unsigned id;
      if (std::sscanf(e->d_name, "pack-%08u.dat", &id) == 1) max_id = std::max<uint32_t>(max_id, id);
    }
    ::closedir(d);
    absl::MutexLock l(&mu_);
    return OpenActiveLocked(max_id + 1);
  }

  absl::Status Put(const Digest& digest, std::string_view data) override {
    if (data.empty() || data.size() > (64u << 20)) {
      return absl::InvalidArgumentError(StrCat("chunk size ", data.size(), " out of range"));
    }
    if (Sha256Of(data) != digest) {
      return absl::DataLossError("chunk bytes do not match digest " + DigestName(digest));
    }
    absl::MutexLock l(&mu_);
    if (pending_.contains(digest)) return absl::OkStatus();
    CAIRN_ASSIGN_OR_RETURN(bool indexed, InIndexLocked(digest));
    if (indexed) return absl::OkStatus();
    if (active_size_ + buffer_.size() + kHeader + data.size() > opts_.pack_bytes &&
        active_size_ + buffer_.size() > 0) {
      CAIRN_RETURN_IF_ERROR(FlushLocked(opts_.sync_on_flush));
      CAIRN_RETURN_IF_ERROR(OpenActiveLocked(active_id_ + 1));
    }
    Loc loc{active_id_, active_size_ + buffer_.size() + kHeader,
            static_cast<uint32_t>(data.size())};
    uint32_t len = loc.length;
    buffer_.append("CRN1", 4);
    buffer_.append(reinterpret_cast<const char*>(&len), 4);
    buffer_.append(reinterpret_cast<const char*>(digest.data()), 32);
    buffer_.append(data.data(), data.size());
    pending_.emplace(digest, loc);
    if (buffer_.size() >= opts_.buffer_bytes) return FlushLocked(opts_.sync_on_flush);
    return absl::OkStatus();
  }

  absl::Status Get(const Digest& digest, std::string* out) override {
    Loc loc;
    int fd;
    {
      absl::MutexLock l(&mu_);
      auto it = pending_.find(digest);
      if (it != pending_.end()) {
        out->assign(buffer_.data() + (it->second.offset - active_size_), it->second.length);
        return absl::OkStatus();
      }
      std::string v;
      rocksdb::Status s = index_->Get(rocksdb::ReadOptions(), DigestSlice(digest), &v);
      if (s.IsNotFound()) return absl::NotFoundError("chunk " + DigestName(digest) + " not found");
      CAIRN_RETURN_IF_ERROR(FromRocks(s, "chunk index"));
      if (!DecodeLoc(v, &loc)) return absl::DataLossError("corrupt chunk index entry");
      CAIRN_ASSIGN_OR_RETURN(fd, ReadFdLocked(loc.pack));
    }
    out->resize(loc.length);
    size_t got = 0;
    while (got < loc.length) {
      ssize_t r = ::pread(fd, out->data() + got, loc.length - got, loc.offset + got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoStatus(errno, "pack read");
      if (r == 0) return absl::DataLossError("pack file shorter than its index says");
      got += r;
    }
    if (opts_.verify_on_read && Sha256Of(*out) != digest) {
      return absl::DataLossError("stored chunk " + DigestName(digest) + " is corrupt");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Has(const Digest& digest) override {
    absl::MutexLock l(&mu_);
    if (pending_.contains(digest)) return true;
    return InIndexLocked(digest);
  }

  absl::Status Flush() override {
    absl::MutexLock l(&mu_);
    return FlushLocked(opts_.sync_on_flush);
  }

  absl::Status Sync() override {
    absl::MutexLock l(&mu_);
    return FlushLocked(true);
  }

 private:
  absl::StatusOr<bool> InIndexLocked(const Digest& digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    rocksdb::PinnableSlice v;
    rocksdb::Status s =
        index_->Get(rocksdb::ReadOptions(), index_->DefaultColumnFamily(), DigestSlice(digest), &v);
    if (s.IsNotFound()) return false;
    CAIRN_RETURN_IF_ERROR(FromRocks(s, "chunk index"));
    return true;
  }

  absl::Status OpenActiveLocked(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (active_fd_ >= 0) ::close(active_fd_);
    std::string path = absl::StrFormat("%s/packs/pack-%08u.dat", dir_, id);
    active_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (active_fd_ < 0) return ErrnoStatus(errno, "cannot create " + path);
    active_id_ = id;
    active_size_ = 0;
    return absl::OkStatus();
  }

  absl::StatusOr<int> ReadFdLocked(uint32_t pack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = read_fds_.find(pack);
    if (it != read_fds_.end()) return it->second;
    std::string path = absl::StrFormat("%s/packs/pack-%08u.dat", dir_, pack);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open " + path);
    read_fds_[pack] = fd;
    return fd;
  }

  absl::Status FlushLocked(bool sync) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (buffer_.empty() && !sync) return absl::OkStatus();
    size_t done = 0;
    while (done < buffer_.size()) {
      ssize_t w = ::pwrite(active_fd_, buffer_.data() + done, buffer_.size() - done,
                           active_size_ + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        // Drop what was not written: those chunks are not stored, and Has()
        // says so, so the writer sends them again.
        int err = errno;
        if (::ftruncate(active_fd_, active_size_) != 0) { /* tail stays unindexed */ }
        buffer_.clear();
        pending_.clear();
        return ErrnoStatus(err, "pack write");
      }
      done += w;
    }
    if (sync && ::fdatasync(active_fd_) != 0) {
      int err = errno;
      buffer_.clear();
      pending_.clear();
      return ErrnoStatus(err, "pack fdatasync");
    }
    rocksdb::WriteBatch batch;
    for (const auto& [digest, loc] : pending_) batch.Put(DigestSlice(digest), EncodeLoc(loc));
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    rocksdb::Status s = index_->Write(wo, &batch);
    active_size_ += buffer_.size();
    buffer_.clear();
    pending_.clear();
    return FromRocks(s, "chunk index write");
  }

  const std::string dir_;
  const PackStoreOptions opts_;
  absl::Mutex mu_;
  std::unique_ptr<rocksdb::DB> index_;
  uint32_t active_id_ ABSL_GUARDED_BY(mu_) = 0;
  int active_fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t active_size_ ABSL_GUARDED_BY(mu_) = 0;  // bytes written to the active pack
  std::string buffer_ ABSL_GUARDED_BY(mu_);          // bytes after active_size_
  absl::flat_hash_map<Digest, Loc, DigestHash> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, int> read_fds_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkStore>> OpenPackChunkStore(const std::string& dir,
                                                               const PackStoreOptions& opts) {
  CAIRN_RETURN_IF_ERROR(MkdirP(dir));
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_open_files = 256;
  o.keep_log_file_num = 2;
  rocksdb::DB* db = nullptr;
  CAIRN_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(o, dir + "/index", &db), dir));
  auto store = std::make_unique<PackChunkStore>(dir, opts, std::unique_ptr<rocksdb::DB>(db));
  CAIRN_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<ChunkStore>(std::move(store));
}

}  // namespace cairn
