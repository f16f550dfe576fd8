#include "cairn/replication.h"

#include <algorithm>
#include <chrono>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

namespace {
// A node killed mid-release keeps what it fetched up to the last sync: make
// that at most a couple of seconds ago.
constexpr auto kSyncEvery = std::chrono::seconds(2);
constexpr auto kProgressEvery = std::chrono::milliseconds(500);
// Chunk lists asked for at once: on a long link one round trip per file
// would otherwise come before any chunk.
constexpr size_t kListsInFlight = 8;
}  // namespace

std::vector<absl::StatusOr<std::string>> Upstream::GetObjects(
    const std::vector<std::string>& digests) {
  std::vector<absl::StatusOr<std::string>> out;
  for (const auto& d : digests) out.push_back(GetObject(d));
  return out;
}

Replicator::Replicator(Repository* repo, std::unique_ptr<Upstream> upstream,
                       std::function<void(const std::string&)> log, ReplicationPolicy policy)
    : repo_(repo),
      upstream_(std::move(upstream)),
      log_(std::move(log)),
      policy_(std::move(policy)) {
  if (policy_.max_bytes_per_second > 0) upstream_->LimitBuffer(policy_.max_bytes_per_second);
}

absl::Status Replicator::EnsureCursorKey() {
  if (!cursor_key_.empty()) return absl::OkStatus();
  auto id = upstream_->NodeId();
  if (!id.ok()) {
    stats_.last_error = std::string(id.status().message());
    return id.status();
  }
  cursor_key_ = "cursor/" + *id;
  return absl::OkStatus();
}

