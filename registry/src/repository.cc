#include "cairn/repository.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

using cairn::v1::Envelope;
using cairn::v1::Manifest;
using cairn::v1::TagRecord;

int64_t SystemNowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

std::string Key2(std::string_view a, std::string_view b) {
  std::string k(a);
  k.push_back('\0');
  k.append(b);
  return k;
}

std::string RandomHex(size_t n) {
  std::string b(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(b.data()), static_cast<int>(n)) != 1) {
    std::abort();  // the CSPRNG failing is not recoverable
  }
  return ToHex(reinterpret_cast<const uint8_t*>(b.data()), n);
}

}  // namespace

absl::StatusOr<TagRecord> VerifyTagEnvelope(const TrustRootView& trust, std::string_view bytes,
                                            int64_t now) {
  CAIRN_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(bytes, kMaxTagBytes + 8192));
  if (env.payload_type() != kTagPayloadType) {
    return absl::InvalidArgumentError("tag envelope has payload type '" + env.payload_type() + "'");
  }
  CAIRN_ASSIGN_OR_RETURN(TagRecord rec, ParseTagRecord(env.payload()));
  auto st = trust.VerifyDelegated(env, NamespaceOf(rec.name()));
  if (!st.ok()) return Annotate(st, "tag " + rec.name() + ":" + rec.tag());
  if (rec.expires_unix() <= now) {
    return absl::FailedPreconditionError(
        StrCat("tag ", rec.name(), ":", rec.tag(), " v", rec.version(), " expired at unix time ",
               rec.expires_unix(), "; ask the publisher to re-sign it (cairn publish ... --tag)"));
  }
  return rec;
}

absl::StatusOr<Manifest> VerifyManifestEnvelope(const TrustRootView& trust, std::string_view bytes,
                                                std::string* digest) {
  CAIRN_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(bytes, kMaxEnvelopeBytes));
  if (env.payload_type() != kManifestPayloadType) {
    return absl::InvalidArgumentError("manifest envelope has payload type '" + env.payload_type() +
                                      "'");
  }
  CAIRN_ASSIGN_OR_RETURN(Manifest m, ParseManifest(env.payload()));
  auto st = trust.VerifyDelegated(env, NamespaceOf(m.name()));
  if (!st.ok()) return Annotate(st, "release " + m.name() + " " + m.version());
  *digest = DigestName(Sha256Of(env.payload()));
  return m;
}

absl::StatusOr<std::unique_ptr<Repository>> Repository::Open(const std::string& dir,
                                                             TrustRootView trust,
                                                             const RepositoryOptions& opts,
                                                             Clock clock) {
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
  auto meta = OpenRocksMetaStore(dir + "/meta");
  if (!meta.ok()) {
    ::close(fd);
    return meta.status();
  }
  auto chunks = OpenPackChunkStore(dir + "/chunks", opts.pack);
  if (!chunks.ok()) {
    ::close(fd);
    return chunks.status();
  }
  auto repo = std::make_unique<Repository>(std::move(*meta), std::move(*chunks), std::move(trust),
                                           opts, std::move(clock));
  repo->lock_fd_ = fd;
  repo->data_dir_ = dir;
  CAIRN_RETURN_IF_ERROR(repo->init_status_);
  return repo;
}

Repository::Repository(std::unique_ptr<MetaStore> meta, std::unique_ptr<ChunkStore> chunks,
                       TrustRootView trust, const RepositoryOptions& opts, Clock clock)
    : meta_(std::move(meta)), chunks_(std::move(chunks)), opts_(opts), clock_(std::move(clock)) {
  trust_ = std::make_shared<const TrustRootView>(trust);
  init_status_ = InitState();
  if (init_status_.ok()) init_status_ = InitTrust(std::move(trust));
}

namespace {

std::string SeqKey(uint64_t seq) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i) {
    k[i] = static_cast<char>(seq & 0xff);
    seq >>= 8;
  }
  return k;
}

uint64_t ParseU64(std::string_view s) {
  uint64_t v = 0;
  return ParseInt(s, &v) ? v : 0;
}

}  // namespace

absl::Status Repository::InitState() {
  auto id = meta_->Get(Table::kState, "node_id");
  if (absl::IsNotFound(id.status())) {
    node_id_ = RandomHex(8);
    CAIRN_RETURN_IF_ERROR(meta_->Commit({{Table::kState, "node_id", node_id_}}, /*sync=*/true));
  } else {
    CAIRN_RETURN_IF_ERROR(id.status());
    node_id_ = *id;
  }
  absl::MutexLock l(&commit_mu_);
  auto head = meta_->Get(Table::kState, "feed_head");
  if (head.ok()) feed_head_ = ParseU64(*head);
  auto tail = meta_->Get(Table::kState, "feed_tail");
  if (tail.ok()) feed_tail_ = std::max<uint64_t>(1, ParseU64(*tail));
  return absl::OkStatus();
}

namespace {

constexpr std::string_view kTrustPrefix = "trust/";
constexpr std::string_view kPendingPrefix = "pending/";

std::string TrustKey(uint64_t version) {
  std::string v = StrCat(version);
  return StrCat(kTrustPrefix, std::string(20 - std::min<size_t>(20, v.size()), '0'), v);
}

}  // namespace

