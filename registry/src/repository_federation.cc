// Repository: the federation side. The change feed and its snapshots,
// summaries, node info, and the cursors and fetch claims replicators use.
#include <sys/statvfs.h>

#include <ctime>
#include <map>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/verify.h"
#include "change_feed.h"
#include "meta_schema.h"
#include "trust_state.h"

namespace cairn {

using cairn::v1::TagRecord;
using meta::Key2;

// ---------------- Federation ----------------

absl::StatusOr<cairn::v1::FeedResponse> Repository::Feed(uint64_t after, uint32_t max_events) {
  cairn::v1::FeedResponse out;
  if (feed_->NeedsSnapshot(after)) {
    // The events after `after` were dropped: send the current state instead.
    out.set_head(feed_->head());
    CAIRN_RETURN_IF_ERROR(Snapshot(&out));
    return out;
  }
  // What no longer verifies here is not passed on (the follower's cursor
  // still moves past it: events skipped at the end are covered by head).
  CAIRN_RETURN_IF_ERROR(feed_->Read(
      after, max_events,
      [this](cairn::v1::FeedEvent* ev) {
        if (!WithheldReason(ev->manifest_digest()).empty()) return false;
        // Dropped since (withheld past its retention): nothing to fetch here.
        if (absl::IsNotFound(
                meta_->Get(Table::kReleases, Key2(ev->name(), ev->version())).status())) {
          return false;
        }
        // The release's newest yank travels with every event of it: a
        // follower that has not fetched it yet then does not.
        if (ev->yank_envelope().empty()) {
          auto y = meta::ReadYank(meta_.get(), ev->manifest_digest());
          if (y.ok() && *y) ev->set_yank_envelope((*y)->envelope);
        }
        if (!ev->tag_envelope().empty()) {
          auto tr = DecodeTagEnvelope(ev->tag_envelope());
          if (tr.ok() && trust_->TagWithheld(Key2(tr->name(), tr->tag()))) ev->clear_tag_envelope();
        }
        return true;
      },
      &out));
  return out;
}

absl::StatusOr<cairn::v1::FeedResponse> Repository::Feed(const cairn::v1::FeedRequest& req) {
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::FeedResponse out, Feed(req.after(), req.max_events()));
  if (req.has_trust_after()) {
    // Set, even when empty ("none newer"); left unset when the roots cannot
    // be read now, so the follower asks TrustRoot on its own.
    if (auto chain = TrustChainAfter(req.trust_after()); chain.ok()) {
      auto* trust = out.mutable_trust();
      for (auto& r : *chain) trust->add_chain(std::move(r));
    }
  }
  // Chunk lists in event and file order while they fit; the first that
  // does not ends the list (the follower asks for the rest as before). The
  // answer stays well under the message limit whatever the events weigh.
  const size_t room = size_t{kMaxMessageBytes} -
                      std::min<size_t>(out.ByteSizeLong() + (1 << 20), size_t{kMaxMessageBytes});
  size_t budget = std::min<size_t>({req.chunk_list_bytes(), kFeedListBytes, room});
  absl::flat_hash_set<std::string> sent;
  for (const auto& ev : out.events()) {
    AppendChunkLists(ev.manifest_envelope(), &budget, &sent, out.mutable_chunk_lists());
  }
  return out;
}

void Repository::AppendChunkLists(std::string_view manifest_envelope, size_t* budget,
                                  absl::flat_hash_set<std::string>* sent,
                                  google::protobuf::RepeatedPtrField<std::string>* out) {
  if (*budget == 0) return;
  auto env = ParseEnvelope(manifest_envelope, kMaxEnvelopeBytes);
  if (!env.ok()) return;
  auto m = ParseManifest(env->payload());
  if (!m.ok()) return;
  for (const auto& f : m->files()) {
    if (!sent->insert(f.root()).second) continue;
    // A list has one entry of at least 34 bytes per chunk, and chunks
    // average 64 KiB: one that would not fit is not read at all.
    if (f.size() / (64 << 10) * 34 > *budget) {
      *budget = 0;
      return;
    }
    auto list = GetObject(f.root());
    if (!list.ok() || list->size() > *budget) {
      *budget = 0;
      return;
    }
    *budget -= list->size();
    out->Add(std::move(*list));
  }
}

absl::Status Repository::Snapshot(cairn::v1::FeedResponse* out) {
  out->set_snapshot(true);
  std::map<std::string, cairn::v1::FeedEvent> by_digest;
  absl::Status inner;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, "", [&](std::string_view k, std::string_view v) {
        std::vector<std::string_view> parts = Split(k, '\0', 2);
        if (parts.size() != 2) return true;
        auto env = meta_->Get(Table::kEnvelopes, v);
        if (!env.ok()) {
          inner = Annotate(env.status(), StrCat("release ", v));
          return false;
        }
        if (!WithheldReason(v).empty()) return true;
        auto& ev = by_digest[std::string(v)];
        ev.set_name(std::string(parts[0]));
        ev.set_version(std::string(parts[1]));
        ev.set_manifest_digest(std::string(v));
        ev.set_manifest_envelope(std::move(*env));
        return true;
      }));
  CAIRN_RETURN_IF_ERROR(inner);
  // Yank records travel with their releases (and with each tag event).
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, meta::kYankPrefix, [&](std::string_view k, std::string_view v) {
        auto it = by_digest.find(std::string(k.substr(meta::kYankPrefix.size())));
        if (it != by_digest.end()) it->second.set_yank_envelope(std::string(v));
        return true;
      }));
  std::vector<cairn::v1::FeedEvent> tag_events;
  CAIRN_RETURN_IF_ERROR(ScanServedTags("", [&](std::string_view envelope, const TagRecord& rec) {
    auto it = by_digest.find(rec.manifest_digest());
    if (it == by_digest.end()) return;
    cairn::v1::FeedEvent ev = it->second;  // one event per tag, with its release
    ev.set_tag_envelope(std::string(envelope));
    tag_events.push_back(std::move(ev));
  }));
  for (auto& [d, ev] : by_digest) *out->add_events() = std::move(ev);
  for (auto& ev : tag_events) *out->add_events() = std::move(ev);
  return absl::OkStatus();
}

