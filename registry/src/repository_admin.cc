// A repository's administration: who holds its directory, and backups.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

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

absl::StatusOr<uint64_t> Repository::Backup(const std::string& dest) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dest, ec) && !fs::is_empty(dest, ec)) {
    return absl::FailedPreconditionError(
        StrCat("backup target ", dest, " exists and is not empty: name a new directory"));
  }
  fs::create_directories(dest, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot create " + dest);
  // The metadata first: chunks are never deleted, so the chunk store copied
  // after it holds every chunk its releases name.
  CAIRN_RETURN_IF_ERROR(meta_->Checkpoint(dest + "/meta"));
  CAIRN_ASSIGN_OR_RETURN(uint64_t bytes, chunks_->Backup(dest + "/chunks"));
  for (const auto& e : fs::recursive_directory_iterator(dest + "/meta", ec)) {
    if (e.is_regular_file(ec)) bytes += e.file_size(ec);
  }
  return bytes;
}

}  // namespace cairn
