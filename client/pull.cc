// Pulling a release into a directory from one or several nodes.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "cairn/clock.h"
#include "cairn/crypto.h"
#include "cairn/hash.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/fetcher.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"
#include "client.h"
#include "progress.h"
#include "safe_fs.h"

namespace cairn::client {

using cairn::v1::ChunkList;
using cairn::v1::Manifest;

namespace {

absl::StatusOr<ChunkList> FetchChunkList(Connection& node, const cairn::v1::FileEntry& f) {
  cairn::v1::GetObjectRequest req;
  req.set_digest(f.root());
  cairn::v1::GetObjectResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.registry()->GetObject(ctx.get(), req, &resp),
                                 "fetching chunk list of " + f.path()));
  return CheckChunkList(resp.data(), f.root(), f.size(), f.path());
}

constexpr std::string_view kPartialPrefix = ".cairn-partial-";

// Removes the partial files a killed pull left in `dir_fd`:
// ".cairn-partial-<pid>-<n>" whose <pid> is no longer a running process (a
// pull running now into the same tree keeps its own). Returns how many.
int RemoveStalePartials(int dir_fd) {
  int fd = ::dup(dir_fd);
  if (fd < 0) return 0;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return 0;
  }
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.substr(0, kPartialPrefix.size()) != kPartialPrefix) continue;
    std::string_view rest = name.substr(kPartialPrefix.size());
    int pid = 0;
    if (!ParseInt(rest.substr(0, rest.find('-')), &pid) || pid <= 0) continue;
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    stale.emplace_back(name);
  }
  int removed = 0;
  for (const auto& name : stale) removed += ::unlinkat(::dirfd(d), name.c_str(), 0) == 0;
  ::closedir(d);
  return removed;
}

// The paths of the release an earlier pull recorded in OUT/.cairn, if any.
absl::flat_hash_set<std::string> EarlierPulledPaths(const std::string& out) {
  absl::flat_hash_set<std::string> paths;
  auto bytes = ReadFileLimited(out + "/.cairn/manifest.envelope", kMaxEnvelopeBytes);
  if (!bytes.ok()) return paths;
  auto env = ParseEnvelope(*bytes, kMaxEnvelopeBytes);
  if (!env.ok()) return paths;
  auto m = ParseManifest(env->payload());
  if (!m.ok()) return paths;
  for (const auto& f : m->files()) paths.insert(f.path());
  return paths;
}

