#include <sys/stat.h>

#include "cairn/status.h"
#include "cairn/store.h"
#include "rocks_util.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"

namespace cairn {
namespace {

constexpr const char* kTableNames[] = {"objects",  "staging", "envelopes", "releases", "tags",
                                       "children", "state",   "feed",      "local"};
static_assert(std::size(kTableNames) == static_cast<size_t>(Table::kCount));

// The client's index keeps its write-ahead logs unflushed from run to run
// (OpenRocksMetaStore); a log is deleted only once every column family
// holding entries in it was flushed, which happened only when one filled its
// write buffer, and every command replayed all the kept logs at open (6 MB
// after six 1 GiB pulls: `cairn ls` took 0.10 s, 0.05 s once flushed). Past
// this many bytes of logs a close flushes (about once per 2 GiB pulled), and
// within one run RocksDB flushes the families holding the oldest log.
constexpr uint64_t kSmallWalCap = 2 << 20;

class RocksMetaStore final : public MetaStore {
 public:
  RocksMetaStore(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> cfs,
                 bool flush_on_close)
      : db_(std::move(db)), cfs_(std::move(cfs)), flush_on_close_(flush_on_close) {}
  ~RocksMetaStore() override {
    // Everything in table files at a clean close (a node): RepairDB, the last
    // resort after a lost MANIFEST, drops column families that live only in
    // the WAL. Not the client's small index (see OpenRocksMetaStore) unless
    // its logs passed kSmallWalCap.
    if (flush_on_close_ || WalBytes() > kSmallWalCap) {
      db_->Flush(rocksdb::FlushOptions(), cfs_).PermitUncheckedError();
    }
    for (auto* h : cfs_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }

  absl::StatusOr<std::string> Get(Table t, std::string_view key) override {
    std::string v;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Cf(t), key, &v);
    if (s.IsNotFound()) return absl::NotFoundError(StrCat(kTableNames[int(t)], " entry not found"));
    CAIRN_RETURN_IF_ERROR(FromRocks(s, "metadata read"));
    return v;
  }

  absl::Status Scan(Table t, std::string_view prefix,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), Cf(t)));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (!fn(it->key().ToStringView(), it->value().ToStringView())) break;
    }
    return FromRocks(it->status(), "metadata scan");
  }

  absl::Status Commit(const std::vector<WriteOp>& ops, bool sync) override {
    rocksdb::WriteBatch batch;
    for (const auto& op : ops) {
      rocksdb::Status s = op.value ? batch.Put(Cf(op.table), op.key, *op.value)
                                   : batch.Delete(Cf(op.table), op.key);
      CAIRN_RETURN_IF_ERROR(FromRocks(s, "metadata batch"));
    }
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    return FromRocks(db_->Write(wo, &batch), "metadata commit");
  }

  absl::Status Checkpoint(const std::string& dir) override {
    rocksdb::Checkpoint* cp = nullptr;
    CAIRN_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &cp), "checkpoint"));
    std::unique_ptr<rocksdb::Checkpoint> owned(cp);
    // log_size_for_flush 0: the memtables are flushed first, so the copy
    // needs no write-ahead log.
    return FromRocks(owned->CreateCheckpoint(dir, 0), "checkpoint to " + dir);
  }

 private:
  uint64_t WalBytes() {
    rocksdb::VectorLogPtr logs;
    if (!db_->GetSortedWalFiles(logs).ok()) return 0;
    uint64_t total = 0;
    for (const auto& l : logs) total += l->SizeFileBytes();
    return total;
  }
  rocksdb::ColumnFamilyHandle* Cf(Table t) { return cfs_[static_cast<int>(t) + 1]; }
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;  // [0] is "default"
  const bool flush_on_close_;
};

}  // namespace

namespace {
std::vector<rocksdb::ColumnFamilyDescriptor> Families(bool small = false) {
  rocksdb::ColumnFamilyOptions cf;
  if (small) cf.write_buffer_size = 4 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  descs.emplace_back(rocksdb::kDefaultColumnFamilyName, cf);
  for (const char* n : kTableNames) descs.emplace_back(n, cf);
  return descs;
}
}  // namespace

absl::StatusOr<std::unique_ptr<MetaStore>> OpenRocksMetaStore(const std::string& dir,
                                                              bool create_if_missing, bool small) {
  if (create_if_missing && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "cannot create " + dir);
  }
  rocksdb::DBOptions o;
  o.create_if_missing = create_if_missing;
  o.create_missing_column_families = true;
  o.keep_log_file_num = 4;
  if (small) {
    o.allow_fallocate = false;
    o.keep_log_file_num = 1;
    o.max_manifest_file_size = 4 << 20;
    // A run of the client writes a few hundred KB of index and exits: its
    // write-ahead log (unsynced; a killed process keeps it, a power loss
    // may cost the most recent entries, a prefix of the log surviving:
    // a lost entry only costs a refetch, a lost "forget" is never followed
    // by the record it made room for) is
    // replayed at the next open instead of flushed to tables at each close.
    // That took a pull from 20 fsyncs to a few (20 pulls at once each
    // waited behind the others' writeback in every one of them).
    o.avoid_flush_during_shutdown = true;
    o.avoid_flush_during_recovery = true;
    // ...but not for ever (kSmallWalCap).
    o.max_total_wal_size = kSmallWalCap;
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descs = Families(small);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  CAIRN_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(o, dir, descs, &handles, &db), dir));
  return std::unique_ptr<MetaStore>(
      new RocksMetaStore(std::unique_ptr<rocksdb::DB>(db), std::move(handles), !small));
}

absl::Status MetaStore::Checkpoint(const std::string&) {
  return absl::UnimplementedError("this metadata store cannot make a checkpoint");
}

absl::Status RepairRocksMetaStore(const std::string& dir) {
  if (RestoreCurrent(dir) && OpenRocksMetaStore(dir, /*create_if_missing=*/false).ok()) {
    return absl::OkStatus();
  }
  rocksdb::DBOptions o;
  return FromRocks(rocksdb::RepairDB(dir, o, Families()), "repair of " + dir);
}

}  // namespace cairn
