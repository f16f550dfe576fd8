#include "s3_index.h"

#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "cairn/limits.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "rocks_util.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "s3_client.h"

namespace cairn::s3 {
namespace {

// Keys: "m" the bucket and prefix the index is for; "e" the start count;
// "c" + digest a chunk's place; "r" + pack + offset a record (its chunk's
// length and digest); "k" + id an index object read (value: when first
// read, unix seconds); "f" the frontend's id; "g" the collector's open
// round, "G" the last round number it used. Numbers big-endian in
// keys (so a pack's records sort by offset), native in values.
constexpr size_t kPlaceBytes = 8 + 8 + 4 + 1 + 4;  // pack, offset, length, suspect, epoch

void PutBigEndian(std::string* s, uint64_t v) {
  for (int i = 7; i >= 0; --i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetBigEndian(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
std::string ChunkKey(const Digest& d) {
  std::string k = "c";
  k.append(reinterpret_cast<const char*>(d.data()), d.size());
  return k;
}
std::string RecordKey(uint64_t pack, uint64_t offset) {
  std::string k = "r";
  PutBigEndian(&k, pack);
  PutBigEndian(&k, offset);
  return k;
}
std::string ObjectKey(uint64_t id) {
  std::string k = "k";
  PutBigEndian(&k, id);
  return k;
}
template <typename T>
void Append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

}  // namespace

std::string Hex16(uint64_t id) {
  static const char* kHex = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) s[i] = kHex[id & 15];
  return s;
}

bool ParseHex16(std::string_view name, uint64_t* id) {
  if (name.size() != 16 || name.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return false;
  }
  *id = 0;
  for (char c : name) *id = (*id << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  return true;
}

absl::StatusOr<std::unique_ptr<Index>> Index::Open(const std::string& dir, const std::string& where,
                                                   bool* emptied) {
  *emptied = false;
  auto fail = [&dir](const absl::Status& st) {
    return absl::Status(st.code(), std::string(st.message()) + " (stop the frontend and delete " +
                                       dir + ": the next start rebuilds it from the bucket)");
  };
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError("cannot make " + dir + ": " + ec.message());
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_open_files = 256;
  o.keep_log_file_num = 2;
  // Memory: one 16 MiB memtable (and one being flushed) and a 32 MiB block
  // cache, whatever the bucket holds.
  o.write_buffer_size = 16 << 20;
  o.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(32 << 20);
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  for (int attempt = 0;; ++attempt) {
    rocksdb::DB* raw = nullptr;
    if (absl::Status st = FromRocks(rocksdb::DB::Open(o, dir, &raw), dir); !st.ok()) {
      return absl::IsFailedPrecondition(st) ? st : fail(st);  // a held LOCK: no hint
    }
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string was;
    rocksdb::Status st = db->Get(rocksdb::ReadOptions(), "m", &was);
    if (st.ok() && was != where && attempt == 0) {
      // Made for another bucket or prefix: its places name other objects.
      db.reset();
      CAIRN_RETURN_IF_ERROR(FromRocks(rocksdb::DestroyDB(dir, o), dir));
      *emptied = true;
      continue;
    }
    if (!st.ok() && !st.IsNotFound()) return fail(FromRocks(st, dir));
    std::string e;
    uint32_t epoch = 0;
    if (db->Get(rocksdb::ReadOptions(), "e", &e).ok() && e.size() == sizeof(epoch)) {
      std::memcpy(&epoch, e.data(), sizeof(epoch));
    }
    ++epoch;
    if (epoch == 0) epoch = 1;  // 0 marks "never verified"
    rocksdb::WriteBatch b;
    b.Put("m", where);
    std::string ev;
    Append(&ev, epoch);
    b.Put("e", ev);
    rocksdb::WriteOptions w;
    w.sync = true;
    CAIRN_RETURN_IF_ERROR(FromRocks(db->Write(w, &b), dir));
    return std::unique_ptr<Index>(new Index(std::move(db), epoch));
  }
}

std::string Index::Value(const Loc& loc) const {
  std::string v;
  v.reserve(kPlaceBytes);
  Append(&v, loc.pack);
  Append(&v, loc.offset);
  Append(&v, loc.length);
  v.push_back(loc.suspect ? 1 : 0);
  Append(&v, loc.verified ? epoch_ : uint32_t{0});
  return v;
}

bool Index::Parse(const std::string& v, Loc* loc) const {
  if (v.size() != kPlaceBytes) return false;
  uint32_t epoch = 0;
  std::memcpy(&loc->pack, v.data(), 8);
  std::memcpy(&loc->offset, v.data() + 8, 8);
  std::memcpy(&loc->length, v.data() + 16, 4);
  loc->suspect = v[20] != 0;
  std::memcpy(&epoch, v.data() + 21, 4);
  loc->verified = epoch == epoch_;
  return true;
}

bool Index::Find(const Digest& d, Loc* loc) {
  std::string v;
  return db_->Get(rocksdb::ReadOptions(), ChunkKey(d), &v).ok() && Parse(v, loc);
}

absl::Status Index::Set(const Digest& d, const Loc& loc) {
  return FromRocks(db_->Put(rocksdb::WriteOptions(), ChunkKey(d), Value(loc)), "S3 chunk index");
}

absl::Status Index::Erase(const Digest& d) {
  return FromRocks(db_->Delete(rocksdb::WriteOptions(), ChunkKey(d)), "S3 chunk index");
}

absl::Status Index::List(const Digest* after, size_t max, std::vector<Digest>* out) {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  it->Seek(after ? ChunkKey(*after) : std::string("c"));
  for (; it->Valid() && out->size() < max; it->Next()) {
    const rocksdb::Slice k = it->key();
    if (k.size() != 33 || k[0] != 'c') break;
    Digest d;
    std::memcpy(d.data(), k.data() + 1, d.size());
    if (after && d == *after) continue;
    Loc loc;
    if (!Parse(it->value().ToString(), &loc) || loc.suspect) continue;
    out->push_back(d);
  }
  return FromRocks(it->status(), "S3 chunk index");
}

absl::Status Index::AddObject(uint64_t id, const std::vector<IndexEntry>& entries, bool overwrite,
                              std::vector<IndexEntry>* others, int64_t seen_unix) {
  // In writes of kSlice entries (an index object may name 381,000), the
  // object marked as read in the last: a crash in between reads it again.
  constexpr size_t kSlice = 8192;
  // One place per chunk from one object: a pack holds each chunk once, so
  // more are planted (and would crowd out the real places elsewhere).
  absl::flat_hash_set<Digest, DigestHash> seen;
  for (size_t from = 0; from == 0 || from < entries.size(); from += kSlice) {
    rocksdb::WriteBatch b;
    for (size_t i = from; i < std::min(entries.size(), from + kSlice); ++i) {
      const IndexEntry& e = entries[i];
      Loc held;
      if (!overwrite && !seen.insert(e.digest).second) {
        continue;
      } else if (!overwrite && Find(e.digest, &held)) {
        if (held.pack != e.loc.pack || held.offset != e.loc.offset) others->push_back(e);
      } else {
        b.Put(ChunkKey(e.digest), Value(e.loc));
      }
      std::string record;
      Append(&record, e.loc.length);
      record.append(reinterpret_cast<const char*>(e.digest.data()), e.digest.size());
      b.Put(RecordKey(id, e.loc.offset), record);
    }
    if (from + kSlice >= entries.size()) {
      std::string seen;
      Append(&seen, seen_unix);
      b.Put(ObjectKey(id), seen);
    }
    CAIRN_RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &b), "S3 chunk index"));
  }
  return absl::OkStatus();
}

bool Index::Known(uint64_t id) {
  std::string v;
  return db_->Get(rocksdb::ReadOptions(), ObjectKey(id), &v).ok();
}

absl::StatusOr<std::vector<uint64_t>> Index::KnownObjects() {
  std::vector<uint64_t> ids;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("k"); it->Valid() && it->key().size() == 9 && it->key()[0] == 'k'; it->Next()) {
    ids.push_back(GetBigEndian(it->key().data() + 1));
  }
  CAIRN_RETURN_IF_ERROR(FromRocks(it->status(), "S3 chunk index"));
  return ids;
}

