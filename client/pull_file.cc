// Assembling one file of a pull from verified chunks (pull_internal.h).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "model_store.h"
#include "model_store_keys.h"
#include "pull_internal.h"
#include "pull_writer.h"
#include "safe_fs.h"

namespace cairn::client {

using cairn::v1::ChunkList;

namespace {

constexpr uint64_t kBlock = 4096;
// Shorter runs of local chunks are copied through user space (a kernel copy
// saves little there); with reflinks, any run holding two whole blocks is
// cloned, since a copied block costs its disk space again.
constexpr uint64_t kMinClone = 256 << 10;
constexpr uint64_t kMinReflink = 2 * kBlock;
constexpr uint64_t kReadBatch = 8 << 20;

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

// One local chunk to read: where it may be, and what came of it.
struct LocalRead {
  Digest digest{};
  uint32_t length = 0;
  const std::vector<ModelStore::Location>* where = nullptr;
  std::string data;
  bool ok = false;
  std::vector<const ModelStore::Location*> failed;  // read, but not these bytes
};

// Reads and verifies `batch` from its local files, half on another thread.
// A chunk no location verifies keeps ok = false (the caller falls back).
void ReadLocal(std::vector<LocalRead>* batch) {
  auto work = [batch](size_t first) {
    absl::flat_hash_map<std::string, Fd> fds;
    for (size_t k = first; k < batch->size(); k += 2) {
      LocalRead& job = (*batch)[k];
      for (const auto& loc : *job.where) {
        Fd& fd = fds[loc.path];
        if (fd.fd < 0) fd = OpenRegular(loc.path);
        job.data.resize(job.length);
        if (fd.fd >= 0 && loc.length == job.length &&
            PreadAll(fd.fd, job.data.data(), job.length, loc.offset).ok() &&
            Sha256Of(job.data) == job.digest) {
          job.ok = true;
          break;
        }
        job.failed.push_back(&loc);
      }
    }
  };
  if (batch->size() < 2) return work(0);
  std::thread other(work, 1);
  work(0);
  other.join();
}

// Writes a chunk's verified `data` at `off` of `fd`, but not the part inside
// the cloned blocks [a, b) when that part already holds these bytes: a
// chunk at a clone's edge rewritten whole would unshare the blocks the clone
// just shared (a derivative's every changed region cost two chunks more).
absl::Status WriteAroundClone(int fd, const std::string& data, uint64_t off, uint64_t a,
                              uint64_t b) {
  const uint64_t end = off + data.size();
  const uint64_t lo = std::max(off, a), hi = std::min(end, b);
  if (lo >= hi) return WriteAllAt(fd, data, off);
  std::string inside(hi - lo, '\0');
  if (!PreadAll(fd, inside.data(), inside.size(), lo).ok() ||
      std::memcmp(inside.data(), data.data() + (lo - off), inside.size()) != 0) {
    return WriteAllAt(fd, data, off);
  }
  if (lo > off) CAIRN_RETURN_IF_ERROR(WriteAllAt(fd, std::string_view(data.data(), lo - off), off));
  if (end > hi) {
    CAIRN_RETURN_IF_ERROR(WriteAllAt(fd, std::string_view(data.data() + (hi - off), end - hi), hi));
  }
  return absl::OkStatus();
}

// Verifies the chunks `batch` placed at `offs` in `fd`, those inside
// [a, b) only (the rest stay ok = false), half on another thread.
void VerifyInPlace(int fd, const std::vector<uint64_t>& offs, uint64_t a, uint64_t b,
                   std::vector<LocalRead>* batch) {
  auto work = [&](size_t first) {
    std::string buf;  // one per thread: a run may be a whole file
    for (size_t k = first; k < batch->size(); k += 2) {
      LocalRead& job = (*batch)[k];
      if (offs[k] < a || offs[k] + job.length > b) continue;
      buf.resize(job.length);
      job.ok = PreadAll(fd, buf.data(), job.length, offs[k]).ok() && Sha256Of(buf) == job.digest;
    }
  };
  if (batch->size() < 2) return work(0);
  std::thread other(work, 1);
  work(0);
  other.join();
}

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
  // Its chunks are re-hashed unless cairn wrote or verified all of it and
  // its fingerprint has not changed since (nor does --paranoid ask).
  {
    Fd have(::openat(dfd.fd, base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    struct stat st;
    auto unchanged = [&] {  // (and recorded as holding this very file)
      auto rec = store->Known(final_abs);
      return !o.paranoid && rec.ok() && !rec->fingerprint.empty() &&
             rec->fingerprint == ModelStore::Fingerprint(st) && rec->root == f.root();
    };
    bool known = false;
    if (have.fd >= 0 && ::fstat(have.fd, &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<uint64_t>(st.st_size) == f.size() &&
        ((known = unchanged()) || HoldsChunks(have.fd, cl))) {
      if (!known) {  // (a known file's locations are in the index already)
        // Whatever was recorded of this path may describe other contents: a
        // new id, with entries for these.
        CAIRN_RETURN_IF_ERROR(store->ForgetPath(final_abs));
        std::vector<ChunkAt> at;
        uint64_t off = 0;
        for (const auto& c : cl.chunks()) {
          at.push_back({DigestOf(c), off, c.length()});
          off += c.length();
        }
        CAIRN_RETURN_IF_ERROR(store->AddLocations(final_abs, at));
        if (ModelStore::FingerprintsHold(have.fd)) {
          CAIRN_RETURN_IF_ERROR(store->NoteKnownGood(final_abs, st, f.root()));
        }
      }
      res.chunks_local += cl.chunks_size();
      res.bytes_local += f.size();
      if (known) res.bytes_local_unread += f.size();
      res.files++;
      run.progress->Add(f.size());
      return absl::OkStatus();
    }
  }

  // A local file holding all of it, unchanged: one copy or clone.
  CAIRN_ASSIGN_OR_RETURN(bool whole, PlaceWholeFile(run, dfd.fd, dir_abs, base, f, cl));
  if (whole) return absl::OkStatus();

  // Which chunks come from the nodes: those no local file holds.
  std::vector<ChunkWant> wanted;
  absl::flat_hash_set<Digest, DigestHash> to_fetch;
  // Where local files hold the others (looked up once).
  absl::flat_hash_map<Digest, std::vector<ModelStore::Location>, DigestHash> local;
  uint64_t missing = 0;
  for (const auto& c : cl.chunks()) {
    CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
    if (to_fetch.contains(d) || local.contains(d)) continue;
    CAIRN_ASSIGN_OR_RETURN(auto locs, store->Find(d));
    if (!locs.empty()) {
      local[d] = std::move(locs);
      continue;
    }
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

  std::string tmp = NextPartialName(run);
  const std::string tmp_abs = dir_abs + "/" + tmp;
  Fd out(::openat(dfd.fd, tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (out.fd < 0) return ErrnoStatus(errno, "cannot create a temporary file for " + f.path());
  ::flock(out.fd, LOCK_EX | LOCK_NB);  // held while written (RemoveStalePartials)
  std::vector<ChunkAt> placed;         // first occurrences, in file order
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
    Fetcher again(run.sources, run.fetch_options);
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

  ChunkWriter w(out.fd);
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
  std::vector<LocalRead> batch, check;  // reused, with their buffers
  struct stat out_st;
  const uint64_t out_dev = ::fstat(out.fd, &out_st) == 0 ? static_cast<uint64_t>(out_st.st_dev) : 0;
  // Places a chunk's verified bytes next in the file (moved out of `bytes`).
  auto emit = [&](const Digest& d, std::string& bytes) -> absl::Status {
    const uint64_t at = w.pos();
    const auto len = static_cast<uint32_t>(bytes.size());
    if (!in_file.contains(d)) {
      in_file[d] = {at, len};
      placed.push_back({d, at, len});
    }
    w.Append(std::move(bytes));
    run.progress->Add(len);
    if (!w.full()) return absl::OkStatus();
    CAIRN_RETURN_IF_ERROR(w.Flush());
    return index_placed();
  };
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
      if (absl::IsCancelled(st) && o.cancel && o.cancel->cancelled()) {
        // Interrupted: what was written stays (indexed) for the next run.
        (void)w.Flush();
        (void)index_placed();
        return st;
      }
      if (!st.ok()) {
        // The nodes failed (gone, dropped): what arrived stays in the
        // temporary file, indexed, so the same command later fetches only
        // the rest; the file itself never appears under its name unless whole.
        if (w.Flush().ok() && index_placed().ok() && !placed.empty()) {
          return Annotate(st, StrCat("fetching ", f.path(), "; the ", placed.size(),
                                     " chunks that arrived are kept, and the same command "
                                     "resumes from them"));
        }
        return fail(Annotate(st, "fetching " + f.path() + "; nothing written"));
      }
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
      std::string src_path, src_id;
      uint64_t src_off = 0;
      if ((run.try_reflink || run.try_copy_range) && i >= no_run_until) {
        if (auto locs = local.find(d); locs != local.end()) {
          // Of the files holding this chunk, the one that holds the longest
          // run of what follows, back to back (a clone also needs offsets
          // congruent modulo the block size: preferred while clones work).
          int best_rank = -1;
          for (const auto& l : locs->second) {
            uint64_t len = c.length();
            int end = i + 1;
            while (end < n) {
              const auto& nc = cl.chunks(end);
              Digest nd = DigestOf(nc);
              auto nl = local.find(nd);
              if (nl == local.end() || in_file.contains(nd)) break;
              bool next = false;
              for (const auto& m : nl->second)
                next |= m.path == l.path && m.offset == l.offset + len;
              if (!next) break;
              len += nc.length();
              ++end;
            }
            // A clone also needs the source on this file system: one known
            // to be (by its fingerprint's device) is preferred.
            const bool congruent = l.offset % kBlock == at % kBlock;
            const bool here =
                l.fingerprint.size() >= 8 && store_keys::GetBE(l.fingerprint, 0, 8) == out_dev;
            const int rank = run.try_reflink && congruent ? (here ? 2 : 1) : 0;
            if (rank > best_rank || (rank == best_rank && len > run_len)) {
              best_rank = rank;
              src_path = l.path;
              src_id = l.file_id;
              src_off = l.offset;
              run_len = len;
              run_end = end;
            }
          }
        }
        no_run_until = run_end;
      }
      if (run_len >= (run.try_reflink ? kMinReflink : kMinClone)) {
        // The run is placed by the kernel (a clone of the whole blocks, or a
        // page-cache copy), then every chunk is read back where it now lies
        // and verified; the edges a clone leaves, and any chunk that does
        // not verify, are written from verified bytes.
        absl::Status st = w.Flush();
        if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
        std::vector<uint64_t> offs;
        Fd src = OpenRegular(src_path);
        // A source cairn wrote or verified whole, unchanged since (same
        // fingerprint before and after the copy), is not read back: the
        // kernel placed the bytes that were verified (docs/security.md).
        auto unchanged = [&] {
          if (o.paranoid || src_id.empty() || src.fd < 0) return false;
          // (the store's record now: a chunk of this file that failed a
          // read-back earlier in this pull has cleared it)
          auto fp = store->FingerprintOf(src_id);
          struct stat st;
          return fp.ok() && !fp->empty() && ::fstat(src.fd, &st) == 0 &&
                 ModelStore::Fingerprint(st) == *fp;
        };
        const bool trusted = unchanged();
        auto mark_placed = [&](uint64_t from, uint64_t to) {
          for (size_t k = 0; k < check.size(); ++k) {
            check[k].ok = offs[k] >= from && offs[k] + check[k].length <= to;
            if (check[k].ok) res.bytes_local_unread += check[k].length;
          }
        };
        uint64_t a = (at + kBlock - 1) / kBlock * kBlock;
        uint64_t b = (at + run_len) / kBlock * kBlock;
        bool placed_run = false, by_clone = false;
        if (src.fd >= 0 && run.try_reflink && (src_off - at) % kBlock == 0 && b > a) {
          file_clone_range fcr{};
          fcr.src_fd = src.fd;
          fcr.src_offset = src_off + (a - at);
          fcr.src_length = b - a;
          fcr.dest_offset = a;
          placed_run = by_clone = ::ioctl(out.fd, FICLONERANGE, &fcr) == 0;
          if (placed_run) run.bytes_cloned += b - a;
          // (another file system refuses one source, not every clone)
          if (!placed_run && errno != EIO && errno != ENOSPC && errno != EXDEV) {
            run.try_reflink = false;
          }
        }
        uint64_t off = at;
        size_t count = 0;
        for (int k = i; k < run_end; ++k, ++count) {
          offs.push_back(off);
          if (check.size() <= count) check.emplace_back();
          check[count].digest = DigestOf(cl.chunks(k));
          check[count].length = cl.chunks(k).length();
          check[count].ok = false;
          off += cl.chunks(k).length();
        }
        check.resize(count);
        if (placed_run) {
          if (trusted && unchanged()) {
            mark_placed(a, b);
          } else {
            VerifyInPlace(out.fd, offs, a, b, &check);
          }
        } else if (src.fd >= 0 && run.try_copy_range) {
          // A page-cache copy in 32 MiB steps, each verified on another
          // thread while the next is copied (unless the source is trusted).
          std::mutex mu;
          std::condition_variable cv;
          bool copy_done = false;
          uint64_t copied_to = at;
          std::thread verifier;
          if (!trusted)
            verifier = std::thread([&] {
              std::string buf;
              for (size_t k = 0; k < check.size(); ++k) {
                {
                  std::unique_lock<std::mutex> l(mu);
                  cv.wait(l, [&] { return copy_done || copied_to >= offs[k] + check[k].length; });
                  if (copied_to < offs[k] + check[k].length) break;  // the copy stopped short
                }
                buf.resize(check[k].length);
                check[k].ok = PreadAll(out.fd, buf.data(), buf.size(), offs[k]).ok() &&
                              Sha256Of(buf) == check[k].digest;
              }
            });
          loff_t in_off = static_cast<loff_t>(src_off), out_off = static_cast<loff_t>(at);
          for (uint64_t left = run_len; left > 0;) {
            ssize_t got = ::copy_file_range(src.fd, &in_off, out.fd, &out_off,
                                            std::min<uint64_t>(left, 32 << 20), 0);
            if (got <= 0) {
              if (got < 0 && errno != EIO && errno != ENOSPC) run.try_copy_range = false;
              break;
            }
            left -= static_cast<uint64_t>(got);
            std::lock_guard<std::mutex> l(mu);
            copied_to = static_cast<uint64_t>(out_off);
            cv.notify_all();
          }
          {
            std::lock_guard<std::mutex> l(mu);
            copy_done = true;
            cv.notify_all();
          }
          if (verifier.joinable()) {
            verifier.join();
          } else if (unchanged()) {
            mark_placed(at, copied_to);
          } else {
            VerifyInPlace(out.fd, offs, at, copied_to, &check);
          }
          // What was not copied is written from verified bytes below.
          placed_run = copied_to > at;
        }
        if (placed_run) {
          for (size_t k = 0; k < check.size(); ++k) {
            LocalRead& job = check[k];
            if (job.ok) {
              res.chunks_local++;
              res.bytes_local += job.length;
            } else {
              st = local_bytes(job.digest, job.length, &data);
              if (st.ok()) {
                st = by_clone ? WriteAroundClone(out.fd, data, offs[k], a, b)
                              : WriteAllAt(out.fd, data, offs[k]);
              }
              if (!st.ok()) return fail(Annotate(st, "copying " + f.path()));
            }
            if (!in_file.contains(job.digest)) {
              in_file[job.digest] = {offs[k], job.length};
              placed.push_back({job.digest, offs[k], job.length});
            }
            run.progress->Add(job.length);
          }
          w.Skip(off);
          i = run_end - 1;
          CAIRN_RETURN_IF_ERROR(index_placed());
          continue;
        }
      }
      // A batch of local chunks (up to 8 MiB, back to back in this file)
      // is read and verified on two threads, then written in order.
      // (batch and its buffers are reused: no allocation per batch.)
      absl::flat_hash_set<Digest, DigestHash> in_batch;
      uint64_t batch_bytes = 0;
      size_t count = 0;
      for (int k = i; k < n && batch_bytes < kReadBatch; ++k) {
        Digest kd = DigestOf(cl.chunks(k));
        auto where = local.find(kd);
        if (where == local.end() || in_file.contains(kd) || !in_batch.insert(kd).second) break;
        if (batch.size() <= count) batch.emplace_back();
        LocalRead& job = batch[count++];
        job.digest = kd;
        job.length = cl.chunks(k).length();
        job.where = &where->second;
        job.ok = false;
        batch_bytes += job.length;
      }
      batch.resize(count);
      for (auto& job : batch) job.failed.clear();
      ReadLocal(&batch);
      // A location that did not hold its chunk: forgotten, and its file is
      // not trusted by fingerprint again.
      for (const auto& job : batch) {
        for (const auto* loc : job.failed) {
          CAIRN_RETURN_IF_ERROR(store->ForgetLocation(*loc, job.digest));
        }
      }
      for (auto& job : batch) {
        if (job.ok) {
          res.chunks_local++;
          res.bytes_local += job.data.size();
        } else {
          absl::Status st = local_bytes(job.digest, job.length, &job.data);
          if (!st.ok()) return fail(Annotate(st, "copying " + f.path()));
        }
        absl::Status st = emit(job.digest, job.data);
        if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
      }
      i += static_cast<int>(batch.size()) - 1;
      continue;
    }
    absl::Status st = emit(d, data);
    if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
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
  st = index_placed();  // all of them, under the temporary name until renamed
  if (!st.ok()) return fail(st);
  if (::renameat(dfd.fd, tmp.c_str(), dfd.fd, base.c_str()) != 0) {
    return fail(ErrnoStatus(errno, "cannot rename into place " + f.path()));
  }
  // Every byte of it was verified or placed from a verified, unchanged file:
  // its fingerprint now lets a later pull take its chunks without a re-read.
  CAIRN_ASSIGN_OR_RETURN(bool good, RenamedIsOurs(dfd.fd, base, out.fd, f.path()));
  struct stat done;
  good = good && ::fstat(out.fd, &done) == 0 && ModelStore::FingerprintsHold(out.fd);
  CAIRN_RETURN_IF_ERROR(store->RenameFile(tmp_abs, final_abs, good ? &done : nullptr, f.root()));
  res.files++;
  return absl::OkStatus();
}

}  // namespace cairn::client