absl::Status Replicator::SyncOnce() {
  CAIRN_RETURN_IF_ERROR(EnsureCursorKey());
  // A cursor that cannot be read is an error, never 0 (a replay from 0).
  CAIRN_ASSIGN_OR_RETURN(stats_.cursor, repo_->GetCursor(cursor_key_));
  stats_.outside_window = false;
  // Carried lists live only while the answer that brought them is applied.
  struct DropLists {
    absl::flat_hash_map<std::string, std::string>* lists;
    ~DropLists() { lists->clear(); }
  } drop_lists{&offered_lists_};
  for (bool first = true;; first = false) {
    // Only the first call waits: once something arrived, drain and return
    // (so status and logs follow each batch).
    upstream_->SetLongPoll(first ? long_poll_ms_ : 0);
    // The same round trip brings newer trust roots and the events' chunk
    // lists: on a long link each would otherwise cost a round trip before
    // the first chunk.
    const uint64_t mine = repo_->trust().root().version();
    upstream_->SetFeedExtras(mine, kFeedListAsk);
    offered_lists_.clear();
    auto feed = upstream_->Feed(stats_.cursor, 100);
    if (feed.ok() && feed->has_trust()) {
      std::vector<std::string> chain(feed->trust().chain().begin(), feed->trust().chain().end());
      NoteTrust(AdoptTrust(mine, chain));
    } else if (first) {
      // An upstream that does not carry them (an older node), or a failed
      // call: asked on its own, so a revocation still comes first.
      NoteTrust(UpdateTrust());
    }
    if (feed.ok()) {
      size_t kept = 0;  // what was asked for, whatever an upstream sends
      for (std::string& list : *feed->mutable_chunk_lists()) {
        kept += list.size();
        if (kept > kFeedListAsk) break;
        std::string root = DigestName(Sha256Of(list));
        offered_lists_.emplace(std::move(root), std::move(list));
      }
      feed->clear_chunk_lists();
    }
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
      if (!policy_.InWindow(repo_->clock()->NowUnix())) {
        // The cursor stays: the rest is fetched when the window opens.
        stats_.outside_window = true;
        return absl::OkStatus();
      }
      // A marker (synced) names the event being applied, with how many
      // processes started applying it; a process that dies in Apply leaves
      // it. The third death on one event quarantines it: skipped, counted,
      // named in status, so Restart=on-failure cannot make a crash loop.
      const std::string applying_key = cursor_key_ + "/applying";
      const std::string attempts_key = cursor_key_ + "/apply-attempts";
      CAIRN_ASSIGN_OR_RETURN(uint64_t applying, repo_->GetCursor(applying_key));
      CAIRN_ASSIGN_OR_RETURN(uint64_t attempts, repo_->GetCursor(attempts_key));
      attempts = applying == next ? attempts + 1 : 1;
      if (attempts > kMaxApplyAttempts) {
        stats_.events_quarantined++;
        stats_.last_quarantined = StrCat(
            ev.name(), " ", ev.version(), " (", ev.manifest_digest(), ", upstream seq ", next,
            "): the node stopped while applying it ", kMaxApplyAttempts, " times; skipped");
        if (log_) log_("quarantined " + stats_.last_quarantined);
        CAIRN_RETURN_IF_ERROR(repo_->SetCursor(cursor_key_, next));
        CAIRN_RETURN_IF_ERROR(repo_->SetCursor(applying_key, 0));
        stats_.cursor = next;
        continue;
      }
      CAIRN_RETURN_IF_ERROR(repo_->SetCursor(attempts_key, attempts));
      CAIRN_RETURN_IF_ERROR(repo_->SetCursor(applying_key, next));
      absl::Status st = Apply(ev, next);
      auto is_unverifiable = [](const absl::Status& s) {
        return absl::IsPermissionDenied(s) || absl::IsUnauthenticated(s) ||
               absl::IsInvalidArgument(s) || absl::IsAlreadyExists(s);
      };
      if (is_unverifiable(st)) {
        // Signed under a trust root newer than ours (a key rotated, a
        // release re-signed, while the long poll waited)? Adopt it and try
        // once more before giving the event up.
        auto adopted = UpdateTrust();
        if (adopted.ok() && *adopted > 0) st = Apply(ev, next);
      }
      // Returned (applied, refused or failed for a retry): not a crash.
      CAIRN_RETURN_IF_ERROR(repo_->SetCursor(applying_key, 0));
      // Only what fails verification here is skipped (it can never commit on
      // this node); anything else, such as a missing or corrupt chunk from the
      // upstream or an unreachable upstream, is retried from this cursor.
      bool unverifiable = is_unverifiable(st);
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

absl::StatusOr<int> Replicator::Reconcile() {
  CAIRN_RETURN_IF_ERROR(EnsureCursorKey());
  if (!policy_.InWindow(repo_->clock()->NowUnix())) return 0;
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::SummaryResponse theirs, upstream_->Summary());
  CAIRN_ASSIGN_OR_RETURN(const uint64_t cursor, repo_->GetCursor(cursor_key_));
  int repaired = 0;
  auto apply_ref = [&](const std::string& ref) -> absl::Status {
    auto resolved = upstream_->Resolve(ref);
    // A tag the upstream will not resolve (it names a yanked or withheld
    // release) is not this node's to repair.
    if (absl::IsFailedPrecondition(resolved.status())) return absl::OkStatus();
    CAIRN_ASSIGN_OR_RETURN(cairn::v1::ResolveResponse r, std::move(resolved));
    cairn::v1::FeedEvent ev;
    ev.set_manifest_digest(r.manifest_digest());
    ev.set_manifest_envelope(r.manifest_envelope());
    ev.set_tag_envelope(r.tag_envelope());
    ev.set_yank_envelope(r.yank_envelope());
    auto skipped_so_far = [&] {
      return stats_.events_outside_policy + stats_.events_skipped_for_space +
             stats_.events_skipped_yanked;
    };
    const uint64_t skipped = skipped_so_far();
    absl::Status st = Apply(ev, cursor);
    if (st.ok() && skipped_so_far() == skipped) {
      ++repaired;
    } else if (!st.ok() && log_) {
      log_(StrCat("anti-entropy: ", ref, ": ", st.message()));
    }
    return absl::OkStatus();  // one bad entry never stops the rest
  };
  for (const auto& rel : theirs.releases()) {
    if (!policy_.tags.empty()) break;  // releases come with a followed tag
    CAIRN_ASSIGN_OR_RETURN(bool held, repo_->HasRelease(rel.manifest_digest()));
    if (held) continue;
    CAIRN_RETURN_IF_ERROR(apply_ref(rel.name() + "@" + rel.manifest_digest()));
  }
  for (const auto& t : theirs.tags()) {
    if (!policy_.FollowsTag(t.tag())) continue;
    CAIRN_ASSIGN_OR_RETURN(uint64_t have, repo_->TagVersion(t.name(), t.tag()));
    if (have >= t.version()) continue;
    CAIRN_RETURN_IF_ERROR(apply_ref(t.name() + ":" + t.tag()));
  }
  // Yank records of releases held here (one not held comes with its record
  // above). A record of the same version that says something else is a
  // conflict: fetched and counted once per upstream record, ours kept.
  for (const auto& y : theirs.yanks()) {
    CAIRN_ASSIGN_OR_RETURN(bool held, repo_->HasRelease(y.manifest_digest()));
    if (!held) continue;
    CAIRN_ASSIGN_OR_RETURN(cairn::v1::YankSummary mine, repo_->YankOf(y.manifest_digest()));
    if (mine.version() > y.version()) continue;
    if (mine.version() == y.version() &&
        (mine.envelope_digest() == y.envelope_digest() ||
         !yank_conflicts_seen_.insert(y.envelope_digest()).second)) {
      continue;
    }
    CAIRN_RETURN_IF_ERROR(apply_ref(y.name() + "@" + y.manifest_digest()));
  }
  return repaired;
}

absl::Status Replicator::Apply(const cairn::v1::FeedEvent& ev, uint64_t cursor_after) {
  // Verify the signed manifest against our own trust root before fetching
  // anything for it.
  const int64_t now = repo_->clock()->NowUnix();
  std::string digest;
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Manifest m,
                         VerifyManifestEnvelope(repo_->trust(), ev.manifest_envelope(), &digest));
  if (digest != ev.manifest_digest()) {
    return absl::DataLossError("feed event's digest does not match its manifest");
  }
  uint64_t bytes = 0;
  for (const auto& f : m.files()) bytes += f.size();
  bool yanked = false;
  const std::string yank_envelope = VerifiedYank(ev.yank_envelope(), digest, &yanked);
  std::string why = policy_.Refuses(m.name(), bytes);
  if (why.empty() && !policy_.tags.empty()) {
    // Only a valid record of a followed tag brings its release in.
    std::string tag;
    if (!ev.tag_envelope().empty()) {
      auto rec = VerifyTagEnvelope(repo_->trust(), ev.tag_envelope(), now);
      if (rec.ok()) tag = rec->tag();
    }
    if (!policy_.FollowsTag(tag)) {
      why = tag.empty() ? "no followed tag names it (tags " + StrJoin(policy_.tags, ",") + ")"
                        : "tag " + tag + " is not followed";
    }
  }
  // A yank of a release held here applies whatever the policy; a release
  // yanked before this node fetched it is not fetched.
  if (!yank_envelope.empty()) {
    CAIRN_ASSIGN_OR_RETURN(const bool have, repo_->HasRelease(digest));
    if (have) {
      why.clear();
    } else if (why.empty() && yanked) {
      why = "yanked by its publisher";
    }
  }
  if (!why.empty()) {
    if (yanked && why == "yanked by its publisher") {
      stats_.events_skipped_yanked++;
    } else {
      stats_.events_outside_policy++;
    }
    if (log_) log_(StrCat("skipping ", m.name(), " ", m.version(), ": ", why));
    return repo_->SetCursor(cursor_key_, cursor_after);  // skipped, never fetched
  }
  // One replicator per release at a time on this node: another upstream
  // offering the same release waits, then finds it held and fetches nothing.
  auto claim = repo_->ClaimFetch(digest);
  CAIRN_ASSIGN_OR_RETURN(const bool held, repo_->HasRelease(digest));
  // A tag that does not verify here (expired, say) is dropped; the release
  // still replicates.
  std::string tag_envelope = ev.tag_envelope();
  if (!tag_envelope.empty()) {
    auto tag = VerifyTagEnvelope(repo_->trust(), tag_envelope, now);
    if (!tag.ok()) {
      if (log_) log_(StrCat("dropping tag of ", ev.name(), ": ", tag.status().message()));
      tag_envelope.clear();
    }
  }
  if (!held) {
    CAIRN_ASSIGN_OR_RETURN(const bool evicted, repo_->IsEvicted(digest));
    if (evicted) {
      // Evicted here for space: it comes back when a client asks for it.
      stats_.events_skipped_for_space++;
      if (log_) log_(StrCat("skipping ", m.name(), " ", m.version(), ": evicted here for space"));
      return SkipKeepingTag(tag_envelope, cursor_after);
    }
    // Room first: a release that does not fit stops here, before any byte;
    // one larger than a cap itself never will, and is passed over.
    // A release with no room now (what would have to go is pinned or was
    // published here) is deferred the same way: marked evicted, it comes on
    // demand once there is room, and the feed goes on behind it (yanks and
    // tags of what this node holds must not wait on it).
    absl::Status room = repo_->MakeRoom(m, digest, bytes);
    if (absl::IsOutOfRange(room) || absl::IsResourceExhausted(room)) {
      stats_.events_skipped_for_space++;
      if (log_) log_(StrCat("skipping: ", room.message()));
      if (absl::IsResourceExhausted(room)) {
        CAIRN_RETURN_IF_ERROR(repo_->MarkEvicted(digest, StrCat(m.name(), " ", m.version())));
        return SkipKeepingTag(tag_envelope, cursor_after);
      }
      return repo_->SetCursor(cursor_key_, cursor_after);
    }
    CAIRN_RETURN_IF_ERROR(room);
    CAIRN_RETURN_IF_ERROR(FetchMissing(m));
  }
  CAIRN_ASSIGN_OR_RETURN(
      auto res, repo_->CommitReplicated(ev.manifest_envelope(), tag_envelope, yank_envelope,
                                        cursor_key_, cursor_after));
  if (!res.already_present()) {
    stats_.releases_committed++;
    CAIRN_RETURN_IF_ERROR(repo_->MarkMirrored(digest));
  }
  if (!res.tag_older().empty()) {
    stats_.tags_rolled_back++;
    stats_.last_rollback = res.tag_older();
    if (log_) log_(res.tag_older());
  }
  if (!res.tag_conflict().empty()) {
    stats_.tag_conflicts++;
    stats_.last_conflict = res.tag_conflict();
    if (log_) log_(res.tag_conflict());
  }
  if (!res.yank_conflict().empty()) {
    stats_.yank_conflicts++;
    stats_.last_conflict = res.yank_conflict();
    if (log_) log_(res.yank_conflict());
  }
  return absl::OkStatus();
}

