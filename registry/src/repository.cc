#include "cairn/repository.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "change_feed.h"
#include "gc_guard.h"
#include "meta_schema.h"
#include "publish_sessions.h"
#include "trust_state.h"

namespace cairn {

using cairn::v1::Envelope;
using cairn::v1::Manifest;
using cairn::v1::TagRecord;
using meta::Key2;

namespace {

// The data directory's lock, held for the repository's life. -1 on error.
absl::StatusOr<int> LockDataDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot create data directory " + dir);
  std::string lock_path = dir + "/LOCK";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot open " + lock_path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError("data directory " + dir +
                                         " is in use by another cairn-node");
  }
  // Who holds it, for `cairn-node scrub --now` (trusted only while locked).
  const std::string pid = StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // Only the holder's pid is lost: the lock stands.
  }
  return fd;
}

// Some file under DIR other than DIR/LOCK, or "" when DIR holds none.
std::string AnyFileUnder(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) continue;
    if (it->path() == fs::path(dir) / "LOCK") continue;
    return it->path().string();
  }
  // A directory that cannot be listed is not taken as empty.
  return ec ? dir : "";
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status Refuse(const std::string& dir, const std::string& found, const std::string& what) {
  return absl::FailedPreconditionError(
      "data directory " + dir + " holds data (" + found + ") but " + what +
      "; refusing to create a fresh one over it. Run `cairn-node repair --data " + dir +
      "` to rebuild it from the files that are left, or restore " + dir + " from a backup");
}