std::shared_ptr<const TrustRootView> Repository::TrustPtr() const {
  absl::MutexLock l(&trust_mu_);
  return trust_;
}

TrustRootView Repository::trust() const { return *TrustPtr(); }

absl::Status Repository::InitTrust(TrustRootView file_root) {
  std::map<uint64_t, std::string> stored;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, kTrustPrefix, [&](std::string_view k, std::string_view v) {
        uint64_t version = 0;
        if (ParseInt(k.substr(kTrustPrefix.size()), &version)) stored[version] = std::string(v);
        return true;
      }));
  const uint64_t fv = file_root.root().version();
  TrustRootView cur = file_root;
  std::vector<WriteOp> ops;
  auto same = stored.find(fv);
  if (same != stored.end() && same->second == file_root.envelope_bytes()) {
    std::vector<std::string> newer;
    for (const auto& [v, bytes] : stored) {
      if (v > fv) newer.push_back(bytes);
    }
    if (!newer.empty()) {
      auto walked = WalkTrustChain(file_root, newer, kIgnoreExpiry);
      if (walked.ok()) {
        cur = std::move(*walked);
        trust_note_ = StrCat("trust file is v", fv, "; using v", cur.root().version(),
                             " received since and stored");
      } else {
        trust_note_ = StrCat("stored trust roots past the file's v", fv, " do not verify (",
                             walked.status().message(), "); using the file");
      }
    }
  } else if (!stored.empty() && stored.rbegin()->first >= fv) {
    // The file is another lineage (a new trust root): the operator's file wins.
    trust_note_ = StrCat("trust file v", fv, " is not the v", fv,
                         " this node stored; starting over from the file");
    for (const auto& [v, bytes] : stored) {
      ops.push_back(WriteOp{Table::kState, TrustKey(v), std::nullopt});
    }
  }
  ops.push_back(WriteOp{Table::kState, TrustKey(fv), file_root.envelope_bytes()});
  CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  if (cur.root().expires_unix() <= clock_()) {
    return absl::FailedPreconditionError(StrCat(
        "trust root v", cur.root().version(), " expired at unix time ", cur.root().expires_unix(),
        "; start the node with a newer trust file (cairn trust update, or from the root key "
        "holders)"));
  }
  {
    absl::MutexLock l(&trust_mu_);
    trust_ = std::make_shared<const TrustRootView>(cur);
  }
  return RecheckHeld(cur);
}

absl::Status Repository::RecheckHeld(const TrustRootView& trust) {
  absl::flat_hash_map<std::string, std::string> releases, tags;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kEnvelopes, "", [&](std::string_view k, std::string_view v) {
        std::string digest;
        auto m = VerifyManifestEnvelope(trust, v, &digest);
        if (!m.ok()) releases[std::string(k)] = std::string(m.status().message());
        return true;
      }));
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kTags, "", [&](std::string_view k, std::string_view v) {
    // Expiry is the client's check; here only who signed it matters.
    auto rec = VerifyTagEnvelope(trust, v, kIgnoreExpiry);
    if (!rec.ok()) tags[std::string(k)] = std::string(rec.status().message());
    return true;
  }));
  absl::MutexLock l(&trust_mu_);
  withheld_ = std::move(releases);
  withheld_tags_ = std::move(tags);
  return absl::OkStatus();
}

absl::StatusOr<int> Repository::AdoptTrustChain(const std::vector<std::string>& chain) {
  CAIRN_RETURN_IF_ERROR(init_status_);
  absl::MutexLock adopt(&adopt_mu_);
  std::shared_ptr<const TrustRootView> cur = TrustPtr();
  CAIRN_ASSIGN_OR_RETURN(TrustRootView next, WalkTrustChain(*cur, chain, clock_()));
  const uint64_t from = cur->root().version(), to = next.root().version();
  if (to == from) return 0;
  std::vector<WriteOp> ops;
  for (const auto& bytes : chain) {
    Envelope env;
    cairn::v1::TrustRoot root;
    if (!env.ParseFromString(bytes) || !root.ParseFromString(env.payload())) continue;
    if (root.version() > from && root.version() <= to) {
      ops.push_back(WriteOp{Table::kState, TrustKey(root.version()), bytes});
    }
  }
  CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  {
    absl::MutexLock l(&trust_mu_);
    trust_ = std::make_shared<const TrustRootView>(next);
  }
  CAIRN_RETURN_IF_ERROR(RecheckHeld(next));
  return static_cast<int>(to - from);
}

absl::StatusOr<std::vector<std::string>> Repository::TrustChainAfter(uint64_t version) {
  std::vector<std::string> out;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, kTrustPrefix, [&](std::string_view k, std::string_view v) {
        uint64_t ver = 0;
        if (ParseInt(k.substr(kTrustPrefix.size()), &ver) && ver > version) {
          out.push_back(std::string(v));
        }
        return true;
      }));
  return out;  // keys are zero-padded: oldest first
}

std::string Repository::WithheldReason(std::string_view manifest_digest) const {
  absl::MutexLock l(&trust_mu_);
  auto it = withheld_.find(std::string(manifest_digest));
  return it == withheld_.end() ? std::string() : it->second;
}

bool Repository::TagWithheld(const std::string& key, std::string* why) const {
  absl::MutexLock l(&trust_mu_);
  auto it = withheld_tags_.find(key);
  if (it == withheld_tags_.end()) return false;
  if (why) *why = it->second;
  return true;
}