absl::Status Replicator::SkipKeepingTag(const std::string& tag_envelope, uint64_t cursor_after) {
  if (tag_envelope.empty()) return repo_->SetCursor(cursor_key_, cursor_after);
  CAIRN_ASSIGN_OR_RETURN(bool moved,
                         repo_->ApplyReplicatedTag(tag_envelope, cursor_key_, cursor_after));
  if (moved && log_) log_("tag applied; its release comes when a client asks for it");
  return absl::OkStatus();
}

std::string Replicator::VerifiedYank(const std::string& envelope, std::string_view digest,
                                     bool* yanked) {
  *yanked = false;
  if (envelope.empty()) return {};
  auto y = VerifyYankEnvelope(repo_->trust(), envelope);
  if (y.ok() && y->manifest_digest() != digest) {
    y = absl::InvalidArgumentError("it names another release");
  }
  if (!y.ok()) {
    if (log_) log_(StrCat("dropping yank record of ", digest, ": ", y.status().message()));
    return {};
  }
  *yanked = y->yanked();
  return envelope;
}

absl::Status Replicator::FetchRelease(const cairn::v1::ResolveResponse& r,
                                      std::string_view first_path, bool repair) {
  std::string digest;
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Manifest m,
                         VerifyManifestEnvelope(repo_->trust(), r.manifest_envelope(), &digest));
  if (digest != r.manifest_digest()) {
    return absl::DataLossError("upstream's digest does not match its manifest");
  }
  uint64_t bytes = 0;
  for (const auto& f : m.files()) bytes += f.size();
  if (std::string why = policy_.Refuses(m.name(), bytes); !why.empty()) {
    return absl::PermissionDeniedError(StrCat(m.name(), " ", m.version(), ": ", why));
  }
  auto claim = repo_->ClaimFetch(digest);
  CAIRN_ASSIGN_OR_RETURN(const bool held, repo_->HasRelease(digest));
  std::string tag_envelope = r.tag_envelope();
  if (!tag_envelope.empty() &&
      !VerifyTagEnvelope(repo_->trust(), tag_envelope, repo_->clock()->NowUnix()).ok()) {
    tag_envelope.clear();  // the release still comes; a bad tag does not
  }
  if (!held) CAIRN_RETURN_IF_ERROR(repo_->MakeRoom(m, digest, bytes));
  if (!held || repair) {
    first_path_ = std::string(first_path);
    on_demand_ = true;
    absl::Status fetched = FetchMissing(m);
    first_path_.clear();
    on_demand_ = false;
    CAIRN_RETURN_IF_ERROR(fetched);
  }
  bool yanked = false;
  const std::string yank_envelope = VerifiedYank(r.yank_envelope(), digest, &yanked);
  CAIRN_ASSIGN_OR_RETURN(auto res, repo_->CommitReplicated(r.manifest_envelope(), tag_envelope,
                                                           yank_envelope, /*cursor_key=*/"", 0));
  if (!res.already_present()) {
    stats_.releases_committed++;
    CAIRN_RETURN_IF_ERROR(repo_->MarkMirrored(digest));
  }
  return absl::OkStatus();
}

