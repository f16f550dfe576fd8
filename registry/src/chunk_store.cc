// What every chunk store shares: the default Check, List and Backup, and the
// file copy that backups use.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "cairn/status.h"
#include "cairn/store.h"
#include "copy_file.h"

namespace cairn {

absl::StatusOr<uint64_t> CopyFile(const std::string& from, const std::string& to,
                                  Cancellation* cancel) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0 && errno == ENOENT) return absl::NotFoundError(from);
  if (in < 0) return ErrnoStatus(errno, "cannot open " + from);
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return ErrnoStatus(err, "cannot create " + to);
  }
  struct stat st;
  absl::Status status;
  uint64_t done = 0;
  if (::fstat(in, &st) != 0) status = ErrnoStatus(errno, "cannot stat " + from);
  const uint64_t size = status.ok() ? static_cast<uint64_t>(st.st_size) : 0;
  std::string buf;
  while (status.ok() && done < size) {
    loff_t off_in = static_cast<loff_t>(done), off_out = static_cast<loff_t>(done);
    if (cancel != nullptr && cancel->cancelled()) {
      status = absl::CancelledError("copy of " + from + " stopped");
      break;
    }
    // 64 MiB at a time, so a stop is heard.
    ssize_t n =
        ::copy_file_range(in, &off_in, out, &off_out, std::min<uint64_t>(size - done, 64 << 20), 0);
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
      buf.resize(1 << 20);  // no kernel copy here: read and write
      n = ::pread(in, buf.data(), std::min<uint64_t>(buf.size(), size - done), done);
      if (n > 0 && ::pwrite(out, buf.data(), n, done) != n) n = -1;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status = ErrnoStatus(errno, "cannot copy " + from + " to " + to);
    if (n == 0) break;  // cut short meanwhile: what is there is copied
    if (n > 0) done += n;
  }
  if (status.ok() && ::fdatasync(out) != 0) status = ErrnoStatus(errno, "cannot sync " + to);
  ::close(in);
  ::close(out);
  CAIRN_RETURN_IF_ERROR(status);
  return done;
}

absl::StatusOr<uint32_t> ChunkStore::Check(const Digest& digest) {
  std::string bytes;
  CAIRN_RETURN_IF_ERROR(Get(digest, &bytes));
  if (Sha256Of(bytes) != digest) {
    return absl::DataLossError("stored chunk " + DigestName(digest) + " is corrupt");
  }
  return static_cast<uint32_t>(bytes.size());
}

absl::StatusOr<ChunkExtent> ChunkStore::Locate(const Digest&) {
  return absl::UnimplementedError("this chunk store cannot locate chunk bytes in files");
}

absl::StatusOr<uint64_t> ChunkStore::Backup(const std::string&, Cancellation*) {
  return absl::UnimplementedError("this chunk store cannot back itself up");
}

absl::Status ChunkStore::List(const Digest*, size_t, std::vector<Digest>*) {
  return absl::UnimplementedError("this chunk store cannot list its chunks");
}

absl::Status ChunkStore::ListStored(const Digest*, size_t, std::vector<StoredChunk>*) {
  return absl::UnimplementedError("this chunk store cannot list its chunks");
}

absl::StatusOr<uint64_t> ChunkStore::Remove(const std::vector<Digest>&) {
  return absl::UnimplementedError("this chunk store cannot remove chunks");
}

absl::StatusOr<CompactReport> ChunkStore::Compact(double, Cancellation*) {
  return absl::UnimplementedError("this chunk store cannot compact");
}

absl::Status ChunkStore::AnswerCollection(const NeededChunks&) { return absl::OkStatus(); }

}  // namespace cairn
