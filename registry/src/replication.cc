#include "cairn/replication.h"

#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <future>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/objects.h"
#include "cairn/status.h"

namespace cairn {

namespace {
constexpr auto kSyncEvery = std::chrono::seconds(2);
}  // namespace

std::string ReplicationPolicy::Refuses(const std::string& name, uint64_t bytes) const {
  for (const auto& g : exclude) {
    if (::fnmatch(g.c_str(), name.c_str(), 0) == 0) return "excluded by '" + g + "'";
  }
  bool in = include.empty();
  for (const auto& g : include) in |= ::fnmatch(g.c_str(), name.c_str(), 0) == 0;
  if (!in) return "not in include " + StrJoin(include, ",");
  if (max_release_bytes > 0 && bytes > max_release_bytes) {
    return StrCat(bytes, " bytes, over max_release_bytes ", max_release_bytes);
  }
  return "";
}

bool ReplicationPolicy::FollowsTag(const std::string& tag) const {
  if (tags.empty()) return true;
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

bool ReplicationPolicy::InWindow(int64_t now) const {
  if (windows.empty()) return true;
  time_t t = static_cast<time_t>(now);
  struct tm local;
  if (::localtime_r(&t, &local) == nullptr) return true;
  int m = local.tm_hour * 60 + local.tm_min;
  for (const auto& [start, end] : windows) {
    if (start <= end ? (m >= start && m < end) : (m >= start || m < end)) return true;
  }
  return false;
}

absl::StatusOr<std::pair<int, int>> ReplicationPolicy::ParseWindow(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        StrCat("time window '", text, "' is not HH:MM-HH:MM in local time (e.g. 01:00-06:00)"));
  };
  auto parts = Split(text, '-');
  if (parts.size() != 2) return bad();
  int minutes[2];
  for (int i = 0; i < 2; ++i) {
    auto hm = Split(parts[i], ':');
    int h = -1, mi = -1;
    if (hm.size() != 2 || hm[0].size() != 2 || hm[1].size() != 2 || !ParseInt(hm[0], &h) ||
        !ParseInt(hm[1], &mi) || h < 0 || h > 24 || mi < 0 || mi > 59 || (h == 24 && mi != 0)) {
      return bad();
    }
    minutes[i] = h * 60 + mi;
  }
  if (minutes[0] == minutes[1]) return bad();
  return std::make_pair(minutes[0], minutes[1] % (24 * 60));
}

std::string ReplicationPolicy::ToString() const {
  std::string s = include.empty() ? "all names" : "include " + StrJoin(include, ",");
  if (!exclude.empty()) s += "; exclude " + StrJoin(exclude, ",");
  s += max_release_bytes ? StrCat("; releases up to ", max_release_bytes, " bytes")
                         : std::string("; any size");
  if (max_bytes_per_second) s += StrCat("; at most ", max_bytes_per_second, " bytes/s");
  if (!tags.empty()) s += "; tags " + StrJoin(tags, ",");
  if (!windows.empty()) {
    std::vector<std::string> w;
    char buf[32];
    for (const auto& [a, b] : windows) {
      std::snprintf(buf, sizeof buf, "%02d:%02d-%02d:%02d", a / 60, a % 60, b / 60, b % 60);
      w.push_back(buf);
    }
    s += "; only " + StrJoin(w, ",") + " local time";
  }
  return s;
}

Replicator::Replicator(Repository* repo, std::unique_ptr<Upstream> upstream,
                       std::function<void(const std::string&)> log, ReplicationPolicy policy)
    : repo_(repo),
      upstream_(std::move(upstream)),
      log_(std::move(log)),
      policy_(std::move(policy)) {
  if (policy_.max_bytes_per_second > 0) upstream_->LimitBuffer(policy_.max_bytes_per_second);
}

