#include "safe_fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/page_cache.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn::client {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (fd >= 0) ::close(fd);
  fd = o.fd;
  o.fd = -1;
  return *this;
}

Fd::~Fd() {
  if (fd >= 0) ::close(fd);
}

Fd OpenRegular(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  struct stat st;
  if (fd.fd >= 0 && (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode))) return Fd();
  return fd;
}

absl::Status PreadAll(int fd, char* buf, size_t len, uint64_t off) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = ::pread(fd, buf + got, len - got, off + got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus(errno, "read");
    if (r == 0) return absl::DataLossError("file shrank while being read");
    got += r;
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t w = WritePiece(fd, buf, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "write");
    buf += w;
    len -= w;
  }
  return absl::OkStatus();
}

absl::Status WriteAllAt(int fd, std::string_view data, uint64_t off) {
  while (!data.empty()) {
    ssize_t w = PwritePiece(fd, data.data(), data.size(), static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "write");
    if (w == 0) return absl::InternalError("write: no progress");
    data.remove_prefix(static_cast<size_t>(w));
    off += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

// Opens directory `rel` ('/'-separated, validated) beneath `root_fd`, creating
// missing components when `create`, never following a symlink: a pre-existing
// link in OUT cannot redirect a write outside it.
absl::StatusOr<Fd> OpenDirBeneath(int root_fd, std::string_view rel, bool create) {
  Fd cur(::dup(root_fd));
  if (cur.fd < 0) return ErrnoStatus(errno, "dup");
  if (rel.empty()) return cur;
  for (std::string_view seg : Split(rel, '/')) {
    std::string s(seg);
    if (create && ::mkdirat(cur.fd, s.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, "cannot create directory " + std::string(rel));
    }
    int next = ::openat(cur.fd, s.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return absl::FailedPreconditionError("refusing to write through " + std::string(rel) +
                                             ": a component is a symlink or not a directory");
      }
      return ErrnoStatus(errno, "cannot open directory " + std::string(rel));
    }
    cur = Fd(next);
  }
  return cur;
}

std::pair<std::string, std::string> SplitDirBase(const std::string& path) {
  size_t p = path.rfind('/');
  if (p == std::string::npos) return {"", path};
  return {path.substr(0, p), path.substr(p + 1)};
}

// Writes `data` to `name` in `dir_fd` atomically (temp + fsync + rename).
absl::Status WriteFileAt(int dir_fd, const std::string& name, std::string_view data) {
  std::string tmp = StrCat(".", name, ".tmp.", ::getpid());
  Fd fd(::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fd.fd < 0) return ErrnoStatus(errno, "cannot create " + name);
  absl::Status st = WriteAll(fd.fd, data.data(), data.size());
  if (st.ok() && ::fdatasync(fd.fd) != 0) st = ErrnoStatus(errno, "fdatasync " + name);
  if (st.ok() && ::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) {
    st = ErrnoStatus(errno, "rename " + name);
  }
  if (!st.ok()) ::unlinkat(dir_fd, tmp.c_str(), 0);
  return st;
}

}  // namespace cairn::client
