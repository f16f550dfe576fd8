// Pulling a release from one or several nodes (or the store alone) into the
// managed store or a directory. The per-file assembly is in pull_file.cc.
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_join.h"
#include "cairn/clock.h"
#include "cairn/crypto.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/fetcher.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"
#include "client.h"
#include "model_store.h"
#include "progress.h"
#include "pull_internal.h"
#include "safe_fs.h"

namespace cairn::client {

using cairn::v1::ChunkList;
using cairn::v1::Manifest;

namespace {

absl::StatusOr<ChunkList> FetchChunkList(Connection& node, const cairn::v1::FileEntry& f,
                                         ModelStore* store) {
  cairn::v1::GetObjectRequest req;
  req.set_digest(f.root());
  cairn::v1::GetObjectResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.registry()->GetObject(ctx.get(), req, &resp),
                                 "fetching chunk list of " + f.path()));
  CAIRN_ASSIGN_OR_RETURN(ChunkList cl, CheckChunkList(resp.data(), f.root(), f.size(), f.path()));
  CAIRN_RETURN_IF_ERROR(store->PutObject(f.root(), resp.data()));
  return cl;
}

// The chunk list kept in the store by an earlier pull, checked like a fetched one.
std::optional<ChunkList> StoredChunkList(ModelStore* store, const cairn::v1::FileEntry& f) {
  auto bytes = store->GetObject(f.root());
  if (!bytes.ok()) return std::nullopt;
  auto cl = CheckChunkList(*bytes, f.root(), f.size(), f.path());
  if (!cl.ok()) return std::nullopt;
  return std::move(*cl);
}

// What a ref names in the store, verified as a node's answer would be.
absl::StatusOr<Resolved> ResolveOffline(ModelStore* store, const TrustRootView& trust,
                                        const std::string& ref_text) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(ref_text));
  auto resp = store->Resolve(ref_text);
  if (absl::IsNotFound(resp.status())) {
    return absl::NotFoundError(
        StrCat(ref.ToString(), " was never pulled into the store; run without --offline"));
  }
  CAIRN_RETURN_IF_ERROR(resp.status());
  return VerifyResolved(*resp, &trust, ref, "the local store");
}

