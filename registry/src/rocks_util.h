// Internal helpers shared by the RocksDB-backed stores.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
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

// When DIR/CURRENT is gone but a MANIFEST is left, points CURRENT at the
// newest MANIFEST: lossless where RepairDB is not (it drops what sits only in
// the WAL of a non-default column family). True when CURRENT was rewritten.
inline bool RestoreCurrent(const std::string& dir) {
  if (::access((dir + "/CURRENT").c_str(), F_OK) == 0) return false;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return false;
  unsigned long best = 0;
  std::string name;
  while (dirent* e = ::readdir(d)) {
    unsigned long n;
    char tail;
    if (std::sscanf(e->d_name, "MANIFEST-%lu%c", &n, &tail) == 1 && n >= best) {
      best = n;
      name = e->d_name;
    }
  }
  ::closedir(d);
  if (name.empty()) return false;
  std::string tmp = dir + "/CURRENT.cairn-repair";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::string line = name + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  return ok && ::rename(tmp.c_str(), (dir + "/CURRENT").c_str()) == 0;
}

}  // namespace cairn