// A fresh database is only ever created in a directory without data: a lost
// meta/CURRENT must not turn into an empty node that deletes the old files.
// With chunks in S3 (`s3`) there is no local chunk index to lose.
absl::Status CheckDataDir(const std::string& dir, bool s3, bool* fresh) {
  *fresh = !Exists(dir + "/meta/CURRENT");
  if (*fresh) {
    std::string found = AnyFileUnder(dir);
    if (!found.empty()) return Refuse(dir, found, "no metadata database (meta/CURRENT is missing)");
    return absl::OkStatus();
  }
  if (!s3 && !Exists(dir + "/chunks/index/CURRENT")) {
    std::string found = AnyFileUnder(dir + "/chunks");
    if (!found.empty()) {
      return Refuse(dir, found, "no chunk index (chunks/index/CURRENT is missing)");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Repository::Repair(const std::string& dir) {
  if (!Exists(dir + "/meta")) return absl::NotFoundError("no data directory at " + dir);
  CAIRN_ASSIGN_OR_RETURN(int fd, LockDataDir(dir));
  absl::Status st = RepairRocksMetaStore(dir + "/meta");
  if (st.ok() && Exists(dir + "/chunks/index")) st = RepairPackIndex(dir + "/chunks");
  ::close(fd);
  return st;
}

absl::StatusOr<std::unique_ptr<Repository>> Repository::Open(const std::string& dir,
                                                             TrustRootView trust,
                                                             const RepositoryOptions& opts,
                                                             Clock* clock) {
  CAIRN_ASSIGN_OR_RETURN(int fd, LockDataDir(dir));
  // RocksDB writes as it opens (a MANIFEST, OPTIONS, a log), and a full disk
  // there ends in an abort inside it: refuse first, and say what to do.
  if (struct statvfs sv; ::statvfs(dir.c_str(), &sv) == 0 &&
                         static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize < kMinFreeToOpen) {
    ::close(fd);
    return absl::ResourceExhaustedError(StrCat("the disk of ", dir, " has ",
                                               static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize,
                                               " bytes free; a node needs ", kMinFreeToOpen,
                                               " to open its databases: free space and "
                                               "start it again (nothing was changed)"));
  }
  bool fresh = false;
  if (absl::Status st = CheckDataDir(dir, opts.s3_chunks.has_value(), &fresh); !st.ok()) {
    ::close(fd);
    return st;
  }
  auto meta = OpenRocksMetaStore(dir + "/meta", /*create_if_missing=*/fresh);
  if (!meta.ok()) {
    ::close(fd);
    return meta.status();
  }
  std::optional<S3Options> s3 = opts.s3_chunks;
  if (s3 && s3->cache_bytes > 0 && s3->cache_dir.empty()) s3->cache_dir = dir + "/s3-cache";
  if (s3 && s3->index_dir.empty()) s3->index_dir = dir + "/s3-index";
  if (s3 && s3->clock == nullptr) s3->clock = clock;
  auto chunks = s3 ? OpenS3ChunkStore(*s3) : OpenPackChunkStore(dir + "/chunks", opts.pack);
  if (!chunks.ok()) {
    ::close(fd);
    return chunks.status();
  }
  std::unique_ptr<Repository> repo(
      new Repository(std::move(*meta), std::move(*chunks), opts, clock));
  repo->lock_fd_ = fd;  // closed by the destructor, whatever Init says
  repo->data_dir_ = dir;
  CAIRN_RETURN_IF_ERROR(repo->Init(std::move(trust)));
  return repo;
}

absl::StatusOr<std::unique_ptr<Repository>> Repository::Create(std::unique_ptr<MetaStore> meta,
                                                               std::unique_ptr<ChunkStore> chunks,
                                                               TrustRootView trust,
                                                               const RepositoryOptions& opts,
                                                               Clock* clock) {
  std::unique_ptr<Repository> repo(new Repository(std::move(meta), std::move(chunks), opts, clock));
  CAIRN_RETURN_IF_ERROR(repo->Init(std::move(trust)));
  return repo;
}

Repository::Repository(std::unique_ptr<MetaStore> meta, std::unique_ptr<ChunkStore> chunks,
                       const RepositoryOptions& opts, Clock* clock)
    : meta_(std::move(meta)), opts_(opts), clock_(clock) {
  auto guard = std::make_unique<GcGuardedStore>(std::move(chunks), clock, opts.session_seconds);
  gc_guard_ = guard.get();
  chunks_ = std::move(guard);
}

absl::Status Repository::Init(TrustRootView trust) {
  auto id = meta_->Get(Table::kState, meta::kNodeId);
  if (absl::IsNotFound(id.status())) {
    node_id_ = meta::RandomHex(8);
    CAIRN_RETURN_IF_ERROR(
        meta_->Commit({{Table::kState, std::string(meta::kNodeId), node_id_}}, /*sync=*/true));
  } else {
    CAIRN_RETURN_IF_ERROR(Annotate(id.status(), "reading the node id"));
    node_id_ = *id;
  }
  CAIRN_ASSIGN_OR_RETURN(feed_, ChangeFeed::Load(meta_.get(), opts_.feed_retain));
  CAIRN_ASSIGN_OR_RETURN(trust_, TrustState::Load(meta_.get(), clock_, std::move(trust)));
  PublishSessionOptions so;
  so.session_seconds = opts_.session_seconds;
  so.challenge_seconds = opts_.challenge_seconds;
  so.max_sessions_per_peer = opts_.max_sessions_per_peer;
  so.max_sessions = opts_.max_sessions;
  so.upload_bytes_per_day = opts_.upload_bytes_per_day;
  so.upload_quota_by_key = opts_.upload_quota_by_key;
  sessions_ = std::make_unique<PublishSessions>(meta_.get(), clock_, std::move(so));
  // Sessions end with the process: chunk lists they staged and no commit
  // consumed are removed (a replication's staged lists have no marker).
  std::vector<WriteOp> drop;
  CAIRN_RETURN_IF_ERROR(meta_->Scan(
      Table::kState, meta::kSessionStagedPrefix, [&](std::string_view k, std::string_view) {
        drop.push_back(WriteOp{Table::kStaging,
                               std::string(k.substr(meta::kSessionStagedPrefix.size())),
                               std::nullopt});
        drop.push_back(WriteOp{Table::kState, std::string(k), std::nullopt});
        return true;
      }));
  // Uploads in parts: sessions do not survive a restart.
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kStaging, meta::kUploadPrefix, [&](std::string_view k, std::string_view) {
        drop.push_back(WriteOp{Table::kStaging, std::string(k), std::nullopt});
        return true;
      }));
  if (!drop.empty()) CAIRN_RETURN_IF_ERROR(meta_->Commit(drop, /*sync=*/true));
  return absl::OkStatus();
}

Repository::~Repository() {
  sessions_.reset();
  trust_.reset();
  feed_.reset();
  chunks_.reset();
  meta_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

// ---------------- Trust ----------------

TrustRootView Repository::trust() const { return *trust_->Current(); }

const std::string& Repository::trust_note() const { return trust_->note(); }

absl::StatusOr<int> Repository::AdoptTrustChain(const std::vector<std::string>& chain) {
  return trust_->Adopt(chain);
}

absl::StatusOr<std::vector<std::string>> Repository::TrustChainAfter(uint64_t version) {
  return trust_->ChainAfter(version);
}

std::string Repository::WithheldReason(std::string_view manifest_digest) const {
  return trust_->WithheldReason(manifest_digest);
}

// ---------------- Registry ----------------

absl::StatusOr<cairn::v1::ResolveResponse> Repository::Resolve(std::string_view ref_text,
                                                               bool include_withheld) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(ref_text));
  cairn::v1::ResolveResponse out;
  std::string digest = ref.digest;
  if (!ref.version.empty()) {
    auto d = meta_->Get(Table::kReleases, Key2(ref.name, ref.version));
    if (absl::IsNotFound(d.status())) {
      return absl::NotFoundError(StrCat("unknown name or version: ", ref.ToString()));
    }
    CAIRN_RETURN_IF_ERROR(d.status());
    digest = std::move(*d);
  } else if (digest.empty()) {
    CAIRN_ASSIGN_OR_RETURN(std::optional<meta::StoredTag> tag,
                           meta::ReadTag(meta_.get(), ref.name, ref.tag));
    if (!tag) return absl::NotFoundError(StrCat("unknown name or tag: ", ref.ToString()));
    digest = tag->record.manifest_digest();
    std::string why;
    const bool withheld = trust_->TagWithheld(Key2(ref.name, ref.tag), &why);
    if (withheld && include_withheld) {
      out.set_withheld(true);
    } else if (withheld) {
      return absl::FailedPreconditionError(
          StrCat("tag ", ref.ToString(),
                 " is withheld by this node: it no longer verifies under "
                 "trust root v",
                 trust().root().version(), " (", why, ")"));
    }
    out.set_tag_envelope(std::move(tag->envelope));
  }
  auto env = meta_->Get(Table::kEnvelopes, digest);
  if (absl::IsNotFound(env.status())) {
    return absl::NotFoundError(StrCat("unknown release: ", ref.ToString()));
  }
  CAIRN_RETURN_IF_ERROR(env.status());
  Envelope e;
  Manifest m;
  if (!e.ParseFromString(*env) || !m.ParseFromString(e.payload())) {
    return absl::DataLossError("stored manifest envelope is corrupt: " + digest);
  }
  if (m.name() != ref.name) {
    return absl::NotFoundError(StrCat(digest, " is not a release of ", ref.name));
  }
  if (std::string why = WithheldReason(digest); !why.empty() && include_withheld) {
    out.set_withheld(true);
  } else if (!why.empty()) {
    return absl::FailedPreconditionError(
        StrCat("release ", m.name(), " ", m.version(), " (", digest,
               ") is withheld by this node: it no longer verifies under trust root v",
               trust().root().version(), " (", why, "); kept on disk until garbage collection"));
  }
  CAIRN_ASSIGN_OR_RETURN(std::optional<meta::StoredYank> yank, meta::ReadYank(meta_.get(), digest));
  if (yank && yank->record.yanked() && ref.digest.empty() && ref.version.empty() &&
      !include_withheld) {
    return absl::FailedPreconditionError(StrCat(
        ref.ToString(), " names ", m.name(), " ", m.version(), ", which its publisher yanked (",
        yank->record.reason(), "); to use it anyway, name it by digest: ", m.name(), "@", digest));
  }
  if (yank) out.set_yank_envelope(std::move(yank->envelope));
  out.set_manifest_digest(digest);
  out.set_manifest_envelope(std::move(*env));
  return out;
}

