#include "pull_writer.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cairn/page_cache.h"
#include "cairn/status.h"
#include "safe_fs.h"

namespace cairn::client {

namespace {

constexpr size_t kBlock = 4096;

bool AllZero(const std::string& d) {
  return d.size() >= kBlock && d[0] == 0 && std::memcmp(d.data(), d.data() + 1, d.size() - 1) == 0;
}

// pwritev(2)s all of `iov` (at most kWritePiece bytes in all) at `off`.
absl::Status WriteVAllAt(int fd, std::vector<iovec>* iov, uint64_t off) {
  size_t first = 0;
  while (first < iov->size()) {
    ssize_t w = ::pwritev(fd, iov->data() + first, static_cast<int>(iov->size() - first),
                          static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "write");
    if (w == 0) return absl::InternalError("write: no progress");
    off += static_cast<uint64_t>(w);
    for (size_t left = static_cast<size_t>(w); left > 0;) {
      iovec& v = (*iov)[first];
      const size_t take = std::min(left, v.iov_len);
      v.iov_base = static_cast<char*>(v.iov_base) + take;
      v.iov_len -= take;
      left -= take;
      if (v.iov_len == 0) ++first;
    }
  }
  iov->clear();
  return absl::OkStatus();
}

}  // namespace

absl::Status ChunkWriter::ReadBack(uint64_t off, uint32_t len, std::string* out) const {
  if (off < at_) {
    out->resize(len);
    return PreadAll(fd_, out->data(), len, off);
  }
  out->clear();
  uint64_t start = at_;
  for (const Piece& p : pending_) {
    const uint64_t end = start + p.data.size();
    if (end > off && start < off + len) {
      const uint64_t a = std::max(start, off), b = std::min(end, off + len);
      out->append(p.data, a - start, b - a);
    }
    start = end;
  }
  if (out->size() != len) return absl::InternalError("read back past what was written");
  return absl::OkStatus();
}

void ChunkWriter::Append(std::string&& data) {
  pending_bytes_ += data.size();
  const bool hole = AllZero(data);
  pending_.push_back({std::move(data), hole});
  data.clear();
}

absl::Status ChunkWriter::Flush() {
  std::vector<iovec> iov;
  uint64_t off = at_;       // where the next pending byte goes
  uint64_t write_at = at_;  // where iov goes
  size_t gathered = 0;      // bytes in iov
  auto submit = [&]() -> absl::Status {
    if (gathered > 0) CAIRN_RETURN_IF_ERROR(WriteVAllAt(fd_, &iov, write_at));
    write_at += gathered;
    gathered = 0;
    return absl::OkStatus();
  };
  for (Piece& p : pending_) {
    if (p.hole) {
      CAIRN_RETURN_IF_ERROR(submit());
      off += p.data.size();
      write_at = off;
      continue;
    }
    for (size_t done = 0; done < p.data.size();) {
      const size_t take = std::min(p.data.size() - done, kWritePiece - gathered);
      iov.push_back({p.data.data() + done, take});
      gathered += take;
      done += take;
      if (gathered == kWritePiece) CAIRN_RETURN_IF_ERROR(submit());
    }
    off += p.data.size();
  }
  CAIRN_RETURN_IF_ERROR(submit());
  // A trailing hole still counts in the size, so what was placed reads back.
  const bool trailing_hole = !pending_.empty() && pending_.back().hole;
  at_ = off;
  pending_.clear();
  pending_bytes_ = 0;
  if (trailing_hole && ::ftruncate(fd_, static_cast<off_t>(at_)) != 0) {
    return ErrnoStatus(errno, "ftruncate");
  }
  return absl::OkStatus();
}

}  // namespace cairn::client
