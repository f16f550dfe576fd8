// The pack chunk store, shared by its two files: pack_store.cc (writes,
// reads, recovery, backup) and pack_store_gc.cc (what garbage collection
// needs: listing with store times, removal, compaction).
//
// Pack record: "CRN1" | u32 length | 32-byte digest | bytes. The index maps a
// raw digest to (pack id, data offset, length, time stored). An index entry
// is written only after its bytes reached the pack file (durable: after they
// were fdatasync'ed, one fdatasync per commit or per sync_bytes rather than
// per write), so the index never points at bytes that are not there. With the
// entries the index records the tail (pack, end offset) they reach. A crash
// can leave unindexed records past it: the next open reads them, indexes
// every whole record whose bytes match its digest (so a re-publish after a
// crash does not upload them again), stops at the first torn one, and
// appends to a fresh pack.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "cairn/store.h"
#include "rocksdb/db.h"

namespace cairn::pack {

inline constexpr size_t kHeader = 40;
// Index key of the tail (u32 pack, u64 offset) the indexed records reach;
// not 32 bytes long, so never a digest.
inline constexpr std::string_view kTailKey = "\xfftail";

struct Loc {
  uint32_t pack = 0;
  uint64_t offset = 0;  // of the data, after the header
  uint32_t length = 0;
  int64_t stored_unix = 0;  // when stored; 0 in entries written before times were kept
  // CRC-32C of the bytes, taken when their SHA-256 had been checked; absent
  // from entries written before checks were kept.
  bool has_crc = false;
  uint32_t crc = 0;
};

// 28 bytes (24 without a CRC); DecodeLoc also reads the older 16-byte entries
// (no time), and longer ones by their first 28 bytes, so entries a later
// version extends are not taken for damage.
std::string EncodeLoc(const Loc& l);
bool DecodeLoc(std::string_view s, Loc* l);
rocksdb::Slice DigestSlice(const Digest& d);
std::string PackPath(const std::string& dir, uint32_t id);
absl::Status MkdirP(const std::string& dir);

// A pack's read descriptor, closed when the last user lets go: compaction
// may drop a pack while a read of it is in flight.
class ReadFd {
 public:
  explicit ReadFd(int fd) : fd_(fd) {}
  ~ReadFd() { ::close(fd_); }
  ReadFd(const ReadFd&) = delete;
  ReadFd& operator=(const ReadFd&) = delete;
  int fd() const { return fd_; }

 private:
  const int fd_;
};

class PackChunkStore final : public ChunkStore {
 public:
  PackChunkStore(std::string dir, PackStoreOptions opts, std::unique_ptr<rocksdb::DB> index);
  ~PackChunkStore() override;
  absl::Status Init();

  absl::Status Put(const Digest& digest, std::string_view data, PutMode mode) override;
  absl::Status Get(const Digest& digest, std::string* out) override;
  absl::StatusOr<uint32_t> Check(const Digest& digest) override;
  absl::Status List(const Digest* after, size_t max, std::vector<Digest>* out) override;
  absl::StatusOr<bool> HasIntact(const Digest& digest) override;
  absl::StatusOr<bool> Has(const Digest& digest) override;
  absl::StatusOr<ChunkExtent> Locate(const Digest& digest) override;
  absl::StatusOr<uint64_t> Backup(const std::string& dir, Cancellation* cancel) override;
  absl::Status Flush() override;
  absl::Status Sync() override;
  // pack_store_gc.cc
  absl::Status ListStored(const Digest* after, size_t max, std::vector<StoredChunk>* out) override;
  absl::StatusOr<uint64_t> Remove(const std::vector<Digest>& digests) override;
  absl::StatusOr<CompactReport> Compact(double live_below, Cancellation* cancel) override;

 private:
  // A chunk found bad on read is no longer held: Has() says so, and the next
  // Put stores a good copy. The bad bytes stay unreferenced in their pack.
  void Forget(const Digest& digest);
  // Forget, with mu_ held; the DataLoss to return.
  absl::Status ForgetDamagedLocked(const Digest& digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckFreeLocked(uint64_t adding) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Read(const Digest& digest, bool verify, std::string* out);
  absl::StatusOr<bool> InIndexLocked(const Digest& digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Where a chunk is (memory first, then the index); NotFound when absent.
  absl::StatusOr<Loc> LocateLocked(const Digest& digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RecoverLocked(uint32_t max_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RecoverPackLocked(uint32_t id, uint64_t off) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpenActiveLocked(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CreateActiveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<ReadFd>> ReadFdLocked(uint32_t pack)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends a record to the buffer and notes it in mem_ (Put, compaction).
  absl::Status AppendLocked(const Digest& digest, std::string_view data, uint32_t crc,
                            int64_t stored_unix) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropBufferedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteBufferLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status IndexLocked(bool sync) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Non-durable mode: bytes to the file, then their index entries at once.
  absl::Status IndexUnsyncedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Bytes to the file, fdatasync, then the index entries, synced.
  absl::Status SyncLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return opts_.durable ? SyncLocked() : IndexUnsyncedLocked();
  }
  // pack_store_gc.cc: moves the live records of pack `id` to the active
  // pack, then deletes it.
  absl::Status CompactPack(uint32_t id, const std::vector<Digest>& live, CompactReport* r,
                           Cancellation* cancel);

  const std::string dir_;
  const PackStoreOptions opts_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::unique_ptr<rocksdb::DB> index_;
  uint32_t active_id_ ABSL_GUARDED_BY(mu_) = 0;
  int active_fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t active_size_ ABSL_GUARDED_BY(mu_) = 0;     // bytes written to the active pack
  uint64_t unsynced_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // written, not yet fdatasync'ed
  std::string buffer_ ABSL_GUARDED_BY(mu_);           // bytes after active_size_
  // Chunks not in the index yet: in buffer_, or written but not synced.
  absl::flat_hash_map<Digest, Loc, DigestHash> mem_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, std::shared_ptr<ReadFd>> read_fds_ ABSL_GUARDED_BY(mu_);
  bool free_known_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t free_ ABSL_GUARDED_BY(mu_) = 0;              // at the last statvfs
  uint64_t since_free_check_ ABSL_GUARDED_BY(mu_) = 0;  // bytes appended since
  // Punches a hole over each removed record no read is in flight on; keeps
  // the others in holes_ for the next call. Takes mu_ itself.
  void PunchHoles() ABSL_LOCKS_EXCLUDED(mu_);
  struct Hole {
    uint32_t pack;
    uint64_t offset;  // of the record's header
    uint64_t length;  // header and data
  };
  std::vector<Hole> holes_ ABSL_GUARDED_BY(mu_);
  // Holes cannot be punched here (EOPNOTSUPP): removal frees space only
  // through compaction.
  bool no_holes_ ABSL_GUARDED_BY(mu_) = false;
  // While a backup copies the packs no hole is punched: the copied index may
  // still name a record removed since (it would point at zeros).
  int backups_ ABSL_GUARDED_BY(mu_) = 0;
  // Chunks whose index entries a Remove is deleting, durably, outside mu_
  // (reads and writes go on meanwhile): Has() says no, and a Put stores the
  // chunk anew, noting where in reput_ so Remove can restore an entry its
  // delete overtook.
  absl::flat_hash_set<Digest, DigestHash> removing_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Digest, Loc, DigestHash> reput_ ABSL_GUARDED_BY(mu_);
  absl::Mutex compact_mu_;  // one compaction at a time
};

}  // namespace cairn::pack