// Whether the file at `rel` beneath `root_fd` already holds `f`'s bytes.
bool HoldsSameBytes(int root_fd, const cairn::v1::FileEntry& f) {
  auto [dir, base] = SplitDirBase(f.path());
  auto dfd = OpenDirBeneath(root_fd, dir, /*create=*/false);
  if (!dfd.ok()) return false;
  Fd fd(::openat(dfd->fd, base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (fd.fd < 0 || ::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) != f.size()) {
    return false;
  }
  Sha256 sha;
  std::string buf(1 << 20, '\0');
  ssize_t n;
  while ((n = ::read(fd.fd, buf.data(), buf.size())) > 0) sha.Update(buf.data(), n);
  return n == 0 && DigestName(sha.Finish()) == f.sha256();
}

absl::Status CheckNothingForeignReplaced(int root_fd, const std::string& out,
                                         const cairn::v1::Manifest& m) {
  absl::flat_hash_set<std::string> ours;
  bool read_ours = false;
  std::vector<std::string> foreign;
  for (const auto& f : m.files()) {
    struct stat st;
    if (::fstatat(root_fd, f.path().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!read_ours) {
      ours = EarlierPulledPaths(out);
      read_ours = true;
    }
    if (S_ISREG(st.st_mode) && (ours.contains(f.path()) || HoldsSameBytes(root_fd, f))) continue;
    foreign.push_back(f.path());
  }
  if (foreign.empty()) return absl::OkStatus();
  std::string shown =
      StrJoin(std::vector<std::string>(foreign.begin(),
                                       foreign.begin() + std::min<size_t>(5, foreign.size())),
              ", ");
  if (foreign.size() > 5) shown += StrCat(" and ", foreign.size() - 5, " more");
  return absl::FailedPreconditionError(
      StrCat("refusing to replace ", foreign.size(), " file(s) in ", out,
             " that no earlier pull of a release wrote there: ", shown,
             " (nothing was written; pass --force to replace them)"));
}

}  // namespace

absl::StatusOr<PullResult> Pull(Connection& node, const TrustRootView& trust,
                                const PullOptions& o) {
  return Pull(std::vector<Connection*>{&node}, trust, o);
}

absl::StatusOr<PullResult> Pull(const std::vector<Connection*>& nodes, const TrustRootView& trust,
                                const PullOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  if (nodes.empty()) return absl::InvalidArgumentError("no node to pull from");
  // The extra chunk connections start connecting now, so their TCP and
  // HTTP/2 handshakes overlap the metadata round trips below (on a 300 ms
  // link that is seconds, not milliseconds).
  const int streams = std::clamp(o.streams_per_node, 1, 8);
  std::vector<std::vector<std::unique_ptr<Connection>>> extra(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (int k = 1; k < streams; ++k) {
      extra[i].push_back(nodes[i]->Another());
      extra[i].back()->channel()->GetState(/*try_to_connect=*/true);
    }
  }
  // Notices go into the result and, as they happen, to o.log (the fetcher's
  // come from its threads).
  auto notices = std::make_shared<std::pair<std::mutex, std::vector<std::string>>>();
  auto notice = [notices, log = o.log](const std::string& line) {
    {
      std::lock_guard<std::mutex> l(notices->first);
      notices->second.push_back(line);
    }
    if (log) log(line);
  };
  // Everything signed is verified before anything is written.
  CAIRN_ASSIGN_OR_RETURN(MultiResolved mr, ResolveAcross(nodes, &trust, o.ref));
  for (const auto& w : mr.warnings) notice(w);
  Resolved& r = mr.resolved;
  if (r.tag && !o.state_dir.empty()) {
    CAIRN_RETURN_IF_ERROR(CheckAndRecordTag(o.state_dir, trust, *r.tag, nodes[mr.node]->address()));
  }
  PullResult res;
  res.manifest = r.digest;
  res.name = r.manifest.name();
  res.version = r.manifest.version();
  for (const auto& f : r.manifest.files()) res.bytes_total += f.size();

  PackStoreOptions cache_opts;
  cache_opts.durable = false;  // a cache: survive a killed process, re-verify on read
  cache_opts.verify_on_read = true;
  cache_opts.buffer_bytes = 0;  // every chunk reaches the file at once: a killed pull resumes
  // One process at a time owns the cache; like apt's lock, wait for it (the
  // other pull's chunks are then ours for free) rather than fail.
  auto cache = OpenPackChunkStore(o.cache_dir, cache_opts);
  for (int waited = 0; absl::IsFailedPrecondition(cache.status()); ++waited) {
    if (waited == 0 && o.log) {
      o.log("waiting for the cache " + o.cache_dir + ", in use by another cairn process...");
    }
    if (o.cache_wait_seconds >= 0 && waited >= o.cache_wait_seconds * 4) {
      return absl::FailedPreconditionError(
          "cache " + o.cache_dir +
          " is still in use by another cairn process; pass --cache DIR to use another");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    cache = OpenPackChunkStore(o.cache_dir, cache_opts);
  }
  if (!cache.ok()) return Annotate(cache.status(), "cache");

  std::error_code ec;
  if (struct stat ls; ::lstat(o.out.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode) &&
                      ::access(o.out.c_str(), F_OK) != 0) {
    std::error_code rec;
    auto target = std::filesystem::read_symlink(o.out, rec);
    return absl::InvalidArgumentError("--out " + o.out + " is a symlink to " + target.string() +
                                      ", which does not exist: create it, or remove the link");
  }
  std::filesystem::create_directories(o.out, ec);
  if (ec) return absl::InvalidArgumentError("cannot create " + o.out + ": " + ec.message());
  Fd root(::open(o.out.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.fd < 0) return ErrnoStatus(errno, "cannot open " + o.out);
  if (!o.force) CAIRN_RETURN_IF_ERROR(CheckNothingForeignReplaced(root.fd, o.out, r.manifest));

  // Chunk lists come from `ordered` (one connection per node); chunks from
  // `sources`: `streams_per_node` connections to each node.
  std::vector<Connection*> ordered, sources;
  for (size_t i : mr.order) {
    ordered.push_back(nodes[i]);
    sources.push_back(nodes[i]);
    for (auto& e : extra[i]) sources.push_back(e.get());
  }
  FetchOptions fo;
  fo.window_bytes = o.window_bytes;
  fo.min_rate = o.min_rate;
  fo.rate_seconds = o.rate_seconds;
  fo.stall_seconds = o.stall_seconds;
  fo.log = notice;
  Fetcher fetcher(sources, cache->get(), fo);

  Progress prog(o.progress, "pulling", res.bytes_total);
  std::optional<std::chrono::steady_clock::time_point> first_ask;
  std::chrono::steady_clock::time_point last_chunk;
  std::string data, wbuf;
  wbuf.reserve(4 << 20);
  int file_index = 0;
  // A file's chunk list from the first usable node that serves a valid one.
  auto chunk_list = [&](const cairn::v1::FileEntry& f) -> absl::StatusOr<ChunkList> {
    absl::StatusOr<ChunkList> cl = absl::UnavailableError("no node left to ask");
    std::vector<std::string> cl_errors;
    for (size_t i = 0; i < ordered.size(); ++i) {
      if (!fetcher.Usable(i * streams)) continue;
      cl = FetchChunkList(*ordered[i], f);
      if (cl.ok()) return cl;
      cl_errors.push_back(StrCat(ordered[i]->address(), ": ", cl.status().message()));
    }
    if (cl_errors.empty()) return fetcher.NoneLeft("the chunk list of " + f.path());
    return absl::Status(cl.status().code(), StrJoin(cl_errors, "; "));
  };
  // The next file's chunk list is asked for while this file's chunks arrive,
  // so a many-file release pays no round trip per file.
  std::future<absl::StatusOr<ChunkList>> next_list;
  const int nfiles = r.manifest.files_size();
  for (int fi = 0; fi < nfiles; ++fi) {
    const cairn::v1::FileEntry& f = r.manifest.files(fi);
    absl::StatusOr<ChunkList> cl = fi == 0 ? chunk_list(f) : next_list.get();
    if (fi + 1 < nfiles) {
      next_list = std::async(std::launch::async, chunk_list, std::cref(r.manifest.files(fi + 1)));
    }
    if (!cl.ok()) return cl.status();
    res.chunks_total += cl->chunks_size();
    std::vector<ChunkWant> wanted;
    absl::flat_hash_set<Digest, DigestHash> to_fetch;
    for (const auto& c : cl->chunks()) {
      CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
      if (to_fetch.contains(d)) continue;
      CAIRN_ASSIGN_OR_RETURN(bool cached, (*cache)->Has(d));
      if (cached) continue;
      to_fetch.insert(d);
      wanted.push_back({d, c.length()});
    }
    auto [dir, base] = SplitDirBase(f.path());
    CAIRN_ASSIGN_OR_RETURN(Fd dfd, OpenDirBeneath(root.fd, dir, /*create=*/true));
    std::string tmp = StrCat(kPartialPrefix, ::getpid(), "-", file_index++);
    Fd out(
        ::openat(dfd.fd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (out.fd < 0) return ErrnoStatus(errno, "cannot create a temporary file for " + f.path());
    auto fail = [&](absl::Status st) {
      ::unlinkat(dfd.fd, tmp.c_str(), 0);
      return st;
    };
    if (!wanted.empty() && !first_ask) first_ask = std::chrono::steady_clock::now();
    fetcher.Add(wanted);
    ParallelSha256 sha;  // whole-file hash on the second core
    uint64_t written = 0;
    // wbuf's bytes start at file offset wbuf_at; `holes` are the all-zero
    // chunks in it (offset in wbuf, length), skipped when it is written.
    uint64_t wbuf_at = 0;
    std::vector<std::pair<size_t, size_t>> holes;
    bool any_hole = false;
    auto flush = [&]() -> absl::Status {
      size_t pos = 0;
      holes.emplace_back(wbuf.size(), 0);  // the end
      for (const auto& [at, len] : holes) {
        if (at > pos) {
          if (::lseek(out.fd, static_cast<off_t>(wbuf_at + pos), SEEK_SET) < 0) {
            return ErrnoStatus(errno, "lseek");
          }
          CAIRN_RETURN_IF_ERROR(WriteAll(out.fd, wbuf.data() + pos, at - pos));
        }
        pos = at + len;
      }
      holes.clear();
      wbuf_at += wbuf.size();
      return absl::OkStatus();
    };
    for (const auto& c : cl->chunks()) {
      Digest d;
      std::memcpy(d.data(), c.digest().data(), 32);
      if (to_fetch.erase(d) > 0) {
        // Verified against its digest (and stored in the cache) by the fetcher.
        absl::Status st = fetcher.Next(&data);
        if (!st.ok()) return fail(Annotate(st, "fetching " + f.path() + "; nothing written"));
        last_chunk = std::chrono::steady_clock::now();
        res.chunks_fetched++;
        res.bytes_fetched += data.size();
      } else {
        absl::Status st = (*cache)->Get(d, &data);
        if (absl::IsDataLoss(st)) {
          // A rotten cache entry (the cache dropped it) is fetched again
          // from the nodes rather than failing this and every later pull.
          notice(StrCat("cache: ", st.message(), "; fetching it again"));
          Fetcher again(sources, cache->get(), fo);
          again.Add({{d, c.length()}});
          st = again.Next(&data);
          if (!st.ok()) return fail(Annotate(st, "fetching " + f.path() + "; nothing written"));
          res.chunks_fetched++;
          res.bytes_fetched += data.size();
        } else if (!st.ok()) {
          return fail(Annotate(st, "cache"));
        } else {
          res.chunks_from_cache++;
        }
      }
      // An all-zero chunk becomes a hole, as cp --sparse=auto makes one.
      if (data.size() >= 4096 && data[0] == 0 &&
          std::memcmp(data.data(), data.data() + 1, data.size() - 1) == 0) {
        holes.emplace_back(wbuf.size(), data.size());
        any_hole = true;
      }
      wbuf.append(data);
      written += data.size();
      prog.Add(data.size());
      if (wbuf.size() >= (4u << 20)) {
        absl::Status st = flush();
        if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
        sha.Update(std::move(wbuf));
        wbuf = sha.TakeBuffer();
        wbuf.reserve(4 << 20);
      }
    }
    absl::Status st = flush();
    sha.Update(std::move(wbuf));
    wbuf = sha.TakeBuffer();
    if (st.ok() && any_hole && ::ftruncate(out.fd, static_cast<off_t>(written)) != 0) {
      st = ErrnoStatus(errno, "ftruncate");  // a trailing hole still sets the size
    }
    if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
    if (written != f.size() || DigestName(sha.Finish()) != f.sha256()) {
      return fail(absl::DataLossError("assembled " + f.path() +
                                      " does not match its signed SHA-256; nothing kept"));
    }
    if (o.fsync && ::fdatasync(out.fd) != 0)
      return fail(ErrnoStatus(errno, "fdatasync " + f.path()));
    if (::renameat(dfd.fd, tmp.c_str(), dfd.fd, base.c_str()) != 0) {
      return fail(ErrnoStatus(errno, "cannot rename into place " + f.path()));
    }
    res.files++;
  }
  CAIRN_ASSIGN_OR_RETURN(Fd meta_dir, OpenDirBeneath(root.fd, ".cairn", /*create=*/true));
  CAIRN_RETURN_IF_ERROR(WriteFileAt(meta_dir.fd, "manifest.envelope", r.envelope));
  // What an interrupted pull left behind in the directories this release
  // writes to goes now that the release is complete.
  {
    absl::flat_hash_set<std::string> dirs;
    for (const auto& f : r.manifest.files()) dirs.insert(SplitDirBase(f.path()).first);
    int removed = 0;
    for (const auto& dir : dirs) {
      auto dfd = OpenDirBeneath(root.fd, dir, /*create=*/false);
      if (dfd.ok()) removed += RemoveStalePartials(dfd->fd);
    }
    if (removed > 0) {
      notice(StrCat("removed ", removed, " partial file(s) left by an interrupted pull"));
    }
  }
  for (const auto& st : fetcher.Stats()) {  // one line per node, streams added up
    auto it = std::find_if(res.sources.begin(), res.sources.end(),
                           [&](const auto& s) { return s.address == st.address; });
    if (it == res.sources.end()) {
      res.sources.push_back({st.address, 0, 0, ""});
      it = res.sources.end() - 1;
    }
    it->bytes += st.bytes;
    it->chunks += st.chunks;
    if (it->demoted.empty()) it->demoted = st.demoted;
  }
  res.seconds = SecondsSince(t0);
  if (first_ask) {
    res.transfer_seconds = std::chrono::duration<double>(last_chunk - *first_ask).count();
  }
  {
    std::lock_guard<std::mutex> l(notices->first);
    res.warnings = notices->second;
  }
  return res;
}

}  // namespace cairn::client