Repository::~Repository() {
  chunks_.reset();
  meta_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

// ---------------- Registry ----------------

absl::StatusOr<cairn::v1::ResolveResponse> Repository::Resolve(std::string_view ref_text) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(ref_text));
  cairn::v1::ResolveResponse out;
  std::string digest = ref.digest;
  if (digest.empty()) {
    auto tag = meta_->Get(Table::kTags, Key2(ref.name, ref.tag));
    if (absl::IsNotFound(tag.status())) {
      return absl::NotFoundError(StrCat("unknown name or tag: ", ref.ToString()));
    }
    CAIRN_RETURN_IF_ERROR(tag.status());
    Envelope env;
    TagRecord rec;
    if (!env.ParseFromString(*tag) || !rec.ParseFromString(env.payload())) {
      return absl::DataLossError("stored tag record is corrupt: " + ref.ToString());
    }
    digest = rec.manifest_digest();
    if (std::string why; TagWithheld(Key2(ref.name, ref.tag), &why)) {
      return absl::FailedPreconditionError(
          StrCat("tag ", ref.ToString(),
                 " is withheld by this node: it no longer verifies under "
                 "trust root v",
                 trust().root().version(), " (", why, ")"));
    }
    out.set_tag_envelope(std::move(*tag));
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
  if (std::string why = WithheldReason(digest); !why.empty()) {
    return absl::FailedPreconditionError(
        StrCat("release ", m.name(), " ", m.version(), " (", digest,
               ") is withheld by this node: it no longer verifies under trust root v",
               trust().root().version(), " (", why, "); kept on disk until garbage collection"));
  }
  out.set_manifest_digest(digest);
  out.set_manifest_envelope(std::move(*env));
  return out;
}

absl::StatusOr<std::string> Repository::GetObject(std::string_view digest) {
  CAIRN_RETURN_IF_ERROR(ParseDigestName(digest).status());
  return LoadObject(digest, /*allow_staged=*/false);
}

absl::StatusOr<std::string> Repository::LoadObject(std::string_view digest, bool allow_staged) {
  auto v = meta_->Get(Table::kObjects, digest);
  if (absl::IsNotFound(v.status()) && allow_staged) v = meta_->Get(Table::kStaging, digest);
  if (absl::IsNotFound(v.status())) {
    return absl::NotFoundError(StrCat("object ", digest, " not found"));
  }
  return v;
}

absl::StatusOr<cairn::v1::ListResponse> Repository::List(std::string_view prefix) {
  std::map<std::string, cairn::v1::ListEntry> entries;
  absl::Status inner;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, prefix, [&](std::string_view k, std::string_view v) {
        std::vector<std::string_view> parts = Split(k, '\0', 2);
        if (parts.size() != 2 || !WithheldReason(v).empty()) return true;
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
        return true;
      }));
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kTags, prefix, [&](std::string_view k, std::string_view v) {
        Envelope env;
        TagRecord rec;
        if (!env.ParseFromArray(v.data(), v.size()) || !rec.ParseFromString(env.payload()) ||
            TagWithheld(std::string(k), nullptr)) {
          return true;
        }
        auto& e = entries[rec.name()];
        e.set_name(rec.name());
        auto* t = e.add_tags();
        t->set_tag(rec.tag());
        t->set_version(rec.version());
        t->set_manifest_digest(rec.manifest_digest());
        t->set_expires_unix(rec.expires_unix());
        return true;
      }));
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

// ---------------- Federation ----------------

