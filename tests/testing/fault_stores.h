// Fault injection over any store, for tests. Thread-safe: the node's threads
// (the work pool, replicators) call stores concurrently.
#pragma once

#include <atomic>
#include <string>

#include "absl/synchronization/mutex.h"
#include "cairn/store.h"

namespace cairn::testing {

// Over any ChunkStore: fail the next Puts with ENOSPC, store only a prefix
// of a chunk (torn write), or flip a byte on read.
class FaultInjectingChunkStore : public ChunkStoreWrapper {
 public:
  using ChunkStoreWrapper::ChunkStoreWrapper;
  void FailPuts(int n) { fail_puts_ = n; }
  void TearNextPut() { tear_next_ = true; }
  void CorruptReads(bool on) { corrupt_reads_ = on; }
  absl::Status Put(const Digest& d, std::string_view data,
                   PutMode mode = PutMode::kVerify) override;
  absl::Status Get(const Digest& d, std::string* out) override;
  // While reads are corrupted, bytes are only handed out through Get.
  absl::StatusOr<ChunkExtent> Locate(const Digest& d) override {
    if (corrupt_reads_) return absl::UnimplementedError("reads are being corrupted");
    return ChunkStoreWrapper::Locate(d);
  }

 private:
  std::atomic<int> fail_puts_{0};
  std::atomic<bool> tear_next_{false};
  std::atomic<bool> corrupt_reads_{false};
};

// Over any MetaStore: make reads of one table (or one key of it) fail with
// an I/O error, the way a failing disk or a corrupt block does.
class FaultInjectingMetaStore : public MetaStoreWrapper {
 public:
  using MetaStoreWrapper::MetaStoreWrapper;
  // Reads (Get) of `key` in `t` fail; an empty key: every read of `t`.
  void FailReads(Table t, std::string key = "");
  void FailScans(Table t);
  void Heal();
  int failed() const { return failed_; }
  absl::StatusOr<std::string> Get(Table t, std::string_view key) override;
  absl::Status Scan(Table t, std::string_view prefix,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override;

 private:
  mutable absl::Mutex mu_;
  int get_table_ ABSL_GUARDED_BY(mu_) = -1;
  std::string get_key_ ABSL_GUARDED_BY(mu_);
  int scan_table_ ABSL_GUARDED_BY(mu_) = -1;
  std::atomic<int> failed_{0};
};

}  // namespace cairn::testing