absl::StatusOr<std::string> Repository::GetObject(std::string_view digest) {
  CAIRN_RETURN_IF_ERROR(ParseDigestName(digest).status());
  return LoadObject(digest, /*allow_staged=*/false);
}

absl::StatusOr<std::string> Repository::GetObjectOrStaged(std::string_view digest) {
  return LoadObject(digest, /*allow_staged=*/true);
}

absl::StatusOr<std::string> Repository::LoadObject(std::string_view digest, bool allow_staged) {
  auto v = meta_->Get(Table::kObjects, digest);
  if (absl::IsNotFound(v.status()) && allow_staged) v = meta_->Get(Table::kStaging, digest);
  if (absl::IsNotFound(v.status())) {
    return absl::NotFoundError(StrCat("object ", digest, " not found"));
  }
  return v;
}

absl::Status Repository::ScanServedTags(
    std::string_view prefix,
    const std::function<void(std::string_view, const cairn::v1::TagRecord&)>& fn) {
  absl::Status inner;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kTags, prefix, [&](std::string_view k, std::string_view v) {
        auto rec = meta::DecodeStoredTag(k, v);
        if (!rec.ok()) {
          inner = rec.status();
          return false;
        }
        if (!trust_->TagWithheld(std::string(k))) fn(v, *rec);
        return true;
      }));
  return inner;
}