absl::Status Replicator::SyncOnce() {
  if (cursor_key_.empty()) {
    auto id = upstream_->NodeId();
    if (!id.ok()) {
      stats_.last_error = std::string(id.status().message());
      return id.status();
    }
    cursor_key_ = "cursor/" + *id;
  }
  stats_.cursor = repo_->GetCursor(cursor_key_);
  stats_.outside_window = false;
  // A root that does not verify is logged and ignored: the node keeps its own.
  if (auto st = UpdateTrust(); !st.ok()) {
    if (log_ && st.status().message() != last_trust_error_)
      log_(std::string(st.status().message()));
    last_trust_error_ = std::string(st.status().message());
  } else {
    last_trust_error_.clear();
  }
  for (bool first = true;; first = false) {
    // Only the first call waits: once something arrived, drain and return
    // (so status and logs follow each batch).
    upstream_->SetLongPoll(first ? long_poll_ms_ : 0);
    auto feed = upstream_->Feed(stats_.cursor, 100);
    if (absl::IsOutOfRange(feed.status()) && stats_.cursor > 0) {
      // Our cursor is past the upstream's head: it was restored from an older
      // copy (or replaced). Replay its whole feed: applying what we already
      // hold is a no-op that fetches nothing.
      if (log_)
        log_(StrCat("upstream feed went back below cursor ", stats_.cursor, "; replaying it"));
      CAIRN_RETURN_IF_ERROR(repo_->SetCursor(cursor_key_, 0));
      stats_.cursor = 0;
      continue;
    }
    if (!feed.ok()) {
      stats_.last_error = std::string(feed.status().message());
      return feed.status();
    }
    stats_.upstream_head = feed->head();
    if (feed->events_size() == 0) {
      // Nothing left, or only events the upstream withholds: move past them.
      uint64_t to = feed->snapshot() ? feed->head() : feed->covered();
      if (to > stats_.cursor && to <= feed->head()) {
        CAIRN_RETURN_IF_ERROR(repo_->SetCursor(cursor_key_, to));
        stats_.cursor = to;
      }
      return absl::OkStatus();
    }
    for (int i = 0; i < feed->events_size(); ++i) {
      const auto& ev = feed->events(i);
      // A snapshot's events have no seq: the cursor jumps to head after the last.
      uint64_t next = feed->snapshot()
                          ? (i + 1 == feed->events_size() ? feed->head() : stats_.cursor)
                          : ev.seq();
      if (!feed->snapshot() && ev.seq() <= stats_.cursor) continue;
      if (!policy_.InWindow(SystemNowUnix())) {
        // The cursor stays: the rest is fetched when the window opens.
        stats_.outside_window = true;
        return absl::OkStatus();
      }
      absl::Status st = Apply(ev, next);
      // Only what fails verification here is skipped (it can never commit on
      // this node); anything else, such as a missing or corrupt chunk from the
      // upstream or an unreachable upstream, is retried from this cursor.
      bool unverifiable = absl::IsPermissionDenied(st) || absl::IsUnauthenticated(st) ||
                          absl::IsInvalidArgument(st) || absl::IsAlreadyExists(st);
      if (!st.ok() && !unverifiable) {
        stats_.last_error = std::string(st.message());
        return st;
      }
      if (!st.ok()) {
        // Not verifiable here (another trust root, a bad signature, a
        // corrupt object): never committed; skip it so one bad event cannot
        // stall the feed.
        stats_.events_refused++;
        stats_.last_error = StrCat("refused ", ev.name(), " ", ev.version(), ": ", st.message());
        if (log_) log_(stats_.last_error);
        CAIRN_RETURN_IF_ERROR(repo_->SetCursor(cursor_key_, next));
      }
      stats_.cursor = next;
      stats_.events_applied++;
    }
    if (feed->snapshot()) {
      CAIRN_RETURN_IF_ERROR(repo_->SetCursor(cursor_key_, feed->head()));
      stats_.cursor = feed->head();
    }
  }
}

absl::StatusOr<int> Replicator::UpdateTrust() {
  const uint64_t mine = repo_->trust().root().version();
  auto chain = upstream_->TrustChain(mine);
  if (!chain.ok()) return Annotate(chain.status(), "asking for newer trust roots");
  if (chain->empty()) return 0;
  auto adopted = repo_->AdoptTrustChain(*chain);
  if (!adopted.ok()) {
    return Annotate(adopted.status(), StrCat("refused trust roots offered past v", mine));
  }
  if (*adopted > 0) {
    stats_.trust_updates += *adopted;
    if (log_) {
      log_(StrCat("trust root updated from v", mine, " to v", repo_->trust().root().version()));
    }
  }
  return *adopted;
}