absl::StatusOr<cairn::v1::FeedResponse> Repository::Feed(uint64_t after, uint32_t max_events) {
  CAIRN_RETURN_IF_ERROR(init_status_);
  uint32_t max = max_events == 0 ? 1000 : std::min<uint32_t>(max_events, 1000);
  uint64_t head, tail;
  {
    absl::MutexLock l(&commit_mu_);
    head = feed_head_;
    tail = feed_tail_;
  }
  cairn::v1::FeedResponse out;
  out.set_head(head);
  if (after > head) {
    return absl::OutOfRangeError(StrCat("cursor ", after, " is ahead of this node's feed head ",
                                        head, " (a different node, or one restored from backup?)"));
  }
  if (after + 1 < tail) {
    // The events after `after` were dropped: send the current state instead.
    out.set_snapshot(true);
    std::map<std::string, cairn::v1::FeedEvent> by_digest;
    CAIRN_RETURN_IF_ERROR(
        meta_->Scan(Table::kReleases, "", [&](std::string_view k, std::string_view v) {
          std::vector<std::string_view> parts = Split(k, '\0', 2);
          if (parts.size() != 2) return true;
          auto env = meta_->Get(Table::kEnvelopes, v);
          if (!env.ok() || !WithheldReason(v).empty()) return true;
          auto& ev = by_digest[std::string(v)];
          ev.set_name(std::string(parts[0]));
          ev.set_version(std::string(parts[1]));
          ev.set_manifest_digest(std::string(v));
          ev.set_manifest_envelope(std::move(*env));
          return true;
        }));
    std::vector<cairn::v1::FeedEvent> tag_events;
    CAIRN_RETURN_IF_ERROR(
        meta_->Scan(Table::kTags, "", [&](std::string_view k, std::string_view v) {
          cairn::v1::Envelope env;
          TagRecord rec;
          if (!env.ParseFromArray(v.data(), v.size()) || !rec.ParseFromString(env.payload()) ||
              TagWithheld(std::string(k), nullptr)) {
            return true;
          }
          auto it = by_digest.find(rec.manifest_digest());
          if (it == by_digest.end()) return true;
          cairn::v1::FeedEvent ev = it->second;  // one event per tag, with its release
          ev.set_tag_envelope(std::string(v));
          tag_events.push_back(std::move(ev));
          return true;
        }));
    for (auto& [d, ev] : by_digest) *out.add_events() = std::move(ev);
    for (auto& ev : tag_events) *out.add_events() = std::move(ev);
    return out;
  }
  uint64_t next = after + 1;
  out.set_covered(after);
  while (next <= head && out.events_size() < static_cast<int>(max)) {
    auto v = meta_->Get(Table::kFeed, SeqKey(next));
    if (absl::IsNotFound(v.status())) break;  // dropped by retention meanwhile
    CAIRN_RETURN_IF_ERROR(v.status());
    cairn::v1::FeedEvent* ev = out.add_events();
    if (!ev->ParseFromString(*v)) {
      return absl::DataLossError(StrCat("feed event ", next, " is corrupt"));
    }
    out.set_covered(next);
    ++next;
    // What no longer verifies here is not passed on (the follower's cursor
    // still moves past it: events skipped at the end are covered by head).
    if (!WithheldReason(ev->manifest_digest()).empty()) {
      out.mutable_events()->RemoveLast();
      continue;
    }
    if (!ev->tag_envelope().empty()) {
      Envelope te;
      TagRecord tr;
      if (te.ParseFromString(ev->tag_envelope()) && tr.ParseFromString(te.payload()) &&
          TagWithheld(Key2(tr.name(), tr.tag()), nullptr)) {
        ev->clear_tag_envelope();
      }
    }
  }
  return out;
}

uint64_t Repository::WaitForFeed(uint64_t after, absl::Duration timeout) {
  struct Arg {
    Repository* repo;
    uint64_t after;
  } arg{this, after};
  absl::MutexLock l(&commit_mu_);
  commit_mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->repo->feed_head_ > a->after; },
          &arg),
      timeout);
  return feed_head_;
}

absl::StatusOr<cairn::v1::SummaryResponse> Repository::Summary() {
  cairn::v1::SummaryResponse out;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, "", [&](std::string_view k, std::string_view v) {
        std::vector<std::string_view> parts = Split(k, '\0', 2);
        if (parts.size() != 2) return true;
        if (!WithheldReason(v).empty()) return true;
        auto* r = out.add_releases();
        r->set_name(std::string(parts[0]));
        r->set_version(std::string(parts[1]));
        r->set_manifest_digest(std::string(v));
        return true;
      }));
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kTags, "", [&](std::string_view k, std::string_view v) {
    Envelope env;
    TagRecord rec;
    if (!env.ParseFromArray(v.data(), v.size()) || !rec.ParseFromString(env.payload())) return true;
    if (TagWithheld(std::string(k), nullptr)) return true;
    auto* t = out.add_tags();
    t->set_name(rec.name());
    t->set_tag(rec.tag());
    t->set_version(rec.version());
    t->set_manifest_digest(rec.manifest_digest());
    return true;
  }));
  return out;
}

uint64_t Repository::TagVersion(const std::string& name, const std::string& tag) {
  auto cur = meta_->Get(Table::kTags, Key2(name, tag));
  Envelope env;
  TagRecord rec;
  if (!cur.ok() || !env.ParseFromString(*cur) || !rec.ParseFromString(env.payload())) return 0;
  return rec.version();
}

absl::StatusOr<cairn::v1::NodeInfoResponse> Repository::NodeInfo() {
  CAIRN_RETURN_IF_ERROR(init_status_);
  cairn::v1::NodeInfoResponse out;
  out.set_node_id(node_id_);
  out.set_region(opts_.region);
  out.set_trust_version(trust().root().version());
  {
    absl::MutexLock l(&trust_mu_);
    out.set_releases_withheld(withheld_.size());
    out.set_tags_withheld(withheld_tags_.size());
  }
  {
    absl::MutexLock l(&commit_mu_);
    out.set_feed_head(feed_head_);
  }
  if (!data_dir_.empty()) {
    struct statvfs vfs;
    if (::statvfs(data_dir_.c_str(), &vfs) == 0) {
      out.set_free_bytes(static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize);
    }
  }
  std::set<std::string> namespaces;
  uint64_t releases = 0;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, "", [&](std::string_view k, std::string_view) {
        namespaces.insert(std::string(NamespaceOf(k)));
        ++releases;
        return true;
      }));
  for (const auto& ns : namespaces) out.add_namespaces(ns);
  out.set_releases(releases);
  return out;
}

// ---------------- Publish ----------------

namespace {
template <typename Map>
size_t CountPeer(const Map& m, std::string_view peer) {
  if (peer.empty()) return 0;
  size_t n = 0;
  for (const auto& [id, s] : m) n += s.peer == peer;
  return n;
}
}  // namespace

