// Storage interfaces of a node (and of the client's chunk cache).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/clock.h"
#include "cairn/hash.h"

namespace cairn {

// How Put treats the digest it is given.
enum class PutMode {
  kVerify,  // re-hash the bytes and refuse a mismatch (anything from outside)
  // The caller computed the digest from these very bytes a moment ago (local
  // ingest straight from the chunker); skips the second hash. Greppable on
  // purpose: never use it for bytes that came from the network or disk.
  kDigestComputedFromData,
};

// One stored chunk, as garbage collection sees it.
struct StoredChunk {
  Digest digest;
  uint32_t length = 0;
  // When it was stored (unix seconds); 0 when the store does not know (a
  // chunk stored before it kept times): old enough for any grace period.
  int64_t stored_unix = 0;
};

// What a compaction did, and the store's space after it.
struct CompactReport {
  uint64_t packs_rewritten = 0;
  uint64_t bytes_moved = 0;  // live chunk bytes copied out of rewritten packs
  uint64_t bytes_freed = 0;  // disk space the rewritten packs held
  // Packs left as they are: rewriting them would take the file system below
  // min_free_bytes (their live bytes are copied before the pack goes).
  uint64_t packs_skipped = 0;
  uint64_t files = 0;       // pack files after it
  uint64_t disk_bytes = 0;  // disk space they hold (holes excluded)
  uint64_t live_bytes = 0;  // chunk bytes the index names in them
  // A store shared by several nodes (S3): what the collection round did or
  // waits for, one sentence; empty otherwise.
  std::string shared;
};

// Of `candidates`, the chunks a node still counts on (see
// ChunkStore::AnswerCollection).
using NeededChunks =
    std::function<absl::StatusOr<std::vector<Digest>>(const std::vector<Digest>& candidates)>;

// Where a stored chunk's bytes lie in a file, for sending them without
// copying them through user space (sendfile).
struct ChunkExtent {
  // Keeps `fd` open, and the bytes in place (no hole is punched over them),
  // while any copy is held.
  std::shared_ptr<const void> pin;
  int fd = -1;
  uint64_t offset = 0;  // of the chunk's first byte in the file
  uint32_t length = 0;
  // The CRC-32C recorded when the bytes' SHA-256 was checked, where the
  // store keeps one: a reader can check the bytes with it instead of
  // re-hashing them.
  bool has_crc32c = false;
  uint32_t crc32c = 0;
};

// Content-addressed chunk bytes. Implementations are thread-safe.
class ChunkStore {
 public:
  ChunkStore() = default;
  virtual ~ChunkStore() = default;
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  // Stores `data` under `digest` after checking SHA-256(data) == digest:
  // DataLoss on mismatch (nothing stored). Storing a present chunk is a no-op.
  // The chunk is visible to Get/Has at once, readable after a process crash
  // once Flush() returned, and durable after a power loss once Sync() returned.
  // ResourceExhausted when the disk is full.
  virtual absl::Status Put(const Digest& digest, std::string_view data,
                           PutMode mode = PutMode::kVerify) = 0;
  // Reads a chunk into *out. NotFound when absent; DataLoss when the stored
  // bytes no longer match the digest (implementations that verify on read).
  virtual absl::Status Get(const Digest& digest, std::string* out) = 0;
  virtual absl::StatusOr<bool> Has(const Digest& digest) = 0;
  // Where the chunk's bytes are, unread and unhashed (the record around them
  // checked where the store keeps one): the caller hashes them (or trusts
  // the hash made when they were stored) and must check a send ended short
  // (a truncated file). NotFound when absent; DataLoss (and dropped) when
  // the store finds its record damaged; Unimplemented when the store cannot
  // tell, or the chunk is not in a file yet (use Get).
  virtual absl::StatusOr<ChunkExtent> Locate(const Digest& digest);
  // Has, and where the store can tell cheaply (without reading the bytes),
  // that what it stored is still there: a damaged record (a truncated pack,
  // an overwritten header) is dropped and reported absent, so the caller
  // stores it again. Default: Has.
  virtual absl::StatusOr<bool> HasIntact(const Digest& digest) { return Has(digest); }
  // Reads the chunk and re-hashes it, whatever the store does on Get (the
  // scrub): its length when intact; DataLoss when the stored bytes are damaged
  // or cut short, and then the chunk is dropped (Has() says no, it is never
  // served again, and the next Put stores a good copy); NotFound when absent.
  virtual absl::StatusOr<uint32_t> Check(const Digest& digest);
  // Up to `max` stored digests greater than `after` (from the first when
  // null), in byte order, into *out (cleared first); fewer than `max` at the
  // end. Chunks stored a moment ago may be missing. Unimplemented where the
  // store cannot list.
  virtual absl::Status List(const Digest* after, size_t max, std::vector<Digest>* out);
  // Copies the store into the new directory `dir` while it keeps serving:
  // every chunk stored before the call, and perhaps some stored during it.
  // Returns the bytes copied. Unimplemented where the store cannot.
  // Cancelled (what was copied stays; the caller removes it) when `cancel`
  // (may be null) is.
  virtual absl::StatusOr<uint64_t> Backup(const std::string& dir, Cancellation* cancel = nullptr);
  // Makes every Put so far survive a crash of this process.
  virtual absl::Status Flush() = 0;
  // Makes every Put so far durable (fdatasync).
  virtual absl::Status Sync() = 0;