absl::StatusOr<int> Replicator::Reconcile() {
  if (cursor_key_.empty()) {
    CAIRN_ASSIGN_OR_RETURN(std::string id, upstream_->NodeId());
    cursor_key_ = "cursor/" + id;
  }
  if (!policy_.InWindow(SystemNowUnix())) return 0;
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::SummaryResponse theirs, upstream_->Summary());
  const uint64_t cursor = repo_->GetCursor(cursor_key_);
  int repaired = 0;
  auto apply_ref = [&](const std::string& ref) -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(cairn::v1::ResolveResponse r, upstream_->Resolve(ref));
    cairn::v1::FeedEvent ev;
    ev.set_manifest_digest(r.manifest_digest());
    ev.set_manifest_envelope(r.manifest_envelope());
    ev.set_tag_envelope(r.tag_envelope());
    absl::Status st = Apply(ev, cursor);
    if (st.ok()) {
      ++repaired;
    } else if (log_) {
      log_(StrCat("anti-entropy: ", ref, ": ", st.message()));
    }
    return absl::OkStatus();  // one bad entry never stops the rest
  };
  for (const auto& rel : theirs.releases()) {
    if (!policy_.tags.empty()) break;  // releases come with a followed tag
    if (repo_->HasRelease(rel.manifest_digest())) continue;
    CAIRN_RETURN_IF_ERROR(apply_ref(rel.name() + "@" + rel.manifest_digest()));
  }
  for (const auto& t : theirs.tags()) {
    if (!policy_.FollowsTag(t.tag())) continue;
    if (repo_->TagVersion(t.name(), t.tag()) >= t.version()) continue;
    CAIRN_RETURN_IF_ERROR(apply_ref(t.name() + ":" + t.tag()));
  }
  return repaired;
}