absl::Status Index::Objects(const std::function<bool(uint64_t, int64_t)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("k"); it->Valid() && it->key().size() == 9 && it->key()[0] == 'k'; it->Next()) {
    int64_t seen = 0;
    if (it->value().size() == sizeof(seen)) std::memcpy(&seen, it->value().data(), sizeof(seen));
    if (!fn(GetBigEndian(it->key().data() + 1), seen)) break;
  }
  return FromRocks(it->status(), "S3 chunk index");
}

int64_t Index::Seen(uint64_t id) {
  std::string v;
  int64_t seen = 0;
  if (db_->Get(rocksdb::ReadOptions(), ObjectKey(id), &v).ok() && v.size() == sizeof(seen)) {
    std::memcpy(&seen, v.data(), sizeof(seen));
  }
  return seen;
}

absl::Status Index::Records(uint64_t id, std::vector<IndexEntry>* out) {
  out->clear();
  const std::string first = RecordKey(id, 0);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(first); it->Valid() && it->key().size() == 17 &&
                        it->key().starts_with(rocksdb::Slice(first.data(), 9));
       it->Next()) {
    if (it->value().size() != 4 + 32) continue;
    IndexEntry e;
    e.loc.pack = id;
    e.loc.offset = GetBigEndian(it->key().data() + 9);
    std::memcpy(&e.loc.length, it->value().data(), 4);
    std::memcpy(e.digest.data(), it->value().data() + 4, e.digest.size());
    out->push_back(e);
  }
  return FromRocks(it->status(), "S3 chunk index");
}