absl::StatusOr<cairn::v1::ListResponse> Repository::List(std::string_view prefix,
                                                         bool include_withheld,
                                                         bool include_pending) {
  std::map<std::string, cairn::v1::ListEntry> entries;
  absl::Status inner;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, prefix, [&](std::string_view k, std::string_view v) {
        std::vector<std::string_view> parts = Split(k, '\0', 2);
        if (parts.size() != 2 || (!include_withheld && !WithheldReason(v).empty())) return true;
        auto& e = entries[std::string(parts[0])];
        e.set_name(std::string(parts[0]));
        auto* r = e.add_releases();
        r->set_version(std::string(parts[1]));
        r->set_manifest_digest(std::string(v));
        auto obj = meta_->Get(Table::kObjects, v);
        Manifest m;
        if (obj.ok() && m.ParseFromString(*obj)) {
          uint64_t bytes = 0;
          for (const auto& f : m.files()) bytes += f.size();
          r->set_bytes(bytes);
          r->set_files(m.files_size());
        }
        auto y = meta::ReadYank(meta_.get(), v);
        if (!y.ok()) {
          inner = y.status();
          return false;
        }
        if (*y && (*y)->record.yanked()) {
          r->set_yanked(true);
          r->set_yank_reason((*y)->record.reason());
        }
        return true;
      }));
  CAIRN_RETURN_IF_ERROR(inner);
  CAIRN_RETURN_IF_ERROR(ScanServedTags(prefix, [&](std::string_view, const TagRecord& rec) {
    auto& e = entries[rec.name()];
    e.set_name(rec.name());
    auto* t = e.add_tags();
    t->set_tag(rec.tag());
    t->set_version(rec.version());
    t->set_manifest_digest(rec.manifest_digest());
    t->set_expires_unix(rec.expires_unix());
  }));
  if (include_pending) CAIRN_RETURN_IF_ERROR(AddPending(prefix, &entries));
  cairn::v1::ListResponse out;
  for (auto& [name, e] : entries) *out.add_entries() = std::move(e);
  return out;
}

absl::StatusOr<cairn::v1::LineageResponse> Repository::Lineage(std::string_view ref) {
  CAIRN_ASSIGN_OR_RETURN(auto res, Resolve(ref));
  cairn::v1::LineageResponse out;
  out.set_manifest_digest(res.manifest_digest());
  out.set_manifest_envelope(res.manifest_envelope());
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kChildren, Key2(res.manifest_digest(), ""),
                  [&](std::string_view k, std::string_view v) {
                    std::vector<std::string_view> parts = Split(v, '\0');
                    if (parts.size() != 3) return true;
                    auto* c = out.add_children();
                    c->set_manifest_digest(std::string(k.substr(k.find('\0') + 1)));
                    c->set_name(std::string(parts[0]));
                    c->set_version(std::string(parts[1]));
                    int rel = 0;
                    if (ParseInt(parts[2], &rel) && cairn::v1::Relation_IsValid(rel)) {
                      c->set_relation(static_cast<cairn::v1::Relation>(rel));
                    }
                    return true;
                  }));
  return out;
}

}  // namespace cairn