// Which of the manifest's files the options ask for; InvalidArgument naming
// a FILE or pattern that matches none.
absl::StatusOr<std::vector<int>> SelectFiles(const Manifest& m, const PullOptions& o) {
  std::vector<int> out;
  absl::flat_hash_set<std::string> named(o.files.begin(), o.files.end()), seen;
  std::vector<bool> include_used(o.include.size());
  for (int i = 0; i < m.files_size(); ++i) {
    const std::string& p = m.files(i).path();
    bool want = o.files.empty() && o.include.empty();
    if (named.contains(p)) {
      want = true;
      seen.insert(p);
    }
    for (size_t k = 0; k < o.include.size(); ++k) {
      if (::fnmatch(o.include[k].c_str(), p.c_str(), 0) == 0) {
        want = true;
        include_used[k] = true;
      }
    }
    for (const auto& x : o.exclude) {
      if (::fnmatch(x.c_str(), p.c_str(), 0) == 0) want = false;
    }
    if (want) out.push_back(i);
  }
  for (const auto& f : o.files) {
    if (!seen.contains(f)) {
      return absl::InvalidArgumentError(StrCat(m.name(), " ", m.version(), " has no file ", f));
    }
  }
  for (size_t k = 0; k < o.include.size(); ++k) {
    if (!include_used[k]) {
      return absl::InvalidArgumentError(
          StrCat("no file of ", m.name(), " ", m.version(), " matches --include ", o.include[k]));
    }
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        StrCat("the --exclude patterns leave no file of ", m.name(), " ", m.version()));
  }
  return out;
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
  Fd fd(::openat(dfd->fd, base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
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
    // Left by a process that is gone, or by an earlier run with this pid (a
    // container's cairn has the same pid every time); a live writer holds a
    // lock on its file (checked below), an older cairn that does not is
    // only known gone by its pid.
    if (pid != ::getpid() && (::kill(pid, 0) == 0 || errno != ESRCH)) continue;
    stale.emplace_back(name);
  }
  int removed = 0;
  for (const auto& name : stale) {
    Fd f(::openat(::dirfd(d), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (f.fd < 0 || ::flock(f.fd, LOCK_EX | LOCK_NB) != 0) continue;  // being written
    removed += ::unlinkat(::dirfd(d), name.c_str(), 0) == 0;
  }
  ::closedir(d);
  return removed;
}

absl::StatusOr<PullResult> Pull(Connection& node, const TrustRootView& trust,
                                const PullOptions& o) {
  return Pull(std::vector<Connection*>{&node}, trust, o);
}

absl::StatusOr<PullResult> Pull(const std::vector<Connection*>& nodes, const TrustRootView& trust,
                                const PullOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  if (nodes.empty() && !o.offline) return absl::InvalidArgumentError("no node to pull from");
  std::unique_ptr<ModelStore> own_store;
  ModelStore* store = o.store;
  if (store == nullptr) {
    CAIRN_ASSIGN_OR_RETURN(own_store, ModelStore::Open(o.store_dir, o.store_wait_seconds, o.log));
    store = own_store.get();
  }
  // The extra chunk connections start connecting now, so their TCP and
  // HTTP/2 handshakes overlap the metadata round trips below (on a 300 ms
  // link that is seconds, not milliseconds).
  const int streams = std::clamp(o.streams_per_node, 1, 8);
  std::vector<std::vector<std::unique_ptr<Connection>>> extra(nodes.size());
  for (size_t i = 0; i < nodes.size() && !o.offline; ++i) {
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
  MultiResolved mr;
  std::optional<TrustRootView> updated;
  const TrustRootView* tv = &trust;
  ResolveExtras extras;
  extras.list_bytes = kResolveListBytes;
  if (o.offline) {
    CAIRN_ASSIGN_OR_RETURN(mr.resolved, ResolveOffline(store, trust, o.ref));
  } else if (o.update_trust) {
    // The trust update and the resolve share the round trip; no answer is
    // judged before the update is done.
    std::shared_future<absl::StatusOr<TrustRootView>> next =
        std::async(std::launch::async, o.update_trust).share();
    extras.late_trust = [&next]() -> absl::StatusOr<const TrustRootView*> {
      const absl::StatusOr<TrustRootView>& got = next.get();
      if (!got.ok()) return got.status();
      return &*got;
    };
    auto resolved = ResolveAcross(nodes, &trust, o.ref, extras);
    CAIRN_RETURN_IF_ERROR(next.get().status());
    updated.emplace(*next.get());
    tv = &*updated;
    CAIRN_ASSIGN_OR_RETURN(mr, std::move(resolved));
  } else {
    CAIRN_ASSIGN_OR_RETURN(mr, ResolveAcross(nodes, &trust, o.ref, extras));
  }
  for (const auto& w : mr.warnings) notice(w);
  Resolved& r = mr.resolved;
  if (r.yank && r.yank->yanked()) {
    notice(StrCat("warning: ", r.manifest.name(), " ", r.manifest.version(), " (", r.digest,
                  ") was yanked by its publisher: ", OneLine(r.yank->reason())));
  }
  if (r.tag && !o.state_dir.empty()) {
    CAIRN_RETURN_IF_ERROR(CheckAndRecordTag(
        o.state_dir, *tv, *r.tag, o.offline ? "the local store" : nodes[mr.node]->address()));
  }
  CAIRN_RETURN_IF_ERROR(store->PutEnvelope(r.digest, r.envelope));
  CAIRN_ASSIGN_OR_RETURN(std::vector<int> selected, SelectFiles(r.manifest, o));
  PullResult res;
  res.manifest = r.digest;
  res.name = r.manifest.name();
  res.version = r.manifest.version();
  res.partial = static_cast<int>(selected.size()) < r.manifest.files_size();
  for (int i : selected) res.bytes_total += r.manifest.files(i).size();

  const bool in_store = o.out.empty();
  res.path = in_store ? store->ReleaseDir(res.name, res.version, res.manifest) : o.out;
  std::error_code ec;
  if (!in_store) {
    // A plain tree never goes inside the store (it would replace a release's files).
    auto out_abs = std::filesystem::weakly_canonical(std::filesystem::absolute(o.out, ec), ec);
    auto store_abs = std::filesystem::weakly_canonical(store->dir(), ec);
    auto rel = out_abs.lexically_relative(store_abs);
    if (!rel.empty() && *rel.begin() != "..") {
      return absl::InvalidArgumentError("--out " + o.out + " is inside the store " + store->dir() +
                                        ": pull without --out to put a release there");
    }
  }
  if (struct stat ls; ::lstat(res.path.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode) &&
                      ::access(res.path.c_str(), F_OK) != 0) {
    std::error_code rec;
    auto target = std::filesystem::read_symlink(res.path, rec);
    return absl::InvalidArgumentError("--out " + res.path + " is a symlink to " + target.string() +
                                      ", which does not exist: create it, or remove the link");
  }
  Fd root;
  if (in_store) {
    // Beneath the store without following a link: a release folder replaced
    // by a symlink cannot send the files elsewhere.
    Fd store_fd(::open(store->dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (store_fd.fd < 0) return ErrnoStatus(errno, "cannot open the store " + store->dir());
    CAIRN_ASSIGN_OR_RETURN(
        root, OpenDirBeneath(store_fd.fd, res.path.substr(store->dir().size() + 1), true));
  } else {
    std::filesystem::create_directories(res.path, ec);
    if (ec) return absl::InvalidArgumentError("cannot create " + res.path + ": " + ec.message());
    root = Fd(::open(res.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root.fd < 0) return ErrnoStatus(errno, "cannot open " + res.path);
  }
  const std::string root_abs = std::filesystem::absolute(res.path, ec).lexically_normal().string();
  if (!o.force && !in_store) {
    CAIRN_RETURN_IF_ERROR(CheckNothingForeignReplaced(root.fd, res.path, r.manifest));
  }

  // Chunk lists come from `ordered` (one connection per node); chunks from
  // `sources`: `streams_per_node` connections to each node.
  std::vector<Connection*> ordered, sources;
  for (size_t i : mr.order) {
    ordered.push_back(nodes[i]);
    sources.push_back(nodes[i]);
    for (auto& e : extra[i]) {
      e->set_chunks_http_port(nodes[i]->chunks_http_port());  // learned by the resolve
      sources.push_back(e.get());
    }
  }
  PullRun run;
  run.o = &o;
  run.store = store;
  run.sources = sources;
  run.fetch_options.window_bytes = o.window_bytes;
  run.fetch_options.min_rate = o.min_rate;
  run.fetch_options.rate_seconds = o.rate_seconds;
  run.fetch_options.stall_seconds = o.stall_seconds;
  run.fetch_options.log = notice;
  run.fetch_options.cancel = o.cancel;
  std::optional<Fetcher> fetcher;
  if (!o.offline) {
    fetcher.emplace(sources, run.fetch_options);
    run.fetcher = &*fetcher;
  }
  Progress prog(static_cast<Progress::Mode>(o.progress), "pulling", res.bytes_total);
  run.progress = &prog;
  run.res = &res;
  run.notice = notice;

  // Chunk lists the resolve answer carried: each kept only when a selected
  // file's entry in the signed manifest names it (its root), like a fetched one.
  absl::flat_hash_map<std::string, std::string> carried;
  std::atomic<uint64_t> lists_carried{0}, lists_fetched{0};  // also from next_list's thread
  {
    absl::flat_hash_set<std::string_view> wanted;
    for (int i : selected) wanted.insert(r.manifest.files(i).root());
    for (std::string& list : r.chunk_lists) {
      std::string root = DigestName(Sha256Of(list));
      if (wanted.contains(root)) carried.emplace(std::move(root), std::move(list));
    }
    r.chunk_lists = {};  // anything else a node sent is dropped now
  }
  // A file's chunk list: kept by an earlier pull, carried by the resolve,
  // else from the first usable node that serves a valid one.
  auto chunk_list = [&](const cairn::v1::FileEntry& f) -> absl::StatusOr<ChunkList> {
    if (auto kept = StoredChunkList(store, f)) return std::move(*kept);
    if (auto it = carried.find(f.root()); it != carried.end()) {
      auto cl = CheckChunkList(it->second, f.root(), f.size(), f.path());
      if (cl.ok() && store->PutObject(f.root(), it->second).ok()) {
        lists_carried++;
        return cl;
      }
    }
    if (o.offline) {
      return absl::FailedPreconditionError("the chunk list of " + f.path() +
                                           " is not in the store; run without --offline");
    }
    absl::StatusOr<ChunkList> cl = absl::UnavailableError("no node left to ask");
    std::vector<std::string> cl_errors;
    for (size_t i = 0; i < ordered.size(); ++i) {
      if (!fetcher->Usable(i * streams)) continue;
      cl = FetchChunkList(*ordered[i], f, store);
      if (cl.ok()) {
        lists_fetched++;
        return cl;
      }
      cl_errors.push_back(StrCat(ordered[i]->address(), ": ", cl.status().message()));
    }
    if (cl_errors.empty()) return fetcher->NoneLeft("the chunk list of " + f.path());
    return absl::Status(cl.status().code(), StrJoin(cl_errors, "; "));
  };
  // The next file's chunk list is asked for while this file's chunks arrive,
  // so a many-file release pays no round trip per file.
  std::future<absl::StatusOr<ChunkList>> next_list;
  const size_t nsel = selected.size();
  for (size_t si = 0; si < nsel; ++si) {
    const cairn::v1::FileEntry& f = r.manifest.files(selected[si]);
    absl::StatusOr<ChunkList> cl = si == 0 ? chunk_list(f) : next_list.get();
    if (si + 1 < nsel) {
      next_list =
          std::async(std::launch::async, chunk_list, std::cref(r.manifest.files(selected[si + 1])));
    }
    if (!cl.ok()) return cl.status();
    CAIRN_RETURN_IF_ERROR(AssembleFile(run, root.fd, root_abs, f, *cl));
  }
  res.lists_carried = lists_carried.load();
  res.lists_fetched = lists_fetched.load();
  // A complete tree (its manifest and no partial list) stays complete when
  // some of its files are pulled again.
  const bool was_complete =
      ::faccessat(root.fd, ".cairn/partial", F_OK, 0) != 0 &&
      ReadFileLimited(res.path + "/.cairn/manifest.envelope", kMaxEnvelopeBytes).value_or("") ==
          r.envelope;
  CAIRN_ASSIGN_OR_RETURN(Fd meta_dir, OpenDirBeneath(root.fd, ".cairn", /*create=*/true));
  CAIRN_RETURN_IF_ERROR(WriteFileAt(meta_dir.fd, "manifest.envelope", r.envelope));
  // A partial pull says which files it holds (cairn verify checks those); a
  // later full pull of the same release into the same place removes it.
  std::string partial_list;
  if (res.partial && !was_complete) {
    absl::flat_hash_set<std::string> have;
    if (auto prev = ReadFileLimited(res.path + "/.cairn/partial", kMaxEnvelopeBytes); prev.ok()) {
      for (auto line : Split(*prev, '\n')) {
        if (!line.empty()) have.emplace(line);
      }
    }
    for (int i : selected) have.insert(r.manifest.files(i).path());
    std::vector<std::string> sorted(have.begin(), have.end());
    std::sort(sorted.begin(), sorted.end());
    for (const auto& p : sorted) partial_list += p + "\n";
    CAIRN_RETURN_IF_ERROR(WriteFileAt(meta_dir.fd, "partial", partial_list));
  } else {
    ::unlinkat(meta_dir.fd, "partial", 0);
  }
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
  // A release folder in the store holds the release and nothing else: a file
  // planted there (a .py beside the weights runs with trust_remote_code) goes.
  if (in_store && !res.partial) {
    absl::flat_hash_set<std::string> listed;
    for (const auto& f : r.manifest.files()) listed.insert(f.path());
    std::vector<std::string> stray;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(res.path, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      const std::string rel = it->path().lexically_relative(res.path).generic_string();
      if (it.depth() == 0 && rel == ".cairn") {
        it.disable_recursion_pending();
        continue;
      }
      if (!it->is_directory(ec) || it->is_symlink(ec)) {
        if (!listed.contains(rel)) stray.push_back(rel);
      }
    }
    for (const auto& rel : stray) std::filesystem::remove(res.path + "/" + rel, ec);
    if (!stray.empty()) {
      std::sort(stray.begin(), stray.end());
      notice(StrCat("removed ", stray.size(), " file(s) the release does not have from ", res.path,
                    ": ", absl::StrJoin(stray, ", ")));
    }
  }
  if (in_store) {
    ModelStore::Release rec;
    auto prev = store->GetRelease(r.digest);
    if (prev.ok()) rec = *prev;
    rec.digest = r.digest;
    rec.name = res.name;
    rec.version = res.version;
    rec.dir = root_abs;
    rec.bytes = DiskUsage(root_abs);
    rec.last_used = SystemNowUnix();
    if (rec.pulled == 0) rec.pulled = rec.last_used;
    rec.partial = !partial_list.empty();
    CAIRN_RETURN_IF_ERROR(store->PutRelease(rec));
    if (r.tag) {
      CAIRN_RETURN_IF_ERROR(store->PutTag(res.name, r.tag->tag(), r.tag_envelope));
      CAIRN_RETURN_IF_ERROR(store->LinkTag(res.name, r.tag->tag(), root_abs));
      // (a tag named "releases" gets no link: that is the releases' folder)
      if (r.tag->tag() != "releases") res.tag_path = store->TagPath(res.name, r.tag->tag());
    }
    if (o.max_store_bytes > 0) {
      CAIRN_ASSIGN_OR_RETURN(auto evicted, store->Evict(o.max_store_bytes, r.digest));
      for (const auto& e : evicted) {
        res.evicted.push_back(e.name + " " + e.version);
        notice(StrCat("evicted ", e.name, " ", e.version, " (", e.digest,
                      ") to keep the store within its size limit"));
      }
    }
  } else if (r.tag) {
    CAIRN_RETURN_IF_ERROR(store->PutTag(res.name, r.tag->tag(), r.tag_envelope));
  }
  if (fetcher) {
    res.peak_in_flight = fetcher->PeakInFlight();
    for (const auto& st : fetcher->Stats()) {  // one line per node, streams added up
      auto it = std::find_if(res.sources.begin(), res.sources.end(),
                             [&](const auto& s) { return s.address == st.address; });
      if (it == res.sources.end()) {
        res.sources.push_back({st.address, 0, 0, ""});
        it = res.sources.end() - 1;
      }
      it->bytes += st.bytes;
      it->chunks += st.chunks;
      if (st.demoted.empty()) it->rate += st.rate;
      if (st.rtt > 0 && (it->rtt_seconds == 0 || st.rtt < it->rtt_seconds)) it->rtt_seconds = st.rtt;
      if (it->demoted.empty()) it->demoted = st.demoted;
    }
  }
  res.seconds = SecondsSince(t0);
  if (run.first_ask) {
    res.transfer_seconds = std::chrono::duration<double>(run.last_chunk - *run.first_ask).count();
  }
  {
    std::lock_guard<std::mutex> l(notices->first);
    res.warnings = notices->second;
  }
  return res;
}

}  // namespace cairn::client
