#include "fault_stores.h"

#include <cerrno>

#include "cairn/status.h"

namespace cairn::testing {

absl::Status FaultInjectingChunkStore::Put(const Digest& d, std::string_view data, PutMode mode) {
  for (int n = fail_puts_.load(); n > 0;) {
    if (fail_puts_.compare_exchange_weak(n, n - 1)) return ErrnoStatus(ENOSPC, "injected");
  }
  if (tear_next_.exchange(false)) {
    // A torn write: only half the bytes reach the store. A verifying store
    // refuses them, which is the point.
    return ChunkStoreWrapper::Put(d, data.substr(0, data.size() / 2), mode);
  }
  return ChunkStoreWrapper::Put(d, data, mode);
}

absl::Status FaultInjectingChunkStore::Get(const Digest& d, std::string* out) {
  CAIRN_RETURN_IF_ERROR(ChunkStoreWrapper::Get(d, out));
  if (corrupt_reads_ && !out->empty()) (*out)[out->size() / 2] ^= 0x5a;
  return absl::OkStatus();
}

void FaultInjectingMetaStore::FailReads(Table t, std::string key) {
  absl::MutexLock l(&mu_);
  get_table_ = static_cast<int>(t);
  get_key_ = std::move(key);
}

void FaultInjectingMetaStore::FailScans(Table t) {
  absl::MutexLock l(&mu_);
  scan_table_ = static_cast<int>(t);
}

void FaultInjectingMetaStore::Heal() {
  absl::MutexLock l(&mu_);
  get_table_ = scan_table_ = -1;
  get_key_.clear();
}

absl::StatusOr<std::string> FaultInjectingMetaStore::Get(Table t, std::string_view key) {
  {
    absl::MutexLock l(&mu_);
    if (get_table_ == static_cast<int>(t) && (get_key_.empty() || get_key_ == key)) {
      ++failed_;
      return ErrnoStatus(EIO, "injected read error");
    }
  }
  return MetaStoreWrapper::Get(t, key);
}

absl::Status FaultInjectingMetaStore::Scan(
    Table t, std::string_view prefix,
    const std::function<bool(std::string_view, std::string_view)>& fn) {
  {
    absl::MutexLock l(&mu_);
    if (scan_table_ == static_cast<int>(t)) {
      ++failed_;
      return ErrnoStatus(EIO, "injected scan error");
    }
  }
  return MetaStoreWrapper::Scan(t, prefix, fn);
}

}  // namespace cairn::testing
