// Assembling one file of a pull from verified chunks (pull_internal.h).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "pull_internal.h"
#include "safe_fs.h"

namespace cairn::client {

using cairn::v1::ChunkList;

namespace {

constexpr uint64_t kBlock = 4096;
constexpr size_t kWriteBatch = 4 << 20;
// Shorter runs of local chunks are copied: a clone saves little there.
constexpr uint64_t kMinClone = 256 << 10;

bool AllZero(const std::string& d) {
  return d.size() >= kBlock && d[0] == 0 && std::memcmp(d.data(), d.data() + 1, d.size() - 1) == 0;
}

Digest DigestOf(const cairn::v1::ChunkRef& c) {
  Digest d;
  std::memcpy(d.data(), c.digest().data(), 32);
  return d;
}

// Whether `fd` (of the signed size) already holds every chunk of `cl`, each
// re-hashed: a pull of a release already in place rewrites nothing.
bool HoldsChunks(int fd, const ChunkList& cl) {
  std::string buf;
  uint64_t off = 0;
  for (const auto& c : cl.chunks()) {
    buf.resize(c.length());
    if (!PreadAll(fd, buf.data(), buf.size(), off).ok() || Sha256Of(buf) != DigestOf(c)) {
      return false;
    }
    off += c.length();
  }
  return true;
}

// Buffered positioned writes; all-zero chunks become holes (as cp
// --sparse=auto makes them), so the file's size is set at the end.
class Writer {
 public:
  explicit Writer(int fd) : fd_(fd) { buf_.reserve(kWriteBatch); }
  uint64_t pos() const { return at_ + buf_.size(); }
  // The bytes of [off, off+len) written so far, flushed or not.
  absl::Status ReadBack(uint64_t off, uint32_t len, std::string* out) {
    if (off >= at_) {
      out->assign(buf_, off - at_, len);
      return absl::OkStatus();
    }
    out->resize(len);
    return PreadAll(fd_, out->data(), len, off);
  }
  void Append(const std::string& data) {
    if (AllZero(data)) holes_.emplace_back(buf_.size(), data.size());
    buf_.append(data);
  }
  bool full() const { return buf_.size() >= kWriteBatch; }
  absl::Status Flush() {
    size_t pos = 0;
    holes_.emplace_back(buf_.size(), 0);  // the end
    for (const auto& [at, len] : holes_) {
      if (at > pos) {
        CAIRN_RETURN_IF_ERROR(
            WriteAllAt(fd_, std::string_view(buf_).substr(pos, at - pos), at_ + pos));
      }
      pos = at + len;
    }
    // A trailing hole still counts in the size, so what was placed reads back.
    const bool trailing_hole =
        holes_.size() > 1 &&
        holes_[holes_.size() - 2].first + holes_[holes_.size() - 2].second == buf_.size();
    holes_.clear();
    at_ += buf_.size();
    buf_.clear();
    if (trailing_hole && ::ftruncate(fd_, static_cast<off_t>(at_)) != 0) {
      return ErrnoStatus(errno, "ftruncate");
    }
    return absl::OkStatus();
  }
  // After bytes were placed at [pos(), to) by other means (a clone).
  void Skip(uint64_t to) { at_ = to; }
  int fd() const { return fd_; }