absl::Status Replicator::Apply(const cairn::v1::FeedEvent& ev, uint64_t cursor_after) {
  // Verify the signed manifest against our own trust root before fetching
  // anything for it.
  std::string digest;
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Manifest m,
                         VerifyManifestEnvelope(repo_->trust(), ev.manifest_envelope(), &digest));
  if (digest != ev.manifest_digest()) {
    return absl::DataLossError("feed event's digest does not match its manifest");
  }
  uint64_t bytes = 0;
  for (const auto& f : m.files()) bytes += f.size();
  std::string why = policy_.Refuses(m.name(), bytes);
  if (why.empty() && !policy_.tags.empty()) {
    // Only a valid record of a followed tag brings its release in.
    std::string tag;
    if (!ev.tag_envelope().empty()) {
      auto rec = VerifyTagEnvelope(repo_->trust(), ev.tag_envelope(), SystemNowUnix());
      if (rec.ok()) tag = rec->tag();
    }
    if (!policy_.FollowsTag(tag)) {
      why = tag.empty() ? "no followed tag names it (tags " + StrJoin(policy_.tags, ",") + ")"
                        : "tag " + tag + " is not followed";
    }
  }
  if (!why.empty()) {
    stats_.events_outside_policy++;
    if (log_) log_(StrCat("skipping ", m.name(), " ", m.version(), ": ", why));
    return repo_->SetCursor(cursor_key_, cursor_after);  // skipped, never fetched
  }
  // One replicator per release at a time on this node: another upstream
  // offering the same release waits, then finds it held and fetches nothing.
  auto claim = repo_->ClaimFetch(digest);
  const bool held = repo_->HasRelease(digest);
  // A tag that does not verify here (expired, say) is dropped; the release
  // still replicates.
  std::string tag_envelope = ev.tag_envelope();
  if (!tag_envelope.empty()) {
    auto tag = VerifyTagEnvelope(repo_->trust(), tag_envelope, SystemNowUnix());
    if (!tag.ok()) {
      if (log_) log_(StrCat("dropping tag of ", ev.name(), ": ", tag.status().message()));
      tag_envelope.clear();
    }
  }
  std::vector<Upstream::Want> wanted;
  absl::flat_hash_set<Digest, DigestHash> seen;
  // The chunk lists this node lacks, asked for several at a time: on a long
  // link one round trip per file would otherwise come before any chunk.
  absl::flat_hash_map<std::string, absl::StatusOr<std::string>> lists;
  if (!held) {
    std::vector<std::string> need;
    for (const auto& f : m.files()) {
      if (!lists.contains(f.root()) && !repo_->GetObjectOrStaged(f.root()).ok()) {
        lists.emplace(f.root(), absl::UnavailableError("not asked"));
        need.push_back(f.root());
      }
    }
    constexpr size_t kListsInFlight = 8;
    for (size_t i = 0; i < need.size(); i += kListsInFlight) {
      std::vector<std::future<absl::StatusOr<std::string>>> asked;
      for (size_t j = i; j < std::min(need.size(), i + kListsInFlight); ++j) {
        asked.push_back(std::async(std::launch::async,
                                   [this, root = need[j]] { return upstream_->GetObject(root); }));
      }
      for (size_t j = i; j < std::min(need.size(), i + kListsInFlight); ++j) {
        lists.insert_or_assign(need[j], asked[j - i].get());
      }
    }
  }
  if (!held)
    for (const auto& f : m.files()) {
      auto bytes = repo_->GetObjectOrStaged(f.root());
      if (!bytes.ok()) {
        auto it = lists.find(f.root());
        bytes = it != lists.end() ? it->second : upstream_->GetObject(f.root());
        CAIRN_RETURN_IF_ERROR(bytes.status());
        if (DigestName(Sha256Of(*bytes)) != f.root()) {
          return absl::DataLossError("upstream served a chunk list that does not match " +
                                     f.root());
        }
        CAIRN_RETURN_IF_ERROR(repo_->StageReplicatedChunkList(*bytes).status());
      }
      CAIRN_ASSIGN_OR_RETURN(cairn::v1::ChunkList cl, ParseChunkList(*bytes));
      for (const auto& c : cl.chunks()) {
        CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
        if (!seen.insert(d).second) continue;
        CAIRN_ASSIGN_OR_RETURN(bool has, repo_->chunks()->Has(d));
        if (!has) wanted.push_back({d, c.length()});
      }
    }
  if (!wanted.empty()) {
    stats_.bytes_pending = 0;
    for (const auto& w : wanted) stats_.bytes_pending += w.length;
    // Whatever way this ends, nothing is pending once it has.
    struct ClearPending {
      ReplicationStats* s;
      ~ClearPending() { s->bytes_pending = 0; }
    } clear_pending{&stats_};
    // Pacing: after each chunk, sleep until the bytes so far fit the cap. The
    // stream's flow control then slows the upstream to the same rate.
    const auto t0 = std::chrono::steady_clock::now();
    auto last_sync = t0, last_progress = t0;
    if (progress_) progress_(stats_);
    uint64_t paced = 0;
    CAIRN_RETURN_IF_ERROR(upstream_->GetChunks(wanted, [&](const Digest& d, std::string_view b) {
      // Hash-checked here unless the upstream's fetcher already did it.
      CAIRN_RETURN_IF_ERROR(repo_->chunks()->Put(
          d, b, upstream_->VerifiesChunks() ? PutMode::kDigestComputedFromData : PutMode::kVerify));
      // A node killed mid-release keeps what it fetched up to the last sync:
      // make that at most a couple of seconds ago.
      if (auto now = std::chrono::steady_clock::now(); now - last_sync > kSyncEvery) {
        CAIRN_RETURN_IF_ERROR(repo_->chunks()->Sync());
        last_sync = now;
      }
      stats_.chunks_fetched++;
      stats_.bytes_fetched += b.size();
      stats_.bytes_pending -= std::min<uint64_t>(stats_.bytes_pending, b.size());
      if (auto now = std::chrono::steady_clock::now();
          progress_ && now - last_progress >= std::chrono::milliseconds(500)) {
        progress_(stats_);
        last_progress = now;
      }
      paced += b.size();
      if (policy_.max_bytes_per_second > 0) {
        auto due = t0 + std::chrono::duration<double>(double(paced) / policy_.max_bytes_per_second);
        std::this_thread::sleep_until(
            std::chrono::time_point_cast<std::chrono::steady_clock::duration>(due));
      }
      return absl::OkStatus();
    }));
  }
  CAIRN_ASSIGN_OR_RETURN(auto res, repo_->CommitReplicated(ev.manifest_envelope(), tag_envelope,
                                                           cursor_key_, cursor_after));
  if (!res.already_present()) stats_.releases_committed++;
  if (!res.tag_conflict().empty()) {
    stats_.tag_conflicts++;
    stats_.last_conflict = res.tag_conflict();
    if (log_) log_(res.tag_conflict());
  }
  return absl::OkStatus();
}

}  // namespace cairn
