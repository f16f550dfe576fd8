// Filesystem helpers for writing beneath a root without ever following a
// symlink out of it: RAII descriptors, whole reads and writes, directories
// opened component by component with O_NOFOLLOW, atomic small-file writes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace cairn::client {

// RAII file descriptor.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
};

// Opens `path` for reading if it is a regular file (not a link, a FIFO or a
// device: a FIFO would block the open); fd -1 otherwise.
Fd OpenRegular(const std::string& path);

// Reads exactly `len` bytes at `off`; DataLoss on a short file.
absl::Status PreadAll(int fd, char* buf, size_t len, uint64_t off);
absl::Status WriteAll(int fd, const char* buf, size_t len);
// pwrite()s all of `data` at `off`.
absl::Status WriteAllAt(int fd, std::string_view data, uint64_t off);

// Opens directory `rel` ('/'-separated, validated) beneath `root_fd`, creating
// missing components when `create`, never following a symlink: a pre-existing
// link in OUT cannot redirect a write outside it. FailedPrecondition names
// the path when a component is a symlink or not a directory.
absl::StatusOr<Fd> OpenDirBeneath(int root_fd, std::string_view rel, bool create);

// "a/b/c" -> {"a/b", "c"}; "c" -> {"", "c"}.
std::pair<std::string, std::string> SplitDirBase(const std::string& path);

// Writes `data` to `name` in `dir_fd` atomically (temp + fdatasync + rename).
absl::Status WriteFileAt(int dir_fd, const std::string& name, std::string_view data);

}  // namespace cairn::client