  // ---- Garbage collection (Unimplemented where the store cannot) ----
  // List, with each chunk's length and the time it was stored. Chunks not
  // yet synced are not listed (they are recent: inside any grace period).
  virtual absl::Status ListStored(const Digest* after, size_t max, std::vector<StoredChunk>* out);
  // Removes the stored chunks among `digests`, durably: Has() says no at
  // once, the next Put stores them again, and their space is freed where the
  // file system can (a hole punched in the pack; a record a read is still in
  // flight on waits for the next call), else at the next Compact. Absent
  // chunks and chunks stored since the last Sync are skipped. Returns the
  // chunk bytes removed.
  virtual absl::StatusOr<uint64_t> Remove(const std::vector<Digest>& digests);
  // Rewrites every pack file (but the one being appended to) whose live bytes
  // are below `live_below` of the disk space it holds: its live chunks are
  // re-verified and appended anew, then the file is deleted. Reads and writes
  // go on meanwhile. Stops between packs when `cancel` (may be null) is.
  virtual absl::StatusOr<CompactReport> Compact(double live_below, Cancellation* cancel);
  // A store shared with other nodes (S3): answers the collection rounds
  // the collecting node opened and this one has not answered, naming the
  // chunks it still counts on (`needed` says which, of those the round
  // would delete). Nothing to do (OK) for a store of one node's own.
  virtual absl::Status AnswerCollection(const NeededChunks& needed);
};

// Forwards every call; subclass and override what a test breaks.
class ChunkStoreWrapper : public ChunkStore {
 public:
  explicit ChunkStoreWrapper(ChunkStore* target) : target_(target) {}
  absl::Status Put(const Digest& d, std::string_view data,
                   PutMode mode = PutMode::kVerify) override {
    return target_->Put(d, data, mode);
  }
  absl::Status Get(const Digest& d, std::string* out) override { return target_->Get(d, out); }
  absl::StatusOr<bool> Has(const Digest& d) override { return target_->Has(d); }
  absl::StatusOr<ChunkExtent> Locate(const Digest& d) override { return target_->Locate(d); }
  absl::StatusOr<bool> HasIntact(const Digest& d) override { return target_->HasIntact(d); }
  absl::StatusOr<uint32_t> Check(const Digest& d) override { return target_->Check(d); }
  absl::Status List(const Digest* after, size_t max, std::vector<Digest>* out) override {
    return target_->List(after, max, out);
  }
  absl::StatusOr<uint64_t> Backup(const std::string& dir, Cancellation* cancel = nullptr) override {
    return target_->Backup(dir, cancel);
  }
  absl::Status Flush() override { return target_->Flush(); }
  absl::Status Sync() override { return target_->Sync(); }
  absl::Status ListStored(const Digest* after, size_t max, std::vector<StoredChunk>* out) override {
    return target_->ListStored(after, max, out);
  }
  absl::StatusOr<uint64_t> Remove(const std::vector<Digest>& d) override {
    return target_->Remove(d);
  }
  absl::StatusOr<CompactReport> Compact(double live_below, Cancellation* cancel) override {
    return target_->Compact(live_below, cancel);
  }
  absl::Status AnswerCollection(const NeededChunks& needed) override {
    return target_->AnswerCollection(needed);
  }

 protected:
  ChunkStore* target() { return target_; }