uint64_t Repository::FeedHead() const { return feed_->head(); }

uint64_t Repository::WaitForFeed(uint64_t after, absl::Duration timeout) {
  return feed_->WaitPast(after, timeout);
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
  CAIRN_RETURN_IF_ERROR(ScanServedTags("", [&](std::string_view, const TagRecord& rec) {
    auto* t = out.add_tags();
    t->set_name(rec.name());
    t->set_tag(rec.tag());
    t->set_version(rec.version());
    t->set_manifest_digest(rec.manifest_digest());
  }));
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, meta::kYankPrefix, [&](std::string_view k, std::string_view v) {
        auto rec = DecodeYankEnvelope(v);
        if (!rec.ok()) return true;  // reported where it is read for use
        auto* y = out.add_yanks();
        y->set_name(rec->name());
        y->set_manifest_digest(std::string(k.substr(meta::kYankPrefix.size())));
        y->set_version(rec->version());
        y->set_envelope_digest(DigestName(Sha256Of(v)));
        return true;
      }));
  return out;
}

absl::StatusOr<cairn::v1::YankSummary> Repository::YankOf(std::string_view manifest_digest) {
  CAIRN_ASSIGN_OR_RETURN(std::optional<meta::StoredYank> y,
                         meta::ReadYank(meta_.get(), manifest_digest));
  cairn::v1::YankSummary out;
  out.set_manifest_digest(std::string(manifest_digest));
  if (y) {
    out.set_name(y->record.name());
    out.set_version(y->record.version());
    out.set_envelope_digest(DigestName(Sha256Of(y->envelope)));
  }
  return out;
}

absl::StatusOr<uint64_t> Repository::TagVersion(const std::string& name, const std::string& tag) {
  CAIRN_ASSIGN_OR_RETURN(std::optional<meta::StoredTag> cur, meta::ReadTag(meta_.get(), name, tag));
  return cur ? cur->record.version() : 0;
}

std::string UtcDay(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  char buf[16];
  if (gmtime_r(&t, &tm) == nullptr || std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm) == 0) {
    return std::to_string(unix_seconds);
  }
  return buf;
}

absl::StatusOr<std::vector<TagRecord>> Repository::ExpiringTags(int64_t within_seconds) {
  const int64_t before = clock_->NowUnix() + within_seconds;
  std::vector<TagRecord> out;
  CAIRN_RETURN_IF_ERROR(ScanServedTags("", [&](std::string_view, const TagRecord& rec) {
    if (rec.expires_unix() < before) out.push_back(rec);
  }));
  std::sort(out.begin(), out.end(), [](const TagRecord& a, const TagRecord& b) {
    return a.expires_unix() < b.expires_unix();
  });
  return out;
}

absl::StatusOr<cairn::v1::NodeInfoResponse> Repository::NodeInfo() {
  cairn::v1::NodeInfoResponse out;
  CAIRN_ASSIGN_OR_RETURN(std::vector<TagRecord> expiring, ExpiringTags(kTagWarningSeconds));
  out.set_tags_expiring(expiring.size());
  for (size_t i = 0; i < expiring.size() && i < 10; ++i) {
    out.add_expiring_tags(StrCat(expiring[i].name(), ":", expiring[i].tag(), " ",
                                 UtcDay(expiring[i].expires_unix())));
  }
  out.set_node_id(node_id_);
  out.set_region(opts_.region);
  out.set_trust_version(trust().root().version());
  out.set_releases_withheld(trust_->releases_withheld());
  out.set_tags_withheld(trust_->tags_withheld());
  out.set_feed_head(feed_->head());
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
  *out.mutable_capacity() = CapacityStatus();
  return out;
}

// ---------------- Replication ----------------

absl::Status Repository::SetCursor(std::string cursor_key, uint64_t cursor) {
  return meta_->Commit({WriteOp{Table::kState, std::move(cursor_key), StrCat(cursor)}}, true);
}

absl::StatusOr<uint64_t> Repository::GetCursor(const std::string& cursor_key) {
  return meta::ReadCounter(meta_.get(), cursor_key, 0);
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

absl::StatusOr<bool> Repository::HasRelease(std::string_view digest) {
  auto v = meta_->Get(Table::kEnvelopes, digest);
  if (absl::IsNotFound(v.status())) return false;
  CAIRN_RETURN_IF_ERROR(v.status());
  return true;
}

}  // namespace cairn
