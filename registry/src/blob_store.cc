// Chunk bytes as RocksDB values in integrated BlobDB blob files.
#include <sys/stat.h>

#include "cairn/status.h"
#include "cairn/store.h"
#include "rocks_util.h"
#include "rocksdb/db.h"

namespace cairn {
namespace {

class BlobChunkStore final : public ChunkStore {
 public:
  BlobChunkStore(std::unique_ptr<rocksdb::DB> db, bool verify)
      : db_(std::move(db)), verify_(verify) {}

  absl::Status Put(const Digest& digest, std::string_view data, PutMode mode) override {
    if (mode == PutMode::kVerify && Sha256Of(data) != digest) {
      return absl::DataLossError("chunk bytes do not match digest " + DigestName(digest));
    }
    return FromRocks(db_->Put(rocksdb::WriteOptions(), Key(digest), data), "blob put");
  }
  absl::Status Get(const Digest& digest, std::string* out) override {
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Key(digest), out);
    if (s.IsNotFound()) return absl::NotFoundError("chunk " + DigestName(digest) + " not found");
    CAIRN_RETURN_IF_ERROR(FromRocks(s, "blob get"));
    if (verify_ && Sha256Of(*out) != digest) {
      return absl::DataLossError("stored chunk " + DigestName(digest) + " is corrupt");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<bool> Has(const Digest& digest) override {
    std::string v;
    // KeyMayExist avoids reading the blob for the common "absent" case.
    if (!db_->KeyMayExist(rocksdb::ReadOptions(), Key(digest), &v)) return false;
    rocksdb::PinnableSlice p;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), Key(digest), &p);
    if (s.IsNotFound()) return false;
    CAIRN_RETURN_IF_ERROR(FromRocks(s, "blob has"));
    return true;
  }
  absl::Status Flush() override { return absl::OkStatus(); }  // WAL written per Put
  absl::Status Sync() override { return FromRocks(db_->SyncWAL(), "blob sync"); }

 private:
  static rocksdb::Slice Key(const Digest& d) {
    return rocksdb::Slice(reinterpret_cast<const char*>(d.data()), d.size());
  }
  std::unique_ptr<rocksdb::DB> db_;
  bool verify_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkStore>> OpenBlobChunkStore(const std::string& dir,
                                                               bool verify_on_read) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "cannot create " + dir);
  }
  rocksdb::Options o;
  o.create_if_missing = true;
  o.enable_blob_files = true;
  o.min_blob_size = 0;
  o.blob_file_size = 256 << 20;
  o.write_buffer_size = 64 << 20;
  o.compression = rocksdb::kNoCompression;
  o.blob_compression_type = rocksdb::kNoCompression;
  o.keep_log_file_num = 2;
  rocksdb::DB* db = nullptr;
  CAIRN_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(o, dir + "/blobdb", &db), dir));
  return std::unique_ptr<ChunkStore>(
      new BlobChunkStore(std::unique_ptr<rocksdb::DB>(db), verify_on_read));
}

}  // namespace cairn