absl::StatusOr<cairn::v1::ChallengeResponse> Repository::Challenge(std::string_view name,
                                                                   std::string_view peer) {
  CAIRN_RETURN_IF_ERROR(ValidateName(name));
  int64_t now = clock_();
  std::string c = RandomHex(32);
  absl::MutexLock l(&mu_);
  absl::erase_if(challenges_, [&](const auto& kv) { return kv.second.expires <= now; });
  if (challenges_.size() >= opts_.max_sessions) {
    return absl::ResourceExhaustedError("too many pending publish challenges; retry later");
  }
  if (CountPeer(challenges_, peer) >= opts_.max_sessions_per_peer) {
    return absl::ResourceExhaustedError(StrCat("too many pending publish challenges from ", peer,
                                               " (limit ", opts_.max_sessions_per_peer, ")"));
  }
  challenges_[c] = Session{std::string(name), now + opts_.challenge_seconds, std::string(peer), ""};
  cairn::v1::ChallengeResponse out;
  out.set_challenge(c);
  out.set_expires_unix(now + opts_.challenge_seconds);
  return out;
}

absl::StatusOr<cairn::v1::OpenSessionResponse> Repository::OpenSession(
    const cairn::v1::OpenSessionRequest& r, std::string_view peer) {
  CAIRN_RETURN_IF_ERROR(ValidateName(r.name()));
  int64_t now = clock_();
  {
    absl::MutexLock l(&mu_);
    auto it = challenges_.find(r.challenge());
    if (it == challenges_.end() || it->second.expires <= now || it->second.name != r.name()) {
      return absl::UnauthenticatedError("unknown or expired publish challenge");
    }
    challenges_.erase(it);  // one use only
  }
  std::string_view ns = NamespaceOf(r.name());
  std::string pae = Pae(kSessionPayloadType, StrCat(r.challenge(), "\n", r.name()));
  std::vector<std::string> tried;
  bool ok = false;
  std::string signer;
  std::shared_ptr<const TrustRootView> trust = TrustPtr();
  for (const auto& s : r.signatures()) {
    tried.push_back(s.key_id());
    const auto* key = trust->FindKey(s.key_id());
    if (key && trust->IsDelegated(s.key_id(), ns) && VerifyEd25519(key->ed25519(), pae, s.sig())) {
      ok = true;
      signer = s.key_id();
      break;
    }
  }
  if (!ok) {
    return absl::PermissionDeniedError(
        StrCat("key(s) ", StrJoin(tried, ", "), " not delegated for namespace '", ns,
               "' (or revoked) in this node's trust root v", trust->root().version(),
               " (or bad signature): run cairn trust delegate, then cairn trust push --node to "
               "give the node the new root"));
  }
  cairn::v1::OpenSessionResponse out;
  out.set_session_id(RandomHex(24));
  out.set_expires_unix(now + opts_.session_seconds);
  absl::MutexLock l(&mu_);
  absl::erase_if(sessions_, [&](const auto& kv) { return kv.second.expires <= now; });
  if (sessions_.size() >= opts_.max_sessions) {
    return absl::ResourceExhaustedError("too many open publish sessions; retry later");
  }
  if (CountPeer(sessions_, peer) >= opts_.max_sessions_per_peer) {
    return absl::ResourceExhaustedError(StrCat(
        "too many open publish sessions from ", peer, " (limit ", opts_.max_sessions_per_peer,
        "); they expire ", opts_.session_seconds, "s after opening"));
  }
  sessions_[out.session_id()] = Session{r.name(), out.expires_unix(), std::string(peer), signer};
  return out;
}

absl::Status Repository::ChargeUpload(std::string_view session_id, uint64_t bytes) {
  const int64_t now = clock_();
  const int64_t day = now / 86400;
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end() || it->second.expires <= now) {
    return absl::UnauthenticatedError("unknown or expired publish session");
  }
  const std::string& key = it->second.key_id;
  uint64_t quota = opts_.upload_bytes_per_day;
  if (auto q = opts_.upload_quota_by_key.find(key); q != opts_.upload_quota_by_key.end()) {
    quota = q->second;
  }
  if (quota == 0) return absl::OkStatus();
  auto& [d, used] = uploads_[key];
  if (d != day) {
    d = day;
    used = 0;
    auto stored = meta_->Get(Table::kState, StrCat("quota/", key, "/", day));
    if (stored.ok()) used = ParseU64(*stored);
  }
  if (used + bytes > quota) {
    return absl::ResourceExhaustedError(
        StrCat("upload quota of publisher key ", key, " exhausted: ", used, " of ", quota,
               " bytes used today; it resets at 00:00 UTC (in ", (day + 1) * 86400 - now,
               " s), or ask the node operator to raise it"));
  }
  used += bytes;
  return meta_->Commit({WriteOp{Table::kState, StrCat("quota/", key, "/", day), StrCat(used)}},
                       /*sync=*/false);
}

uint64_t Repository::UploadedToday(const std::string& key_id) {
  const int64_t day = clock_() / 86400;
  auto stored = meta_->Get(Table::kState, StrCat("quota/", key_id, "/", day));
  return stored.ok() ? ParseU64(*stored) : 0;
}

absl::StatusOr<std::string> Repository::CheckSession(std::string_view id) {
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(std::string(id));
  if (it == sessions_.end() || it->second.expires <= clock_()) {
    return absl::UnauthenticatedError("publish session unknown or expired; open a new one");
  }
  return it->second.name;
}

