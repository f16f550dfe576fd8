// A repository's administration: who holds its directory, and backups.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

absl::StatusOr<int> Repository::HolderOf(const std::string& dir) {
  const std::string lock_path = dir + "/LOCK";
  int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return 0;
  if (fd < 0) return ErrnoStatus(errno, "cannot open " + lock_path);
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    ::close(fd);
    return 0;
  }
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  ::close(fd);
  int pid = 0;
  if (n <= 0 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(buf), &pid) || pid <= 0) {
    return absl::FailedPreconditionError(
        StrCat(dir, " is in use by a process that did not write its pid to ", lock_path));
  }
  return pid;
}

absl::StatusOr<uint64_t> Repository::Backup(const std::string& dest, Cancellation* cancel) {
  namespace fs = std::filesystem;
  if (dest.empty() || std::any_of(dest.begin(), dest.end(),
                                  [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
    return absl::InvalidArgumentError("a backup target must be a path without control characters");
  }
  std::error_code ec;
  // Where it would really land (symlinks resolved) must be outside the data
  // directory: a copy of the store into itself grows it and can break it.
  const fs::path data = fs::canonical(data_dir_, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot resolve " + data_dir_);
  const fs::path real = fs::weakly_canonical(fs::absolute(dest), ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot resolve " + dest);
  auto [d, r] = std::mismatch(data.begin(), data.end(), real.begin(), real.end());
  if (d == data.end()) {
    return absl::InvalidArgumentError(StrCat("backup target ", dest,
                                             " is inside the data directory ", data.string(),
                                             ": name a directory outside it"));
  }
  if (fs::exists(real, ec) && (!fs::is_directory(real, ec) || !fs::is_empty(real, ec))) {
    return absl::FailedPreconditionError(
        StrCat("backup target ", dest, " exists and is not an empty directory: name a new one"));
  }
  const std::string partial = real.string() + ".partial";
  if (fs::exists(partial, ec)) {
    return absl::FailedPreconditionError(StrCat(
        partial, " exists (left by an interrupted backup?): remove it, or name another target"));
  }
  fs::create_directories(partial, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot create " + partial);
  auto copy = [&]() -> absl::StatusOr<uint64_t> {
    // The metadata first: chunks are never deleted, so the chunk store copied
    // after it holds every chunk its releases name.
    CAIRN_RETURN_IF_ERROR(meta_->Checkpoint(partial + "/meta"));
    CAIRN_ASSIGN_OR_RETURN(uint64_t bytes, chunks_->Backup(partial + "/chunks", cancel));
    if (cancel != nullptr && cancel->cancelled())
      return absl::CancelledError("the node is stopping");
    for (const auto& e : fs::recursive_directory_iterator(partial + "/meta", ec)) {
      if (e.is_regular_file(ec)) bytes += e.file_size(ec);
    }
    if (fs::exists(real, ec)) fs::remove(real, ec);  // the empty directory
    fs::rename(partial, real, ec);
    if (ec) return ErrnoStatus(ec.value(), "cannot rename " + partial + " to " + real.string());
    return bytes;
  };
  auto bytes = copy();
  if (!bytes.ok()) fs::remove_all(partial, ec);  // nothing that looks whole is left
  return bytes;
}

}  // namespace cairn
