// A file of a pull that a local file already holds whole (pull_internal.h).
#include <fcntl.h>
#include <linux/fs.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "cairn/status.h"
#include "cairn/strings.h"
#include "model_store.h"
#include "pull_internal.h"
#include "safe_fs.h"

namespace cairn::client {

namespace {

// Copies all of `src` (`size` bytes) into the empty `out` in the kernel: a
// clone where the file system shares extents, else copy_file_range. False
// when neither works here (another file system, an old kernel).
bool CopyWhole(PullRun& run, int src, int out, uint64_t size) {
  if (run.try_reflink) {
    if (::ioctl(out, FICLONE, src) == 0) {
      run.bytes_cloned += size;
      return true;
    }
    // (a source on another file system refuses, not the file system)
    if (errno != EIO && errno != ENOSPC && errno != EXDEV) run.try_reflink = false;
  }
  if (!run.try_copy_range) return false;
  loff_t in_off = 0, out_off = 0;
  for (uint64_t left = size; left > 0;) {
    ssize_t got = ::copy_file_range(src, &in_off, out, &out_off, left, 0);
    if (got <= 0) {
      if (got < 0 && errno != EIO && errno != ENOSPC) run.try_copy_range = false;
      return false;
    }
    left -= static_cast<uint64_t>(got);
  }
  return true;
}

}  // namespace

std::string NextPartialName(PullRun& run) {
  unsigned char r[4] = {0, 0, 0, 0};
  if (RAND_bytes(r, sizeof r) != 1) {
    const uint64_t t = static_cast<uint64_t>(::time(nullptr)) ^ reinterpret_cast<uintptr_t>(&run);
    std::memcpy(r, &t, sizeof r);
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
  return StrCat(kPartialPrefix, ::getpid(), "-", run.file_index++, "-", hex);
}

absl::StatusOr<bool> RenamedIsOurs(int dir_fd, const std::string& base, int fd,
                                   const std::string& path) {
  struct stat ours, there;
  if (::fstat(fd, &ours) != 0) return false;
  if (::fstatat(dir_fd, base.c_str(), &there, AT_SYMLINK_NOFOLLOW) == 0 &&
      there.st_dev == ours.st_dev && there.st_ino == ours.st_ino) {
    return true;
  }
  ::unlinkat(dir_fd, base.c_str(), 0);
  return absl::DataLossError(StrCat(path, ": the file renamed into place was not the one cairn ",
                                    "wrote (its temporary file was replaced meanwhile); removed, ",
                                    "pull again"));
}

absl::StatusOr<bool> PlaceWholeFile(PullRun& run, int dir_fd, const std::string& dir_abs,
                                    const std::string& base, const cairn::v1::FileEntry& f,
                                    const cairn::v1::ChunkList& cl) {
  const PullOptions& o = *run.o;
  if (o.paranoid || f.size() == 0) return false;
  ModelStore* store = run.store;
  CAIRN_ASSIGN_OR_RETURN(auto candidates, store->FilesWithRoot(f.root()));
  // Those on the target's file system first (a clone shares their blocks).
  struct stat dir_st;
  if (::fstat(dir_fd, &dir_st) == 0) {
    std::string dev;
    for (int i = 7; i >= 0; --i)
      dev.push_back(static_cast<char>((uint64_t(dir_st.st_dev) >> (8 * i)) & 0xff));
    std::stable_partition(candidates.begin(), candidates.end(),
                          [&](const auto& c) { return c.fingerprint.compare(0, 8, dev) == 0; });
  }
  for (const auto& c : candidates) {
    Fd src = OpenRegular(c.path);
    struct stat st;
    auto unchanged = [&] {
      return src.fd >= 0 && ::fstat(src.fd, &st) == 0 &&
             ModelStore::Fingerprint(st) == c.fingerprint &&
             static_cast<uint64_t>(st.st_size) == f.size();
    };
    if (!unchanged()) continue;
    const std::string tmp = NextPartialName(run);
    const std::string tmp_abs = dir_abs + "/" + tmp;
    Fd out(::openat(dir_fd, tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (out.fd < 0) return ErrnoStatus(errno, "cannot create a temporary file for " + f.path());
    ::flock(out.fd, LOCK_EX | LOCK_NB);  // held while written (RemoveStalePartials)
    // Unchanged before and after: the kernel placed bytes cairn verified.
    if (!CopyWhole(run, src.fd, out.fd, f.size()) || !unchanged() ||
        (o.fsync && ::fdatasync(out.fd) != 0)) {
      ::unlinkat(dir_fd, tmp.c_str(), 0);
      continue;
    }
    std::vector<ChunkAt> at;
    at.reserve(cl.chunks_size());
    uint64_t off = 0;
    for (const auto& ch : cl.chunks()) {
      Digest d;
      std::memcpy(d.data(), ch.digest().data(), 32);
      at.push_back({d, off, ch.length()});
      off += ch.length();
    }
    absl::Status ok = store->AddLocations(tmp_abs, at);
    if (!ok.ok() || ::renameat(dir_fd, tmp.c_str(), dir_fd, base.c_str()) != 0) {
      if (ok.ok()) ok = ErrnoStatus(errno, "cannot rename into place " + f.path());
      ::unlinkat(dir_fd, tmp.c_str(), 0);
      return ok;
    }
    const std::string final_abs = dir_abs + "/" + base;
    CAIRN_ASSIGN_OR_RETURN(bool good, RenamedIsOurs(dir_fd, base, out.fd, f.path()));
    struct stat done;
    good = good && ::fstat(out.fd, &done) == 0 && ModelStore::FingerprintsHold(out.fd);
    CAIRN_RETURN_IF_ERROR(store->RenameFile(tmp_abs, final_abs, good ? &done : nullptr, f.root()));
    PullResult& res = *run.res;
    res.chunks_local += cl.chunks_size();
    res.bytes_local += f.size();
    res.bytes_local_unread += f.size();
    res.files++;
    run.progress->Add(f.size());
    return true;
  }
  return false;
}

}  // namespace cairn::client
