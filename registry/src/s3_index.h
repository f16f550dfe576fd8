// The S3 store's chunk index, on local disk (RocksDB under DATA/s3-index):
// where each chunk lies in the bucket, each pack's record layout (for read
// windows), and which index objects were read. Memory stays bounded however
// large the bucket (or however many entries a planted index object names),
// and a restart reads only the index objects it has not read before.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/hash.h"
#include "rocksdb/db.h"

namespace cairn::s3 {

struct Loc {
  uint64_t pack = 0;  // id; its objects are packs/<16 hex> and index/<16 hex>
  uint64_t offset = 0;
  uint32_t length = 0;
  // Written by this frontend, or read back and matched its digest, since
  // it started: an index object alone (another frontend's, or one planted in
  // the bucket) does not make a chunk count as held for a publish.
  bool verified = false;
  // A read of this place failed (bad bytes or no object): the chunk does
  // not count as held, but the place is tried again.
  bool suspect = false;
};

// Object names: 16 lowercase hex digits (pack and index object ids, frontend
// ids, round numbers). ParseHex16 takes nothing else ("ABC..." is not the
// same name as "abc...").
std::string Hex16(uint64_t id);
bool ParseHex16(std::string_view name, uint64_t* id);

struct IndexEntry {
  Digest digest;
  Loc loc;
};

// The bucket's index objects: repeated entries of a 32-byte digest, the u64
// offset of the chunk's bytes in the pack and its u32 length (native order).
constexpr size_t kIndexEntryBytes = 44;
// Index objects read at once at a start or refresh (each at most 16 MiB
// in memory while it is read).
constexpr size_t kIndexReaders = 4;

// The whole entries of index object `id` that a pack of ours could hold
// (records of `header` bytes before each chunk) into *entries; returns how
// many were skipped (a damaged or hostile object must not make a read ask
// for gigabytes).
size_t ParseIndexObject(uint64_t id, std::string_view bytes, uint64_t header,
                        std::vector<IndexEntry>* entries);

class Client;
// GETs the index objects `todo` (id, key), kIndexReaders at a time, each
// handed to `add`. One that cannot be read is reported through `notice`
// and skipped; one too large to be ours is handed over empty (recorded as
// read, its entries never used). Unavailable, or an error of `add`, stops
// it: what was handed over stays.
absl::Status ReadIndexObjects(Client& client,
                              const std::vector<std::pair<uint64_t, std::string>>& todo,
                              const std::function<absl::Status(uint64_t, std::string_view)>& add,
                              const std::function<void(const std::string&)>& notice);

class Index {
 public:
  // Opens (or makes) the index in `dir` for the bucket and prefix named by
  // `where`; an index made for another bucket is emptied first (*emptied).
  static absl::StatusOr<std::unique_ptr<Index>> Open(const std::string& dir,
                                                     const std::string& where, bool* emptied);

  bool Find(const Digest& d, Loc* loc);
  // Sets the chunk's place (its primary one).
  absl::Status Set(const Digest& d, const Loc& loc);
  absl::Status Erase(const Digest& d);
  // Up to `max` digests held (not suspect) after `after` (or from the first).
  absl::Status List(const Digest* after, size_t max, std::vector<Digest>* out);

  // Index object `id` was read (or written): its entries and its records,
  // in one write. With `overwrite` each entry becomes its digest's place;
  // without, only where the digest has none yet (the others go to *others).
  // `seen_unix`: when this frontend first read (or wrote) it.
  absl::Status AddObject(uint64_t id, const std::vector<IndexEntry>& entries, bool overwrite,
                         std::vector<IndexEntry>* others, int64_t seen_unix);
  bool Known(uint64_t id);
  // Index objects read before, and each one's records (to drop them when
  // the object is gone from the bucket).
  absl::StatusOr<std::vector<uint64_t>> KnownObjects();
  // Each index object read, with when this frontend first read it (unix
  // seconds; 0 for one read before it kept times); `fn` false stops.
  absl::Status Objects(const std::function<bool(uint64_t id, int64_t seen_unix)>& fn);
  // When index object `id` was first read (0: unknown, or long ago).
  int64_t Seen(uint64_t id);
  // The records of pack `id` as its index object named them, by offset.
  absl::Status Records(uint64_t id, std::vector<IndexEntry>* out);
  // Small values of the store's own (keys of one capital letter or "g").
  absl::Status PutMeta(std::string_view key, std::string_view value);
  bool GetMeta(std::string_view key, std::string* value);
  absl::Status DeleteMeta(std::string_view key);
  // This frontend's name in the bucket's garbage collection rounds: 16 hex
  // digits, made at random at its first start and kept.
  absl::StatusOr<std::string> FrontendId();
  // Forgets index object `id`: its records, and the places in its pack.
  absl::Status DropObject(uint64_t id);
  // The end of the read window starting at record `start` of pack `id`: the
  // whole records within `window` bytes (at least one), given each record's
  // header size; 0 when no record starts there.
  uint64_t WindowEnd(uint64_t id, uint64_t start, uint64_t window, uint64_t header);

 private:
  Index(std::unique_ptr<rocksdb::DB> db, uint32_t epoch) : db_(std::move(db)), epoch_(epoch) {}
  std::string Value(const Loc& loc) const;
  bool Parse(const std::string& v, Loc* loc) const;

  std::unique_ptr<rocksdb::DB> db_;
  // Counts the frontend's starts: an entry is verified only when it was
  // verified in this one.
  const uint32_t epoch_;
};

}  // namespace cairn::s3