absl::Status Replicator::FetchMissing(const cairn::v1::Manifest& m) {
  // The chunk lists this node lacks, asked for kListsInFlight at a time and
  // staged as each batch arrives, checked against the signed manifest: at
  // most one batch of lists is held in memory, besides those the feed's
  // answer carried (at most kFeedListAsk bytes).
  absl::flat_hash_map<std::string, const cairn::v1::FileEntry*> need;  // root -> a file naming it
  std::vector<std::string> order;
  // Manifest order; for FetchRelease the file a client waits for first, then
  // small files (configs, tokenizers: what a client reads before weights).
  std::vector<const cairn::v1::FileEntry*> files;
  for (const auto& f : m.files()) files.push_back(&f);
  if (on_demand_) {
    std::stable_partition(files.begin(), files.end(), [&](const cairn::v1::FileEntry* f) {
      return f->path() == first_path_ || f->size() < kSmallFileBytes;
    });
    std::stable_partition(files.begin(), files.end(),
                          [&](const cairn::v1::FileEntry* f) { return f->path() == first_path_; });
  }
  for (const cairn::v1::FileEntry* fp : files) {
    const cairn::v1::FileEntry& f = *fp;
    if (need.contains(f.root())) continue;
    auto held = repo_->GetObjectOrStaged(f.root());
    if (absl::IsNotFound(held.status())) {
      need.emplace(f.root(), &f);
      order.push_back(f.root());
    } else if (!held.ok()) {
      return held.status();
    }
  }
  // Stages one batch of lists, each checked against this signed manifest's
  // root (a carried list like any other).
  auto stage = [&](const std::vector<std::string>& batch,
                   std::vector<absl::StatusOr<std::string>> got) -> absl::Status {
    if (got.size() != batch.size()) return absl::InternalError("GetObjects lost results");
    for (size_t j = 0; j < batch.size(); ++j) {
      CAIRN_RETURN_IF_ERROR(got[j].status());
      const cairn::v1::FileEntry& f = *need.at(batch[j]);
      auto cl = CheckChunkList(*got[j], f.root(), f.size(), f.path());
      if (absl::IsDataLoss(cl.status())) {
        return absl::DataLossError("upstream served a chunk list that does not match " + f.root());
      }
      CAIRN_RETURN_IF_ERROR(cl.status());
      CAIRN_RETURN_IF_ERROR(repo_->StageReplicatedChunkList(*got[j]).status());
    }
    return absl::OkStatus();
  };
  // The lists the feed's answer carried cost no round trip; the others are
  // asked for kListsInFlight at a time.
  std::vector<std::string> carried, ask;
  std::vector<absl::StatusOr<std::string>> carried_lists;
  for (const std::string& root : order) {
    auto it = offered_lists_.find(root);
    if (it == offered_lists_.end()) {
      ask.push_back(root);
      continue;
    }
    carried.push_back(root);
    carried_lists.push_back(std::move(it->second));
    offered_lists_.erase(it);
  }
  CAIRN_RETURN_IF_ERROR(stage(carried, std::move(carried_lists)));
  for (size_t i = 0; i < ask.size(); i += kListsInFlight) {
    std::vector<std::string> batch(ask.begin() + i,
                                   ask.begin() + std::min(ask.size(), i + kListsInFlight));
    CAIRN_RETURN_IF_ERROR(stage(batch, upstream_->GetObjects(batch)));
  }
  // Every list is held now. The chunks they name that this node lacks go
  // in batches of at most kWantsPerBatch: memory stays bounded however many
  // chunks the release names. A first pass counts the bytes (for status).
  std::vector<std::string> roots;
  {
    absl::flat_hash_set<std::string_view> done;
    for (const cairn::v1::FileEntry* f : files) {
      if (done.insert(f->root()).second) roots.push_back(f->root());
    }
  }
  absl::flat_hash_set<Digest, DigestHash> seen;  // this batch, or this list
  auto each_missing = [&](const std::function<absl::Status(const ChunkWant&)>& fn) {
    for (const std::string& root : roots) {
      CAIRN_ASSIGN_OR_RETURN(std::string list, repo_->GetObjectOrStaged(root));
      CAIRN_ASSIGN_OR_RETURN(cairn::v1::ChunkList cl, ParseChunkList(list));
      for (const auto& c : cl.chunks()) {
        CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
        if (seen.contains(d)) continue;
        CAIRN_ASSIGN_OR_RETURN(bool has, repo_->chunks()->Has(d));
        if (!has) CAIRN_RETURN_IF_ERROR(fn({d, c.length()}));
      }
    }
    return absl::OkStatus();
  };
  uint64_t pending = 0;
  CAIRN_RETURN_IF_ERROR(each_missing([&](const ChunkWant& w) {
    // A chunk named again after the set filled may count twice.
    if (seen.size() >= kWantsPerBatch) seen.clear();
    if (seen.insert(w.digest).second) pending += w.length;
    return absl::OkStatus();
  }));
  seen.clear();
  stats_.bytes_pending = pending;
  // However this ends, nothing is pending once it has.
  struct Finally {
    ReplicationStats* s;
    ~Finally() { s->bytes_pending = 0; }
  } finally{&stats_};
  std::vector<ChunkWant> batch;
  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    CAIRN_RETURN_IF_ERROR(Transfer(batch));
    batch.clear();
    seen.clear();  // fetched now: Has() answers for them
    return absl::OkStatus();
  };
  CAIRN_RETURN_IF_ERROR(each_missing([&](const ChunkWant& w) -> absl::Status {
    if (!seen.insert(w.digest).second) return absl::OkStatus();
    batch.push_back(w);
    if (batch.size() >= kWantsPerBatch) return flush();
    return absl::OkStatus();
  }));
  return flush();
}

