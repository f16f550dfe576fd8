// What garbage collection needs from the pack store: chunks listed with the
// time they were stored, removal (index entry first, durably; then a hole
// punched over the record), and compaction of packs mostly made of removed
// records. Also the offline repair of a pack store's index, and backups.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "absl/cleanup/cleanup.h"
#include "cairn/crc32c.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "copy_file.h"
#include "pack_store_impl.h"
#include "rocks_util.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"

namespace cairn::pack {

namespace {
// Removed records whose hole waits for a read in flight; past this many the
// rest are left to compaction.
constexpr size_t kMaxHolesKept = 1 << 16;
}  // namespace

absl::Status PackChunkStore::ListStored(const Digest* after, size_t max,
                                        std::vector<StoredChunk>* out) {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(index_->NewIterator(rocksdb::ReadOptions()));
  if (after == nullptr) {
    it->SeekToFirst();
  } else {
    it->Seek(DigestSlice(*after));
    if (it->Valid() && it->key() == DigestSlice(*after)) it->Next();
  }
  for (; it->Valid() && out->size() < max; it->Next()) {
    if (it->key().size() != 32) continue;  // the tail record
    StoredChunk c;
    std::memcpy(c.digest.data(), it->key().data(), 32);
    Loc loc;
    if (DecodeLoc(it->value().ToStringView(), &loc)) {
      c.length = loc.length;
      c.stored_unix = loc.stored_unix;
    }
    out->push_back(c);
  }
  return FromRocks(it->status(), "chunk index scan");
}

// The index entries are deleted with one synced write outside mu_, so reads
// and writes go on meanwhile (a read still finds the bytes: the holes come
// after). A Put of a chunk being removed stores it anew; if that new entry
// reached the index before the delete, it is written again.
absl::StatusOr<uint64_t> PackChunkStore::Remove(const std::vector<Digest>& digests) {
  rocksdb::WriteBatch batch;
  std::vector<Digest> mine;  // marked as being removed by this call
  std::vector<Hole> holes;
  uint64_t bytes = 0;
  {
    absl::MutexLock l(&mu_);
    for (const Digest& d : digests) {
      if (mem_.contains(d) || removing_.contains(d)) continue;  // stored since the last sync
      std::string v;
      rocksdb::Status s = index_->Get(rocksdb::ReadOptions(), DigestSlice(d), &v);
      if (s.IsNotFound()) continue;
      CAIRN_RETURN_IF_ERROR(FromRocks(s, "chunk index"));
      batch.Delete(DigestSlice(d));
      removing_.insert(d);
      mine.push_back(d);
      Loc loc;
      if (!DecodeLoc(v, &loc) || loc.offset < kHeader) continue;
      holes.push_back(Hole{loc.pack, loc.offset - kHeader, kHeader + loc.length});
      bytes += loc.length;
    }
  }
  if (mine.empty()) return 0;
  // The entries go first, durably: a crash must never leave one pointing at
  // a hole.
  rocksdb::WriteOptions wo;
  wo.sync = true;
  const rocksdb::Status written = index_->Write(wo, &batch);
  absl::ReleasableMutexLock l(&mu_);
  rocksdb::WriteBatch restore;
  for (const Digest& d : mine) {
    removing_.erase(d);
    auto re = reput_.find(d);
    if (re == reput_.end()) continue;
    // Stored anew meanwhile: still in memory (indexed later), or indexed
    // already, perhaps before the delete: write it again.
    if (!mem_.contains(d)) restore.Put(DigestSlice(d), EncodeLoc(re->second));
    reput_.erase(re);
  }
  if (restore.Count() > 0) {
    CAIRN_RETURN_IF_ERROR(FromRocks(index_->Write(wo, &restore), "chunk index write"));
  }
  CAIRN_RETURN_IF_ERROR(FromRocks(written, "chunk index write"));
  if (opts_.punch_holes && !no_holes_) {
    // A chunk stored anew went to the active pack as a new record: its old
    // record is garbage all the same.
    for (const Hole& h : holes) {
      if (holes_.size() >= kMaxHolesKept) break;
      holes_.push_back(h);
    }
  }
  l.Release();
  PunchHoles();
  return bytes;
}

// The holes are chosen and their packs opened under mu_, and punched
// outside it: punching waits for the writeback of the range, which a busy
// disk makes slow, and reads must not wait for that.
void PackChunkStore::PunchHoles() {
  std::map<uint32_t, int> fds;  // writable, per pack
  std::vector<Hole> ready;
  {
    absl::MutexLock l(&mu_);
    if (backups_ > 0 || no_holes_ || holes_.empty()) return;
    std::vector<Hole> busy;
    for (const Hole& h : holes_) {
      // A read that found the record before its removal may still be
      // reading it: it holds the pack's descriptor.
      auto r = read_fds_.find(h.pack);
      if (r != read_fds_.end() && r->second.use_count() > 1) {
        busy.push_back(h);
        continue;
      }
      auto [it, fresh] = fds.emplace(h.pack, -1);
      if (fresh) {
        it->second = h.pack == active_id_
                         ? ::dup(active_fd_)
                         : ::open(PackPath(dir_, h.pack).c_str(), O_WRONLY | O_CLOEXEC);
      }
      if (it->second >= 0) ready.push_back(h);  // else the pack is gone: nothing to free
    }
    holes_ = std::move(busy);
  }
  bool unsupported = false;
  for (const Hole& h : ready) {
    if (::fallocate(fds[h.pack], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(h.offset), static_cast<off_t>(h.length)) != 0 &&
        (errno == EOPNOTSUPP || errno == ENOSYS)) {
      unsupported = true;
      break;
    }
  }
  for (auto& [pack, fd] : fds) {
    if (fd >= 0) ::close(fd);
  }
  if (unsupported) {
    absl::MutexLock l(&mu_);
    no_holes_ = true;
    holes_.clear();
  }
}

absl::StatusOr<CompactReport> PackChunkStore::Compact(double live_below, Cancellation* cancel) {
  absl::MutexLock c(&compact_mu_);
  CompactReport r;
  uint32_t active;
  PunchHoles();
  {
    absl::MutexLock l(&mu_);
    active = active_id_;
  }
  // Live bytes per pack, from the index.
  std::map<uint32_t, uint64_t> live;
  {
    std::unique_ptr<rocksdb::Iterator> it(index_->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Loc loc;
      if (it->key().size() == 32 && DecodeLoc(it->value().ToStringView(), &loc)) {
        live[loc.pack] += kHeader + loc.length;
      }
    }
    CAIRN_RETURN_IF_ERROR(FromRocks(it->status(), "chunk index scan"));
  }
  // Disk space per pack, holes excluded.
  std::map<uint32_t, uint64_t> disk;
  for (uint32_t id = 1; id <= active; ++id) {
    struct stat st;
    if (::stat(PackPath(dir_, id).c_str(), &st) == 0) disk[id] = uint64_t(st.st_blocks) * 512;
  }
  std::map<uint32_t, std::vector<Digest>> chosen;
  for (const auto& [id, used] : disk) {
    if (id < active && static_cast<double>(live[id]) < live_below * static_cast<double>(used)) {
      chosen[id];
    }
  }
  if (!chosen.empty()) {
    std::unique_ptr<rocksdb::Iterator> it(index_->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Loc loc;
      if (it->key().size() != 32 || !DecodeLoc(it->value().ToStringView(), &loc)) continue;
      auto found = chosen.find(loc.pack);
      if (found == chosen.end()) continue;
      Digest d;
      std::memcpy(d.data(), it->key().data(), 32);
      found->second.push_back(d);
    }
    CAIRN_RETURN_IF_ERROR(FromRocks(it->status(), "chunk index scan"));
  }
  for (auto& [id, digests] : chosen) {
    if (cancel != nullptr && cancel->cancelled()) break;
    // The live bytes are written before the pack goes: they must fit above
    // the free-space floor.
    struct statvfs sv;
    if (::statvfs(dir_.c_str(), &sv) != 0) return ErrnoStatus(errno, "statvfs " + dir_);
    if (uint64_t(sv.f_bavail) * sv.f_frsize < live[id] + opts_.min_free_bytes + (4u << 20)) {
      ++r.packs_skipped;
      continue;
    }
    CAIRN_RETURN_IF_ERROR(CompactPack(id, digests, &r, cancel));
    if (cancel != nullptr && cancel->cancelled()) break;
    r.bytes_freed += disk[id];
    ++r.packs_rewritten;
    disk.erase(id);
    live.erase(id);
  }
  {
    absl::MutexLock l(&mu_);
    active = active_id_;
  }
  for (uint32_t id = 1; id <= active; ++id) {
    struct stat st;
    if (::stat(PackPath(dir_, id).c_str(), &st) != 0) continue;
    ++r.files;
    r.disk_bytes += uint64_t(st.st_blocks) * 512;
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(index_->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Loc loc;
      if (it->key().size() == 32 && DecodeLoc(it->value().ToStringView(), &loc)) {
        r.live_bytes += kHeader + loc.length;
      }
    }
    CAIRN_RETURN_IF_ERROR(FromRocks(it->status(), "chunk index scan"));
  }
  return r;
}

// Each live record is read and re-hashed outside the lock, then appended to
// the active pack if the index still names it here (a concurrent removal or
// scrub may have dropped it). The copies are synced, and their index entries
// written, before the pack is deleted: a crash in between leaves both, and
// the index names the old one.
absl::Status PackChunkStore::CompactPack(uint32_t id, const std::vector<Digest>& live,
                                         CompactReport* r, Cancellation* cancel) {
  std::string data;
  for (const Digest& d : live) {
    if (cancel != nullptr && cancel->cancelled()) break;
    Loc loc;
    std::shared_ptr<ReadFd> fd;
    {
      absl::MutexLock l(&mu_);
      auto found = LocateLocked(d);
      if (!found.ok() || found->pack != id) continue;
      loc = *found;
      CAIRN_ASSIGN_OR_RETURN(fd, ReadFdLocked(id));
    }
    data.resize(loc.length);
    if (::pread(fd->fd(), data.data(), loc.length, loc.offset) != ssize_t(loc.length) ||
        Sha256Of(data) != d) {
      Forget(d);  // rotten: not carried over (the scrub would drop it too)
      continue;
    }
    const uint32_t crc = Crc32c(data);
    absl::MutexLock l(&mu_);
    auto again = LocateLocked(d);
    if (!again.ok() || again->pack != id || again->offset != loc.offset) continue;
    CAIRN_RETURN_IF_ERROR(AppendLocked(d, data, crc, loc.stored_unix));
    r->bytes_moved += loc.length;
  }
  absl::MutexLock l(&mu_);
  CAIRN_RETURN_IF_ERROR(SyncLocked());
  if (cancel != nullptr && cancel->cancelled()) return absl::OkStatus();
  read_fds_.erase(id);  // readers in flight keep their descriptor
  std::erase_if(holes_, [id](const Hole& h) { return h.pack == id; });
  if (::unlink(PackPath(dir_, id).c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "cannot delete " + PackPath(dir_, id));
  }
  return absl::OkStatus();
}

// The index as of now (after a sync, so it names only bytes on disk), then
// each pack's bytes up to its size after that: every indexed record is
// copied; records written meanwhile are past the index's tail, and the
// copy's first open indexes the whole ones. A compaction waits (it would
// delete a pack the copied index may still name), and removed records keep
// their bytes until the copy is done (no hole is punched meanwhile).
absl::StatusOr<uint64_t> PackChunkStore::Backup(const std::string& dir, Cancellation* cancel) {
  absl::MutexLock c(&compact_mu_);
  CAIRN_RETURN_IF_ERROR(MkdirP(dir + "/packs"));
  {
    absl::MutexLock l(&mu_);
    CAIRN_RETURN_IF_ERROR(FlushLocked());
    ++backups_;
  }
  absl::Cleanup resume = [this] {
    {
      absl::MutexLock l(&mu_);
      --backups_;
    }
    PunchHoles();
  };
  rocksdb::Checkpoint* cp = nullptr;
  CAIRN_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(index_.get(), &cp), "checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> owned(cp);
  CAIRN_RETURN_IF_ERROR(FromRocks(owned->CreateCheckpoint(dir + "/index", 0),
                                  "checkpoint of the chunk index to " + dir));
  uint32_t last;
  {
    absl::MutexLock l(&mu_);
    last = active_id_;
  }
  uint64_t total = 0;
  for (uint32_t id = 1; id <= last; ++id) {
    auto copied = CopyFile(PackPath(dir_, id), PackPath(dir, id), cancel);
    if (absl::IsNotFound(copied.status())) continue;
    CAIRN_RETURN_IF_ERROR(copied.status());
    total += *copied;
  }
  return total;
}

}  // namespace cairn::pack

namespace cairn {

absl::Status RepairPackIndex(const std::string& dir) {
  rocksdb::Options o;
  if (RestoreCurrent(dir + "/index")) {
    rocksdb::DB* db = nullptr;
    if (rocksdb::DB::Open(o, dir + "/index", &db).ok()) {
      delete db;
      return absl::OkStatus();
    }
  }
  return FromRocks(rocksdb::RepairDB(dir + "/index", o), "repair of " + dir + "/index");
}

}  // namespace cairn