 private:
  int fd_;
  uint64_t at_ = 0;
  std::string buf_;
  std::vector<std::pair<size_t, size_t>> holes_;
};

}  // namespace

absl::Status AssembleFile(PullRun& run, int root_fd, const std::string& root_abs,
                          const cairn::v1::FileEntry& f, const ChunkList& cl) {
  const PullOptions& o = *run.o;
  PullResult& res = *run.res;
  ModelStore* store = run.store;
  auto [dir, base] = SplitDirBase(f.path());
  CAIRN_ASSIGN_OR_RETURN(Fd dfd, OpenDirBeneath(root_fd, dir, /*create=*/true));
  const std::string dir_abs = dir.empty() ? root_abs : root_abs + "/" + dir;
  const std::string final_abs = dir_abs + "/" + base;
  res.chunks_total += cl.chunks_size();

  // Already in place (a second pull of the same release): re-indexed only.
  {
    Fd have(::openat(dfd.fd, base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (have.fd >= 0 && ::fstat(have.fd, &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<uint64_t>(st.st_size) == f.size() && HoldsChunks(have.fd, cl)) {
      std::vector<ChunkAt> at;
      uint64_t off = 0;
      for (const auto& c : cl.chunks()) {
        at.push_back({DigestOf(c), off, c.length()});
        off += c.length();
      }
      CAIRN_RETURN_IF_ERROR(store->AddLocations(final_abs, at));
      res.chunks_local += cl.chunks_size();
      res.bytes_local += f.size();
      run.progress->Add(f.size());
      return absl::OkStatus();
    }
  }

  // Which chunks come from the nodes: those no local file holds.
  std::vector<ChunkWant> wanted;
  absl::flat_hash_set<Digest, DigestHash> to_fetch;
  uint64_t missing = 0;
  for (const auto& c : cl.chunks()) {
    CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
    if (to_fetch.contains(d)) continue;
    CAIRN_ASSIGN_OR_RETURN(bool local, store->Has(d));
    if (local) continue;
    if (o.offline) {
      ++missing;
      continue;
    }
    to_fetch.insert(d);
    wanted.push_back({d, c.length()});
  }
  if (missing > 0) {
    return absl::FailedPreconditionError(
        StrCat(missing, " chunk(s) of ", f.path(),
               " are in no local file; run without --offline to fetch them"));
  }

  std::string tmp = StrCat(kPartialPrefix, ::getpid(), "-", run.file_index++);
  const std::string tmp_abs = dir_abs + "/" + tmp;
  Fd out(::openat(dfd.fd, tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (out.fd < 0) return ErrnoStatus(errno, "cannot create a temporary file for " + f.path());
  std::vector<ChunkAt> placed;  // first occurrences, in file order
  auto fail = [&](absl::Status st) {
    ::unlinkat(dfd.fd, tmp.c_str(), 0);
    std::vector<Digest> ds;
    for (const auto& p : placed) ds.push_back(p.digest);
    (void)store->DropLocations(tmp_abs, ds);
    return st;
  };
  if (!wanted.empty() && !run.first_ask) run.first_ask = std::chrono::steady_clock::now();
  if (run.fetcher) run.fetcher->Add(wanted);

  // A chunk whose local copy no longer verifies: fetched after all.
  auto refetch = [&](const Digest& d, uint32_t len, std::string* data) -> absl::Status {
    if (o.offline) {
      return absl::DataLossError(StrCat("chunk ", DigestName(d), " of ", f.path(),
                                        " changed in every local file; run without --offline"));
    }
    run.notice(StrCat("a local copy of a chunk of ", f.path(), " changed; fetching it again"));
    Fetcher again(run.sources, nullptr, run.fetch_options);
    again.Add({{d, len}});
    CAIRN_RETURN_IF_ERROR(again.Next(data));
    res.chunks_fetched++;
    res.bytes_fetched += data->size();
    return absl::OkStatus();
  };
  // A local chunk's verified bytes.
  auto local_bytes = [&](const Digest& d, uint32_t len, std::string* data) -> absl::Status {
    absl::Status st = store->Read(d, data);
    if (absl::IsNotFound(st)) return refetch(d, len, data);
    if (st.ok()) {
      res.chunks_local++;
      res.bytes_local += data->size();
    }
    return st;
  };

  Writer w(out.fd);
  size_t indexed = 0;  // placed[0, indexed) are in the store
  auto index_placed = [&]() -> absl::Status {
    if (indexed == placed.size()) return absl::OkStatus();
    std::vector<ChunkAt> batch(placed.begin() + indexed, placed.end());
    indexed = placed.size();
    return store->AddLocations(tmp_abs, batch);
  };
  absl::flat_hash_map<Digest, std::pair<uint64_t, uint32_t>, DigestHash> in_file;
  std::string data;
  int no_run_until = 0;
  const int n = cl.chunks_size();
  for (int i = 0; i < n; ++i) {
    if (o.cancel && o.cancel->cancelled()) {
      // What was written stays (indexed) for the next run to copy.
      (void)w.Flush();
      (void)index_placed();
      return absl::CancelledError("interrupted");
    }
    const auto& c = cl.chunks(i);
    Digest d = DigestOf(c);
    const uint64_t at = w.pos();
    if (auto it = in_file.find(d); it != in_file.end()) {  // again in this file
      absl::Status st = w.ReadBack(it->second.first, it->second.second, &data);
      if (!st.ok()) return fail(Annotate(st, "reading back " + f.path()));
      res.chunks_local++;
      res.bytes_local += data.size();
    } else if (to_fetch.erase(d) > 0) {
      absl::Status st = run.fetcher->Next(&data);  // verified by the fetcher
      if (!st.ok()) return fail(Annotate(st, "fetching " + f.path() + "; nothing written"));
      run.last_chunk = std::chrono::steady_clock::now();
      res.chunks_fetched++;
      res.bytes_fetched += data.size();
    } else {
      // A run of local chunks that one file holds back to back, at an
      // offset congruent to ours modulo the block size, is cloned. A run
      // looked at and not cloned is copied chunk by chunk without looking
      // again (no_run_until), so a file costs one pass of lookups.
      uint64_t run_len = 0;
      int run_end = i;
      std::string src_path;
      uint64_t src_off = 0;
      if (run.try_reflink && i >= no_run_until) {
        auto locs = store->Find(d);
        if (locs.ok()) {
          for (const auto& l : *locs) {
            if (l.offset % kBlock != at % kBlock) continue;
            src_path = l.path;
            src_off = l.offset;
            run_len = c.length();
            run_end = i + 1;
            break;
          }
        }
        while (run_len > 0 && run_end < n) {
          const auto& nc = cl.chunks(run_end);
          Digest nd = DigestOf(nc);
          if (to_fetch.contains(nd) || in_file.contains(nd)) break;
          auto nl = store->Find(nd);
          if (!nl.ok()) break;
          bool next = false;
          for (const auto& l : *nl) next |= l.path == src_path && l.offset == src_off + run_len;
          if (!next) break;
          run_len += nc.length();
          ++run_end;
        }
        no_run_until = run_end;
      }
      const uint64_t a = (at + kBlock - 1) / kBlock * kBlock;
      const uint64_t b = (at + run_len) / kBlock * kBlock;
      if (run_len > 0 && b > a && b - a >= kMinClone) {
        absl::Status st = w.Flush();
        if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
        Fd src(::open(src_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        file_clone_range fcr{};
        fcr.src_fd = src.fd;
        fcr.src_offset = src_off + (a - at);
        fcr.src_length = b - a;
        fcr.dest_offset = a;
        if (src.fd >= 0 && ::ioctl(out.fd, FICLONERANGE, &fcr) == 0) {
          // Each chunk is verified where it now lies; the edges outside
          // the cloned blocks, and any chunk that does not verify, are
          // written from verified bytes.
          uint64_t off = at;
          for (int k = i; k < run_end; ++k) {
            const auto& kc = cl.chunks(k);
            Digest kd = DigestOf(kc);
            bool ok = false;
            if (off >= a && off + kc.length() <= b) {
              data.resize(kc.length());
              ok = PreadAll(out.fd, data.data(), data.size(), off).ok() && Sha256Of(data) == kd;
              if (ok) {
                res.chunks_local++;
                res.bytes_local += data.size();
              }
            }
            if (!ok) {
              st = local_bytes(kd, kc.length(), &data);
              if (st.ok()) st = WriteAllAt(out.fd, data, off);
              if (!st.ok()) return fail(Annotate(st, "copying " + f.path()));
            }
            if (!in_file.contains(kd)) {
              in_file[kd] = {off, kc.length()};
              placed.push_back({kd, off, kc.length()});
            }
            run.progress->Add(kc.length());
            off += kc.length();
          }
          run.bytes_cloned += b - a;
          w.Skip(off);
          i = run_end - 1;
          CAIRN_RETURN_IF_ERROR(index_placed());
          continue;
        }
        if (src.fd >= 0 && errno != EIO && errno != ENOSPC) run.try_reflink = false;
      }
      absl::Status st = local_bytes(d, c.length(), &data);
      if (!st.ok()) return fail(Annotate(st, "copying " + f.path()));
    }
    if (!in_file.contains(d)) {
      in_file[d] = {at, c.length()};
      placed.push_back({d, at, c.length()});
    }
    w.Append(data);
    run.progress->Add(data.size());
    if (w.full()) {
      absl::Status st = w.Flush();
      if (st.ok()) st = index_placed();
      if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
    }
  }
  absl::Status st = w.Flush();
  if (st.ok() && ::ftruncate(out.fd, static_cast<off_t>(f.size())) != 0) {
    st = ErrnoStatus(errno, "ftruncate");  // a trailing hole still sets the size
  }
  if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
  if (w.pos() != f.size()) {
    return fail(absl::DataLossError(StrCat("assembled ", f.path(), " has ", w.pos(),
                                           " bytes, signed ", f.size(), "; nothing kept")));
  }
  if (o.paranoid) {
    Sha256 sha;
    std::string buf(4 << 20, '\0');
    for (uint64_t off = 0; off < f.size(); off += buf.size()) {
      size_t len = std::min<uint64_t>(buf.size(), f.size() - off);
      st = PreadAll(out.fd, buf.data(), len, off);
      if (!st.ok()) return fail(Annotate(st, "re-reading " + f.path()));
      sha.Update(buf.data(), len);
    }
    if (DigestName(sha.Finish()) != f.sha256()) {
      return fail(absl::DataLossError("assembled " + f.path() +
                                      " does not match its signed SHA-256; nothing kept"));
    }
  }
  if (o.fsync && ::fdatasync(out.fd) != 0) return fail(ErrnoStatus(errno, "fdatasync " + f.path()));
  if (::renameat(dfd.fd, tmp.c_str(), dfd.fd, base.c_str()) != 0) {
    return fail(ErrnoStatus(errno, "cannot rename into place " + f.path()));
  }
  std::vector<Digest> ds;
  for (const auto& p : placed) ds.push_back(p.digest);
  CAIRN_RETURN_IF_ERROR(store->AddLocations(final_abs, placed));
  CAIRN_RETURN_IF_ERROR(store->DropLocations(tmp_abs, ds));
  res.files++;
  return absl::OkStatus();
}

}  // namespace cairn::client
