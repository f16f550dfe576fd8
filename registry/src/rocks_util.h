// Internal helpers shared by the RocksDB-backed stores.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "rocksdb/status.h"

namespace cairn {

// Maps a RocksDB status to a canonical one. A held LOCK file becomes
// FailedPrecondition naming the directory.
inline absl::Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = what + ": " + s.ToString();
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
    return absl::FailedPreconditionError(what + ": in use by another process (its LOCK is held)");
  }
  if (s.IsNoSpace() || absl::StrContains(s.ToString(), "No space")) {
    return absl::ResourceExhaustedError(msg);
  }
  if (s.IsIOError()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

}  // namespace cairn