absl::StatusOr<std::string> Repository::StageChunkList(std::string_view session_id,
                                                       std::string_view bytes) {
  CAIRN_RETURN_IF_ERROR(CheckSession(session_id).status());
  CAIRN_RETURN_IF_ERROR(ParseChunkList(bytes).status());
  std::string digest = DigestName(Sha256Of(bytes));
  CAIRN_RETURN_IF_ERROR(
      meta_->Commit({WriteOp{Table::kStaging, digest, std::string(bytes)}}, /*sync=*/false));
  return digest;
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::Commit(std::string_view session_id,
                                                             std::string_view manifest_envelope,
                                                             std::string_view tag_envelope) {
  CAIRN_RETURN_IF_ERROR(init_status_);
  CAIRN_ASSIGN_OR_RETURN(std::string session_name, CheckSession(session_id));
  CommitSpec spec;
  spec.required_name = session_name;
  // Short of the namespace's threshold, but signed by at least one of its
  // keys: keep it for co-signers.
  auto env = ParseEnvelope(manifest_envelope, kMaxEnvelopeBytes);
  if (env.ok() && env->payload_type() == kManifestPayloadType) {
    auto m = ParseManifest(env->payload());
    int have = 0, need = 0;
    if (m.ok() && m->name() == session_name) {
      trust().CountDelegated(*env, NamespaceOf(m->name()), &have, &need);
    }
    if (have > 0 && have < need) {
      cairn::v1::PendingResponse p;
      p.set_manifest_envelope(std::string(manifest_envelope));
      p.set_tag_envelope(std::string(tag_envelope));
      p.set_signatures(have);
      p.set_signatures_needed(need);
      p.set_expires_unix(clock_() + opts_.pending_seconds);
      const std::string digest = DigestName(Sha256Of(env->payload()));
      CAIRN_RETURN_IF_ERROR(meta_->Commit(
          {WriteOp{Table::kState, StrCat(kPendingPrefix, digest), p.SerializeAsString()}}, true));
      cairn::v1::CommitResponse out;
      out.set_manifest_digest(digest);
      out.set_pending(true);
      out.set_signatures(have);
      out.set_signatures_needed(need);
      return out;
    }
  }
  return CommitVerified(manifest_envelope, tag_envelope, spec);
}

absl::StatusOr<cairn::v1::PendingResponse> Repository::GetPending(
    std::string_view manifest_digest) {
  CAIRN_RETURN_IF_ERROR(ParseDigestName(manifest_digest).status());
  auto v = meta_->Get(Table::kState, StrCat(kPendingPrefix, manifest_digest));
  if (absl::IsNotFound(v.status())) {
    return absl::NotFoundError(
        StrCat("no release ", manifest_digest, " waits for signatures here"));
  }
  CAIRN_RETURN_IF_ERROR(v.status());
  cairn::v1::PendingResponse p;
  if (!p.ParseFromString(*v)) return absl::DataLossError("stored pending release is corrupt");
  if (p.expires_unix() <= clock_()) {
    CAIRN_RETURN_IF_ERROR(meta_->Commit(
        {WriteOp{Table::kState, StrCat(kPendingPrefix, manifest_digest), std::nullopt}}, true));
    return absl::NotFoundError(StrCat("pending release ", manifest_digest,
                                      " expired before enough co-signatures; publish it again"));
  }
  return p;
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::CoSign(const cairn::v1::CoSignRequest& req) {
  CAIRN_RETURN_IF_ERROR(init_status_);
  if (req.manifest_signatures_size() + req.tag_signatures_size() > 2 * int(kMaxSignatures)) {
    return absl::InvalidArgumentError("too many signatures");
  }
  absl::MutexLock l(&cosign_mu_);
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::PendingResponse p, GetPending(req.manifest_digest()));
  const TrustRootView trust = this->trust();
  Envelope menv, tenv;
  menv.ParseFromString(p.manifest_envelope());
  Manifest m;
  if (!m.ParseFromString(menv.payload())) return absl::DataLossError("pending manifest is corrupt");
  const std::string_view ns = NamespaceOf(m.name());
  // Keeps only signatures by keys delegated for ns that verify over env.
  int added = 0;
  auto add = [&](Envelope* env,
                 const google::protobuf::RepeatedPtrField<cairn::v1::Signature>& sigs) {
    std::string pae = Pae(env->payload_type(), env->payload());
    for (const auto& s : sigs) {
      bool present = false;
      for (const auto& e : env->signatures()) present |= e.key_id() == s.key_id();
      const auto* key = trust.FindKey(s.key_id());
      if (present || key == nullptr || !trust.IsDelegated(s.key_id(), ns) ||
          !VerifyEd25519(key->ed25519(), pae, s.sig()) ||
          env->signatures_size() >= static_cast<int>(kMaxSignatures)) {
        continue;
      }
      *env->add_signatures() = s;
      ++added;
    }
  };
  add(&menv, req.manifest_signatures());
  if (!p.tag_envelope().empty()) {
    tenv.ParseFromString(p.tag_envelope());
    add(&tenv, req.tag_signatures());
  }
  if (added == 0) {
    std::vector<std::string> ids;
    for (const auto& s : req.manifest_signatures()) ids.push_back(s.key_id());
    return absl::PermissionDeniedError(
        StrCat("no new valid signature from a key delegated for namespace '", ns,
               "' (offered: ", StrJoin(ids, ", "),
               "; already signed or not delegated in trust root v", trust.root().version(), ")"));
  }
  p.set_manifest_envelope(SerializeCanonical(menv));
  if (!p.tag_envelope().empty()) p.set_tag_envelope(SerializeCanonical(tenv));
  int have = 0, need = 0;
  trust.CountDelegated(menv, ns, &have, &need);
  int tag_have = need, tag_need = 0;
  if (!p.tag_envelope().empty()) trust.CountDelegated(tenv, ns, &tag_have, &tag_need);
  const std::string key = StrCat(kPendingPrefix, req.manifest_digest());
  if (have < need || tag_have < tag_need) {
    p.set_signatures(have);
    CAIRN_RETURN_IF_ERROR(
        meta_->Commit({WriteOp{Table::kState, key, p.SerializeAsString()}}, true));
    cairn::v1::CommitResponse out;
    out.set_manifest_digest(req.manifest_digest());
    out.set_pending(true);
    out.set_signatures(have);
    out.set_signatures_needed(need);
    return out;
  }
  CommitSpec spec;
  spec.required_name = m.name();
  spec.extra_ops.push_back(WriteOp{Table::kState, key, std::nullopt});
  auto out = CommitVerified(p.manifest_envelope(), p.tag_envelope(), spec);
  if (out.ok()) {
    out->set_signatures(have);
    out->set_signatures_needed(need);
  }
  return out;
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::CommitReplicated(
    std::string_view manifest_envelope, std::string_view tag_envelope, std::string cursor_key,
    uint64_t cursor) {
  CAIRN_RETURN_IF_ERROR(init_status_);
  CommitSpec spec;
  spec.stale_tag_is_ok = true;
  spec.extra_ops.push_back(WriteOp{Table::kState, std::move(cursor_key), StrCat(cursor)});
  return CommitVerified(manifest_envelope, tag_envelope, spec);
}

absl::Status Repository::SetCursor(std::string cursor_key, uint64_t cursor) {
  return meta_->Commit({WriteOp{Table::kState, std::move(cursor_key), StrCat(cursor)}}, true);
}

uint64_t Repository::GetCursor(const std::string& cursor_key) {
  auto v = meta_->Get(Table::kState, cursor_key);
  return v.ok() ? ParseU64(*v) : 0;
}

absl::StatusOr<std::string> Repository::StageReplicatedChunkList(std::string_view bytes) {
  CAIRN_RETURN_IF_ERROR(ParseChunkList(bytes).status());
  std::string digest = DigestName(Sha256Of(bytes));
  CAIRN_RETURN_IF_ERROR(
      meta_->Commit({WriteOp{Table::kStaging, digest, std::string(bytes)}}, /*sync=*/false));
  return digest;
}

std::unique_ptr<Repository::FetchClaim> Repository::ClaimFetch(const std::string& digest) {
  absl::MutexLock l(&fetch_mu_);
  while (fetching_.contains(digest)) fetch_cv_.Wait(&fetch_mu_);
  fetching_.insert(digest);
  return std::make_unique<FetchClaim>(this, digest);
}

Repository::FetchClaim::~FetchClaim() {
  absl::MutexLock l(&repo_->fetch_mu_);
  repo_->fetching_.erase(digest_);
  repo_->fetch_cv_.SignalAll();
}

bool Repository::HasRelease(std::string_view digest) {
  return meta_->Get(Table::kEnvelopes, digest).ok();
}

absl::StatusOr<std::string> Repository::GetObjectOrStaged(std::string_view digest) {
  return LoadObject(digest, /*allow_staged=*/true);
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::CommitVerified(
    std::string_view manifest_envelope, std::string_view tag_envelope, const CommitSpec& spec) {
  std::shared_ptr<const TrustRootView> trust = TrustPtr();
  std::string digest;
  CAIRN_ASSIGN_OR_RETURN(Manifest m, VerifyManifestEnvelope(*trust, manifest_envelope, &digest));
  if (!spec.required_name.empty() && m.name() != spec.required_name) {
    return absl::PermissionDeniedError(
        StrCat("session was opened for ", spec.required_name, ", not for ", m.name()));
  }
  int64_t now = clock_();
  std::optional<TagRecord> tag;
  if (!tag_envelope.empty()) {
    CAIRN_ASSIGN_OR_RETURN(tag, VerifyTagEnvelope(*trust, tag_envelope, now));
    if (tag->name() != m.name() || tag->manifest_digest() != digest) {
      return absl::InvalidArgumentError("tag record does not point at this release");
    }
  }

  std::vector<WriteOp> ops;
  // Every file's chunk list must be uploaded, consistent with the file size,
  // and every chunk present.
  for (const auto& f : m.files()) {
    auto cl_bytes = LoadObject(f.root(), /*allow_staged=*/true);
    if (absl::IsNotFound(cl_bytes.status())) {
      return absl::FailedPreconditionError(
          StrCat("chunk list ", f.root(), " of ", f.path(), " was not uploaded"));
    }
    CAIRN_RETURN_IF_ERROR(cl_bytes.status());
    if (DigestName(Sha256Of(*cl_bytes)) != f.root()) {
      return absl::DataLossError("stored chunk list " + f.root() + " is corrupt");
    }
    CAIRN_ASSIGN_OR_RETURN(auto cl, ParseChunkList(*cl_bytes));
    uint64_t total = 0;
    for (const auto& c : cl.chunks()) {
      total += c.length();
      CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
      CAIRN_ASSIGN_OR_RETURN(bool has, chunks_->Has(d));
      if (!has) {
        return absl::FailedPreconditionError(
            StrCat("chunk ", DigestName(d), " of ", f.path(), " was not uploaded"));
      }
    }
    if (total != f.size()) {
      return absl::InvalidArgumentError(StrCat("chunk list of ", f.path(), " covers ", total,
                                               " bytes, manifest says ", f.size()));
    }
    ops.push_back(WriteOp{Table::kObjects, f.root(), std::move(*cl_bytes)});
    ops.push_back(WriteOp{Table::kStaging, f.root(), std::nullopt});
  }

  absl::MutexLock commit_lock(&commit_mu_);
  cairn::v1::CommitResponse out;
  out.set_manifest_digest(digest);
  const std::string release_key = Key2(m.name(), m.version());
  auto existing = meta_->Get(Table::kReleases, release_key);
  if (existing.ok() && *existing != digest) {
    return absl::AlreadyExistsError(StrCat("release ", m.name(), " ", m.version(),
                                           " already exists with different content (", *existing,
                                           "); releases are immutable: publish a new version"));
  }
  if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();
  out.set_already_present(existing.ok());
  bool tag_moved = false;
  if (tag) {
    tag_moved = true;
    auto cur = meta_->Get(Table::kTags, Key2(tag->name(), tag->tag()));
    if (cur.ok()) {
      Envelope ce;
      TagRecord cr;
      if (ce.ParseFromString(*cur) && cr.ParseFromString(ce.payload()) &&
          cr.version() >= tag->version()) {
        if (cr.version() == tag->version() && *cur == tag_envelope) {
          tag_moved = false;  // same record again: idempotent
        } else if (spec.stale_tag_is_ok) {
          // Replication: the highest valid version wins. An older (or
          // conflicting equal) version from a peer is dropped; the release
          // still lands.
          tag_moved = false;
          out.set_tag_not_newer(true);
          if (cr.version() == tag->version() && cr.manifest_digest() != tag->manifest_digest()) {
            out.set_tag_conflict(StrCat("tag ", tag->name(), ":", tag->tag(), " version ",
                                        tag->version(), " names ", tag->manifest_digest(),
                                        " upstream but ", cr.manifest_digest(),
                                        " here (a signing error; keeping ours)"));
          }
        } else {
          return absl::AlreadyExistsError(
              StrCat("tag ", tag->name(), ":", tag->tag(), " version ", tag->version(),
                     " does not increase on the node's version ", cr.version()));
        }
      }
    } else if (!absl::IsNotFound(cur.status())) {
      return cur.status();
    }
    if (tag_moved) {
      ops.push_back(
          WriteOp{Table::kTags, Key2(tag->name(), tag->tag()), std::string(tag_envelope)});
    }
  }
  // Chunks must be durable before the release that names them is.
  CAIRN_RETURN_IF_ERROR(chunks_->Sync());
  {
    Envelope env;
    env.ParseFromArray(manifest_envelope.data(), manifest_envelope.size());
    ops.push_back(WriteOp{Table::kObjects, digest, env.payload()});
  }
  ops.push_back(WriteOp{Table::kEnvelopes, digest, std::string(manifest_envelope)});
  ops.push_back(WriteOp{Table::kReleases, release_key, digest});
  for (const auto& p : m.parents()) {
    ops.push_back(WriteOp{Table::kChildren, Key2(p.manifest_digest(), digest),
                          StrCat(m.name(), std::string(1, '\0'), m.version(), std::string(1, '\0'),
                                 static_cast<int>(p.relation()))});
  }
  // The feed: one event per commit that changed something, in the same batch.
  uint64_t seq = feed_head_;
  uint64_t tail = feed_tail_;
  if (!existing.ok() || tag_moved) {
    seq = feed_head_ + 1;
    cairn::v1::FeedEvent ev;
    ev.set_seq(seq);
    ev.set_name(m.name());
    ev.set_version(m.version());
    ev.set_manifest_digest(digest);
    ev.set_manifest_envelope(std::string(manifest_envelope));
    if (tag_moved) ev.set_tag_envelope(std::string(tag_envelope));
    ev.set_accepted_unix(now);
    ops.push_back(WriteOp{Table::kFeed, SeqKey(seq), ev.SerializeAsString()});
    ops.push_back(WriteOp{Table::kState, "feed_head", StrCat(seq)});
    while (seq - tail + 1 > opts_.feed_retain) {
      ops.push_back(WriteOp{Table::kFeed, SeqKey(tail), std::nullopt});
      ++tail;
    }
    ops.push_back(WriteOp{Table::kState, "feed_tail", StrCat(tail)});
  }
  for (const auto& op : spec.extra_ops) ops.push_back(op);
  CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  feed_head_ = seq;
  feed_tail_ = tail;
  {
    // A withheld release (or tag) re-signed validly is served again.
    absl::MutexLock l(&trust_mu_);
    withheld_.erase(digest);
    if (tag_moved) withheld_tags_.erase(Key2(tag->name(), tag->tag()));
  }
  return out;
}

}  // namespace cairn