absl::Status Index::PutMeta(std::string_view key, std::string_view value) {
  rocksdb::WriteOptions w;
  w.sync = true;
  return FromRocks(db_->Put(w, rocksdb::Slice(key.data(), key.size()),
                            rocksdb::Slice(value.data(), value.size())),
                   "S3 chunk index");
}

bool Index::GetMeta(std::string_view key, std::string* value) {
  return db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), value).ok();
}

absl::Status Index::DeleteMeta(std::string_view key) {
  rocksdb::WriteOptions w;
  w.sync = true;
  return FromRocks(db_->Delete(w, rocksdb::Slice(key.data(), key.size())), "S3 chunk index");
}

absl::StatusOr<std::string> Index::FrontendId() {
  std::string id;
  if (db_->Get(rocksdb::ReadOptions(), "f", &id).ok() && id.size() == 16) return id;
  uint64_t r = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&r), sizeof(r)) != 1) {
    return absl::InternalError("no random frontend id");
  }
  id = Hex16(r);
  rocksdb::WriteOptions w;
  w.sync = true;
  CAIRN_RETURN_IF_ERROR(FromRocks(db_->Put(w, "f", id), "S3 chunk index"));
  return id;
}

absl::Status Index::DropObject(uint64_t id) {
  rocksdb::WriteBatch b;
  const std::string first = RecordKey(id, 0);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(first); it->Valid() && it->key().starts_with(rocksdb::Slice(first.data(), 9));
       it->Next()) {
    const rocksdb::Slice v = it->value();
    if (v.size() == 4 + 32) {
      Digest d;
      std::memcpy(d.data(), v.data() + 4, d.size());
      Loc loc;
      if (Find(d, &loc) && loc.pack == id) b.Delete(ChunkKey(d));
    }
    b.Delete(it->key());
  }
  CAIRN_RETURN_IF_ERROR(FromRocks(it->status(), "S3 chunk index"));
  b.Delete(ObjectKey(id));
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &b), "S3 chunk index");
}

uint64_t Index::WindowEnd(uint64_t id, uint64_t start, uint64_t window, uint64_t header) {
  // Records are keyed by where their chunk's bytes start (header after the
  // record's own start).
  const std::string first = RecordKey(id, start + header);
  const rocksdb::Slice pack(first.data(), 9);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  it->Seek(first);
  if (!it->Valid() || it->key() != rocksdb::Slice(first)) return 0;
  uint64_t end = start;
  for (; it->Valid() && it->key().size() == 17 && it->key().starts_with(pack); it->Next()) {
    if (GetBigEndian(it->key().data() + 9) != end + header || it->value().size() != 4 + 32) break;
    uint32_t length = 0;
    std::memcpy(&length, it->value().data(), 4);
    const uint64_t next = end + header + length;
    if (next - start > window && end > start) break;
    end = next;
  }
  return end;
}

size_t ParseIndexObject(uint64_t id, std::string_view bytes, uint64_t header,
                        std::vector<IndexEntry>* entries) {
  size_t skipped = 0;
  for (size_t at = 0; at + kIndexEntryBytes <= bytes.size(); at += kIndexEntryBytes) {
    IndexEntry e;
    std::memcpy(e.digest.data(), bytes.data() + at, e.digest.size());
    e.loc.pack = id;
    std::memcpy(&e.loc.offset, bytes.data() + at + 32, 8);
    std::memcpy(&e.loc.length, bytes.data() + at + 40, 4);
    if (e.loc.length == 0 || e.loc.length > kMaxChunkSize || e.loc.offset < header ||
        e.loc.offset > (uint64_t{1} << 40)) {
      ++skipped;
      continue;
    }
    entries->push_back(e);
  }
  return skipped;
}

absl::Status ReadIndexObjects(Client& client,
                              const std::vector<std::pair<uint64_t, std::string>>& todo,
                              const std::function<absl::Status(uint64_t, std::string_view)>& add,
                              const std::function<void(const std::string&)>& notice) {
  std::atomic<size_t> next{0};
  absl::Mutex err_mu;
  absl::Status err;
  auto work = [&] {
    for (size_t i; (i = next++) < todo.size();) {
      {
        absl::MutexLock l(&err_mu);
        if (!err.ok()) return;
      }
      const auto& [id, key] = todo[i];
      auto index = client.Get(key);
      absl::Status st = index.status();
      if (!index.ok() && !absl::IsUnavailable(st)) {
        // Another error is met again at the next refresh.
        notice(StrCat("S3 index object ", key, " skipped: ", st.message()));
        if (!absl::IsResourceExhausted(st)) continue;
        index = std::string();
      }
      if (index.ok()) st = add(id, *index);
      if (!st.ok()) {
        absl::MutexLock l(&err_mu);
        if (err.ok()) err = st;
        return;
      }
    }
  };
  std::vector<std::thread> readers;
  for (size_t t = 1; t < std::min<size_t>(kIndexReaders, todo.size()); ++t) {
    readers.emplace_back(work);
  }
  work();
  for (auto& t : readers) t.join();
  return err;
}

}  // namespace cairn::s3
