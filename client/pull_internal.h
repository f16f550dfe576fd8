// Internal to the pull (pull.cc, pull_file.cc): the state one pull shares
// across its files, and the assembly of one file.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cairn/transport/fetcher.h"
#include "client.h"
#include "model_store.h"
#include "progress.h"

namespace cairn::client {

// A file being assembled: ".cairn-partial-<pid>-<n>" beside its final name.
inline constexpr std::string_view kPartialPrefix = ".cairn-partial-";

struct PullRun {
  const PullOptions* o = nullptr;
  ModelStore* store = nullptr;
  Fetcher* fetcher = nullptr;  // null offline
  std::vector<Connection*> sources;
  FetchOptions fetch_options;
  Progress* progress = nullptr;
  PullResult* res = nullptr;
  std::function<void(const std::string&)> notice;
  std::optional<std::chrono::steady_clock::time_point> first_ask;
  std::chrono::steady_clock::time_point last_chunk;
  int file_index = 0;
  // Cleared after the first FICLONERANGE (copy_file_range) the filesystem
  // refuses.
  bool try_reflink = true;
  bool try_copy_range = true;
  uint64_t bytes_cloned = 0;
};

// Writes `f` beneath `root_fd` (whose absolute path is `root_abs`) from
// verified chunks: those a local file holds (cloned where the filesystem
// shares extents), then the fetched ones, under a temporary name renamed
// into place once complete. A file already holding exactly these chunks is
// kept as it is. Every chunk's place is recorded in the store.
absl::Status AssembleFile(PullRun& run, int root_fd, const std::string& root_abs,
                          const cairn::v1::FileEntry& f, const cairn::v1::ChunkList& cl);

// Removes the partial files killed pulls left in `dir_fd` (".cairn-partial-
// PID-..." that no process holds a lock on, and whose PID is gone or is this
// process's: a container's cairn has the same pid every run). Returns how
// many.
int RemoveStalePartials(int dir_fd);

// ".cairn-partial-PID-N-RANDOM": a new temporary name each time (a pid is
// reused across runs, by containers always; an index record of an earlier
// file under the same name must never describe this one).
std::string NextPartialName(PullRun& run);

// After renaming the temporary file `fd` to `base` in `dir_fd`: whether the
// file now there is `fd`'s. When something replaced the temporary file
// meanwhile, removes what it put there and fails (naming `path`).
absl::StatusOr<bool> RenamedIsOurs(int dir_fd, const std::string& base, int fd,
                                   const std::string& path);

// Places `f` as `base` in `dir_fd` (absolute `dir_abs`) by one in-kernel copy
// or clone of a local file that holds it whole (same chunk list), when that
// file's fingerprint is the one recorded when cairn wrote or verified it,
// before and after the copy (docs/security.md). False when no such file is
// there (the caller assembles the file chunk by chunk).
absl::StatusOr<bool> PlaceWholeFile(PullRun& run, int dir_fd, const std::string& dir_abs,
                                    const std::string& base, const cairn::v1::FileEntry& f,
                                    const cairn::v1::ChunkList& cl);

}  // namespace cairn::client