absl::Status Replicator::Transfer(const std::vector<ChunkWant>& wanted) {
  Clock* clock = repo_->clock();
  ChunkStore* store = repo_->chunks();
  // Whatever way this ends, what arrived is on disk (a restart, say after
  // SIGTERM, does not fetch it again).
  struct Finally {
    ChunkStore* store;
    ~Finally() { store->Sync().IgnoreError(); }  // best effort; the commit syncs again
  } finally{store};
  if (progress_) progress_(stats_);
  SteadyTime last_sync = clock->SteadyNow();
  // Store (hash-checked here unless the upstream's fetcher already did),
  // sync every couple of seconds, count.
  ChunkSink sink = [&](const Digest& d, std::string_view b) -> absl::Status {
    CAIRN_RETURN_IF_ERROR(store->Put(
        d, b, upstream_->VerifiesChunks() ? PutMode::kDigestComputedFromData : PutMode::kVerify));
    if (const SteadyTime now = clock->SteadyNow(); now - last_sync > kSyncEvery) {
      CAIRN_RETURN_IF_ERROR(store->Sync());
      last_sync = now;
    }
    stats_.chunks_fetched++;
    stats_.bytes_fetched += b.size();
    stats_.bytes_pending -= std::min<uint64_t>(stats_.bytes_pending, b.size());
    if (cancel_ != nullptr && cancel_->cancelled()) {
      return absl::CancelledError("replication stopped");
    }
    return absl::OkStatus();
  };
  if (progress_) {
    sink = WithProgress(std::move(sink), clock, kProgressEvery,
                        [this](uint64_t) { progress_(stats_); });
  }
  sink = RateCapped(std::move(sink), policy_.max_bytes_per_second, clock, cancel_);
  return upstream_->GetChunks(wanted, sink);
}

}  // namespace cairn