 private:
  ChunkStore* target_;  // not owned
};

struct PackStoreOptions {
  // true (a node): index entries are written only after the pack bytes they
  // point at were fdatasync'ed, at Sync() or every `sync_bytes`; until then
  // chunks are found through memory; after a crash the next open indexes
  // the whole records whose bytes match (never points at missing bytes). false (the client cache):
  // index entries follow each write() at once, so a killed process keeps every chunk it stored, but
  // a power loss may leave entries whose bytes are gone (found by verify_on_read). Default: true.
  bool durable = true;
  // With durable: Sync() by itself after this many unsynced bytes. Default: 1 GiB.
  uint64_t sync_bytes = 1ULL << 30;
  // Re-hash chunks on Get and report DataLoss on mismatch. Default: true.
  bool verify_on_read = true;
  // Bytes buffered in memory before a write(). Default: 4 MiB.
  size_t buffer_bytes = 4 << 20;
  // A new pack file starts past this size. Default: 4 GiB.
  uint64_t pack_bytes = 4ULL << 30;
  // Put of a new chunk fails with ResourceExhausted while the file system
  // holds fewer free bytes than this (checked every few MiB written), so
  // uploads and replication stop before the disk is full and the metadata
  // database always has room. 0: no floor. Default: 0 (the node sets it).
  uint64_t min_free_bytes = 0;
  // Removed chunks free their space at once by punching a hole in their
  // pack (where the file system can). false: only Compact frees it (tests of
  // compaction). Default: true.
  bool punch_holes = true;
  // Stamps each chunk's store time (garbage collection's grace period). Not
  // owned; null: the real clock. Default: null.
  Clock* clock = nullptr;
};

// Append-only pack files (DIR/packs/pack-NNNNNNNN.dat) indexed by RocksDB
// (DIR/index). FailedPrecondition when another process holds DIR open.
absl::StatusOr<std::unique_ptr<ChunkStore>> OpenPackChunkStore(const std::string& dir,
                                                               const PackStoreOptions& opts);
// Rebuilds DIR/index from its table and log files (RocksDB's RepairDB).
absl::Status RepairPackIndex(const std::string& dir);

// Chunk bytes as RocksDB values in integrated BlobDB blob files (DIR/blobdb).
// Kept for the storage benchmark and as an alternative backend.
absl::StatusOr<std::unique_ptr<ChunkStore>> OpenBlobChunkStore(const std::string& dir,
                                                               bool verify_on_read = true);

// Tables of the metadata store (RocksDB column families).
enum class Table : int {
  kObjects = 0,  // digest name -> bytes (manifests, chunk lists) of committed releases
  kStaging,      // digest name -> chunk lists uploaded but not yet committed
  kEnvelopes,    // manifest digest -> signed manifest envelope bytes
  kReleases,     // name \0 version -> manifest digest
  kTags,         // name \0 tag -> signed tag envelope bytes
  kChildren,     // parent digest \0 child digest -> child name \0 version \0 relation
  kState,        // node state: node_id, feed_head, feed_tail
  kFeed,         // big-endian u64 seq -> FeedEvent (what this node accepted, in order)
  kLocal,        // the client's store: where pulled files hold each chunk (client/model_store.h)
  kCount
};

struct WriteOp {
  Table table;
  std::string key;
  std::optional<std::string> value;  // nullopt deletes
};

// Key-value metadata with atomic multi-table commits. Thread-safe.
class MetaStore {
 public:
  MetaStore() = default;
  virtual ~MetaStore() = default;
  MetaStore(const MetaStore&) = delete;
  MetaStore& operator=(const MetaStore&) = delete;

  // NotFound when absent.
  virtual absl::StatusOr<std::string> Get(Table t, std::string_view key) = 0;
  // Calls fn for each key with `prefix`, in key order, until fn returns false.
  virtual absl::Status Scan(Table t, std::string_view prefix,
                            const std::function<bool(std::string_view, std::string_view)>& fn) = 0;
  // Applies all ops atomically; durable on return when `sync`.
  virtual absl::Status Commit(const std::vector<WriteOp>& ops, bool sync) = 0;
  // An openable copy of the store as of one moment, in the new directory
  // `dir` (RocksDB's checkpoint: table files hard-linked on the same file
  // system, copied across). Unimplemented where the store cannot.
  virtual absl::Status Checkpoint(const std::string& dir);
};

// Forwards every call; subclass and override what a test breaks.
class MetaStoreWrapper : public MetaStore {
 public:
  explicit MetaStoreWrapper(MetaStore* target) : target_(target) {}
  absl::StatusOr<std::string> Get(Table t, std::string_view key) override {
    return target_->Get(t, key);
  }
  absl::Status Scan(Table t, std::string_view prefix,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override {
    return target_->Scan(t, prefix, fn);
  }
  absl::Status Commit(const std::vector<WriteOp>& ops, bool sync) override {
    return target_->Commit(ops, sync);
  }
  absl::Status Checkpoint(const std::string& dir) override { return target_->Checkpoint(dir); }

 private:
  MetaStore* target_;  // not owned
};

// RocksDB with one column family per Table, at DIR. Without
// create_if_missing, a missing database is an error. `small` (the client's
// store index): no preallocated log space and small memtables, so an index
// of a few MB takes a few MB on disk.
absl::StatusOr<std::unique_ptr<MetaStore>> OpenRocksMetaStore(const std::string& dir,
                                                              bool create_if_missing = true,
                                                              bool small = false);
// Rebuilds DIR's database from the table and log files left in it (after its
// CURRENT or MANIFEST was lost): RocksDB's RepairDB with every table.
absl::Status RepairRocksMetaStore(const std::string& dir);

}  // namespace cairn
