// Garbage collection: mark what releases, pending releases and staged chunk
// lists name, sweep the rest once past its grace period and unknown to
// recent clients, then compact. The guard that keeps concurrent commits safe
// is GcGuardedStore (gc_guard.h).
#include <algorithm>
#include <cstring>
#include <functional>
#include <random>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "digest_bloom.h"
#include "gc_guard.h"
#include "meta_schema.h"
#include "trust_state.h"

namespace cairn {

namespace {
// kState "gc-staged/<digest>" -> unix seconds: when a pass first found a
// staged chunk list that nothing else names.
constexpr std::string_view kGcStagedPrefix = "gc-staged/";
// kState "withheld-since/<manifest digest>" -> unix seconds: when a pass first
// found the release withheld.
constexpr std::string_view kWithheldSincePrefix = "withheld-since/";
// kState "yanked-since/<manifest digest>" -> unix seconds: when a pass first
// found the release yanked (with GcOptions::yanked_retention_seconds only).
constexpr std::string_view kYankedSincePrefix = "yanked-since/";
constexpr size_t kSweepBatch = 1024;
}  // namespace

// ---------------- GcGuardedStore ----------------

void GcGuardedStore::TurnOverLocked(int64_t now) {
  if (in_pass_ || now - turned_at_ < window_) return;
  // Two windows or more without a turn: both generations are stale.
  if (now - turned_at_ >= 2 * window_) current_.Clear();
  std::swap(current_, previous_);
  current_.Clear();
  turned_at_ = now;
}

void GcGuardedStore::Touch(const Digest& d) {
  absl::MutexLock l(&touch_mu_);
  TurnOverLocked(clock_->NowUnix());
  current_.Add(d);
}

void GcGuardedStore::BeginPass() {
  absl::MutexLock l(&touch_mu_);
  TurnOverLocked(clock_->NowUnix());
  in_pass_ = true;
}

void GcGuardedStore::EndPass() {
  absl::MutexLock l(&touch_mu_);
  in_pass_ = false;
}

absl::StatusOr<uint64_t> GcGuardedStore::RemoveUntouched(const std::vector<StoredChunk>& candidates,
                                                         bool dry_run, uint64_t* removed,
                                                         uint64_t* kept) {
  absl::MutexLock sweep(&sweep_mu_);  // no query runs while we decide and remove
  std::vector<Digest> doomed;
  uint64_t bytes = 0;
  {
    absl::MutexLock l(&touch_mu_);
    for (const StoredChunk& c : candidates) {
      if (current_.MayContain(c.digest) || previous_.MayContain(c.digest)) {
        ++*kept;
      } else {
        doomed.push_back(c.digest);
        bytes += c.length;
      }
    }
  }
  if (dry_run) {
    *removed += doomed.size();
    return bytes;
  }
  if (doomed.empty()) return 0;
  CAIRN_ASSIGN_OR_RETURN(bytes, target()->Remove(doomed));
  *removed += doomed.size();
  return bytes;
}

// ---------------- Repository ----------------

ChunkStore* Repository::chunks_for_reads() { return gc_guard_->base(); }

absl::Status Repository::MarkList(std::string_view list_digest, const ChunkVisitor& chunk,
                                  absl::flat_hash_set<std::string>* objects) {
  if (!objects->insert(std::string(list_digest)).second) return absl::OkStatus();
  auto bytes = LoadObject(list_digest, /*allow_staged=*/true);
  if (absl::IsNotFound(bytes.status())) return absl::OkStatus();  // the scrub reports it
  CAIRN_RETURN_IF_ERROR(bytes.status());
  auto list = ParseChunkList(*bytes);
  if (!list.ok()) return absl::OkStatus();  // not a list: it names no chunk
  for (const auto& c : list->chunks()) {
    if (c.digest().size() != sizeof(Digest)) continue;
    Digest d;
    std::memcpy(d.data(), c.digest().data(), d.size());
    chunk(d);
  }
  return absl::OkStatus();
}

absl::Status Repository::MarkManifest(std::string_view manifest_payload, const ChunkVisitor& chunk,
                                      absl::flat_hash_set<std::string>* objects) {
  auto m = ParseManifest(manifest_payload);
  if (!m.ok()) return absl::OkStatus();
  for (const auto& f : m->files()) CAIRN_RETURN_IF_ERROR(MarkList(f.root(), chunk, objects));
  return absl::OkStatus();
}

absl::Status Repository::MarkReleases(const ChunkVisitor& chunk,
                                      absl::flat_hash_set<std::string>* objects,
                                      const std::function<bool()>& stopped) {
  std::vector<std::string> manifests;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, "", [&](std::string_view, std::string_view v) {
        manifests.emplace_back(v);
        return true;
      }));
  for (const std::string& m : manifests) {
    if (stopped()) return absl::OkStatus();
    objects->insert(m);
    auto payload = LoadObject(m, /*allow_staged=*/false);
    if (absl::IsNotFound(payload.status())) continue;  // the scrub reports it
    CAIRN_RETURN_IF_ERROR(payload.status());
    CAIRN_RETURN_IF_ERROR(MarkManifest(*payload, chunk, objects));
  }
  return absl::OkStatus();
}

absl::Status Repository::DropLapsedReleases(const GcOptions& o, std::vector<std::string>* manifests,
                                            GcReport* r) {
  const int64_t now = clock_->NowUnix();
  std::vector<WriteOp> ops;
  // Why a release may lapse: withheld (always tracked), or yanked by its
  // publisher (only when a retention is set: the default keeps them).
  struct Rule {
    std::string_view prefix;
    int64_t retention;
    std::function<absl::StatusOr<bool>(std::string_view)> applies;
    uint64_t* dropped;
  };
  const std::vector<Rule> rules = {
      {kWithheldSincePrefix, o.withheld_retention_seconds,
       [this](std::string_view d) -> absl::StatusOr<bool> { return !WithheldReason(d).empty(); },
       &r->withheld_dropped},
      {kYankedSincePrefix, o.yanked_retention_seconds,
       [this](std::string_view d) -> absl::StatusOr<bool> {
         CAIRN_ASSIGN_OR_RETURN(auto y, meta::ReadYank(meta_.get(), d));
         return y && y->record.yanked();
       },
       &r->yanked_dropped},
  };
  for (const Rule& rule : rules) {
    // Markers of releases no longer withheld or yanked (re-signed, un-yanked).
    std::vector<std::string> markers;
    CAIRN_RETURN_IF_ERROR(
        meta_->Scan(Table::kState, rule.prefix, [&](std::string_view k, std::string_view) {
          markers.emplace_back(k);
          return true;
        }));
    for (const std::string& k : markers) {
      CAIRN_ASSIGN_OR_RETURN(bool still,
                             rule.applies(std::string_view(k).substr(rule.prefix.size())));
      if (!still || rule.retention <= 0) ops.push_back({Table::kState, k, std::nullopt});
    }
  }
  std::vector<std::pair<std::string, std::string>> releases;  // release key, digest
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, "", [&](std::string_view k, std::string_view v) {
        releases.emplace_back(k, v);
        return true;
      }));
  std::vector<std::pair<std::string, std::string>> doomed;
  std::vector<bool> doomed_yanked;  // dropped as yanked: marked evicted (not refetched)
  for (const auto& rel : releases) {
    for (const Rule& rule : rules) {
      if (rule.retention <= 0) continue;
      CAIRN_ASSIGN_OR_RETURN(bool applies, rule.applies(rel.second));
      if (!applies) continue;
      const std::string key = StrCat(rule.prefix, rel.second);
      auto seen = meta_->Get(Table::kState, key);
      if (!seen.ok()) {
        if (!absl::IsNotFound(seen.status())) return seen.status();
        ops.push_back({Table::kState, key, StrCat(now)});
        continue;
      }
      uint64_t since = 0;
      if (!ParseInt(*seen, &since) || now - static_cast<int64_t>(since) < rule.retention) continue;
      doomed.push_back(rel);
      doomed_yanked.push_back(rule.dropped == &r->yanked_dropped);
      ++*rule.dropped;
      break;
    }
  }
  if (o.dry_run) return absl::OkStatus();
  // Under the commit lock: a re-signing commit sees the release whole or gone.
  absl::MutexLock l(&commit_mu_);
  for (size_t i = 0; i < doomed.size(); ++i) {
    const auto& [key, digest] = doomed[i];
    // Re-signed or un-yanked meanwhile (both commit under commit_mu_).
    if (!doomed_yanked[i] && WithheldReason(digest).empty()) continue;
    if (doomed_yanked[i]) {
      CAIRN_ASSIGN_OR_RETURN(auto y, meta::ReadYank(meta_.get(), digest));
      if (!y || !y->record.yanked()) continue;
      // Not fetched again by the feed or anti-entropy; a request by digest
      // still fetches it on demand.
      std::string shown = key;
      std::replace(shown.begin(), shown.end(), '\0', ' ');
      ops.push_back({Table::kState, StrCat(meta::kEvictedPrefix, digest), shown});
    } else {
      ops.push_back({Table::kState, meta::YankKey(digest), std::nullopt});
    }
    auto payload = LoadObject(digest, /*allow_staged=*/false);
    if (payload.ok()) {
      auto m = ParseManifest(*payload);
      if (m.ok()) {
        for (const auto& p : m->parents()) {
          ops.push_back({Table::kChildren, meta::Key2(p.manifest_digest(), digest), std::nullopt});
        }
        for (const auto& f : m->files()) manifests->push_back(f.root());
      }
    }
    ops.push_back({Table::kReleases, key, std::nullopt});
    ops.push_back({Table::kEnvelopes, digest, std::nullopt});
    ops.push_back({Table::kObjects, digest, std::nullopt});
    ops.push_back({Table::kState, StrCat(kWithheldSincePrefix, digest), std::nullopt});
    ops.push_back({Table::kState, StrCat(kYankedSincePrefix, digest), std::nullopt});
    ops.push_back({Table::kState, StrCat(meta::kMirroredPrefix, digest), std::nullopt});
  }
  if (ops.empty()) return absl::OkStatus();
  CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  for (const auto& rel : doomed) trust_->Cleared(rel.second, nullptr);
  return absl::OkStatus();
}

absl::Status Repository::DropLists(const std::vector<std::string>& lists,
                                   const absl::flat_hash_set<std::string>& live, bool dry_run,
                                   uint64_t head_at_mark, GcReport* r) {
  std::vector<WriteOp> ops;
  absl::flat_hash_set<std::string_view> seen;
  for (const std::string& d : lists) {
    if (live.contains(d) || !seen.insert(d).second) continue;
    ops.push_back({Table::kObjects, d, std::nullopt});
  }
  r->lists_dropped = ops.size();
  if (dry_run || ops.empty()) return absl::OkStatus();
  // A commit since the mark may name one of them (found in kObjects, it is
  // not uploaded again): then they wait for the next pass. Every commit of a
  // release appends to the feed under commit_mu_.
  absl::MutexLock l(&commit_mu_);
  if (FeedHead() != head_at_mark) {
    r->lists_dropped = 0;
    return absl::OkStatus();
  }
  return meta_->Commit(ops, /*sync=*/false);
}

absl::Status Repository::SweepStaged(const GcOptions& o, const ChunkVisitor& chunk,
                                     absl::flat_hash_set<std::string>* objects, GcReport* r) {
  const int64_t now = clock_->NowUnix();
  std::vector<std::string> staged;
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kStaging, "", [&](std::string_view k, std::string_view) {
    if (!k.starts_with(meta::kUploadPrefix)) staged.emplace_back(k);
    return true;
  }));
  std::vector<WriteOp> first_seen;
  std::vector<std::string> stale;
  for (const std::string& d : staged) {
    if (objects->contains(d)) continue;  // a release or a pending one names it
    auto marker = meta_->Get(Table::kState, meta::SessionStagedKey(d));
    if (!marker.ok() && !absl::IsNotFound(marker.status())) return marker.status();
    const std::string seen_key = StrCat(kGcStagedPrefix, d);
    auto seen = meta_->Get(Table::kState, seen_key);
    if (!seen.ok() && !absl::IsNotFound(seen.status())) return seen.status();
    int64_t since = now;
    if (seen.ok()) {
      CAIRN_ASSIGN_OR_RETURN(uint64_t t, meta::ParseCounter(*seen, seen_key));
      since = static_cast<int64_t>(t);
    } else if (!marker.ok()) {
      first_seen.push_back(WriteOp{Table::kState, seen_key, StrCat(now)});
    }
    // A publish session's list (its marker) lives as long as the session.
    if (marker.ok() || now - since < o.staged_retention_seconds) {
      CAIRN_RETURN_IF_ERROR(MarkList(d, chunk, objects));
    } else {
      stale.push_back(d);
    }
  }
  // Markers of lists that left staging (committed, or dropped).
  std::vector<WriteOp> ops;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, kGcStagedPrefix, [&](std::string_view k, std::string_view) {
        std::string d(k.substr(kGcStagedPrefix.size()));
        if (!meta_->Get(Table::kStaging, d).ok())
          ops.push_back({Table::kState, std::string(k), {}});
        return true;
      }));
  r->staged_dropped = stale.size();
  if (o.dry_run) return absl::OkStatus();
  for (WriteOp& op : first_seen) ops.push_back(std::move(op));
  // A commit promotes staged lists under commit_mu_: dropped under it too,
  // so a commit sees a list either whole in staging or gone.
  absl::MutexLock l(&commit_mu_);
  for (const std::string& d : stale) {
    ops.push_back(WriteOp{Table::kStaging, d, std::nullopt});
    ops.push_back(WriteOp{Table::kState, StrCat(kGcStagedPrefix, d), std::nullopt});
  }
  if (ops.empty()) return absl::OkStatus();
  return meta_->Commit(ops, /*sync=*/true);
}

absl::StatusOr<GcReport> Repository::CollectGarbage(const GcOptions& o, Cancellation* cancel) {
  if (gc_running_.exchange(true)) {
    return absl::FailedPreconditionError("a garbage collection is running");
  }
  gc_guard_->BeginPass();
  absl::Cleanup done = [this] {
    gc_guard_->EndPass();
    gc_running_ = false;
  };
  auto stopped = [cancel] { return cancel != nullptr && cancel->cancelled(); };
  const SteadyTime t0 = clock_->SteadyNow();
  const int64_t now = clock_->NowUnix();
  GcReport r;
  r.shared_store = opts_.s3_chunks.has_value();
  // The live set's filter is sized from the chunks stored now.
  uint64_t stored = 0;
  std::vector<StoredChunk> batch;
  Digest cursor;
  for (bool first = true;; first = false) {
    CAIRN_RETURN_IF_ERROR(chunks_->ListStored(first ? nullptr : &cursor, 4 * kSweepBatch, &batch));
    stored += batch.size();
    if (batch.size() < 4 * kSweepBatch) break;
    cursor = batch.back().digest;
  }
  std::random_device rd;
  DigestBloom live(stored + stored / 8 + 1024, (uint64_t{rd()} << 32) | rd());
  r.mark_bytes = live.bytes();
  const ChunkVisitor mark = [&live](const Digest& d) { live.Add(d); };
  absl::flat_hash_set<std::string> objects;

  // Releases withheld too long go first; the rest, served and withheld (a
  // trust change may bring them back), are marked.
  std::vector<std::string> dropped_lists;
  CAIRN_RETURN_IF_ERROR(DropLapsedReleases(o, &dropped_lists, &r));
  if (r.withheld_dropped + r.yanked_dropped > 0 && !o.dry_run) {
    absl::MutexLock l(&capacity_mu_);
    held_.reset();  // capacity totals: read again
  }
  const uint64_t head_at_mark = FeedHead();
  CAIRN_RETURN_IF_ERROR(MarkReleases(mark, &objects, stopped));
  if (stopped()) return r;
  // Releases waiting for co-signatures; the expired ones go.
  std::vector<WriteOp> expired;
  std::vector<std::string> pending;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, meta::kPendingPrefix, [&](std::string_view k, std::string_view v) {
        cairn::v1::PendingResponse p;
        if (p.ParseFromString(std::string(v)) && p.expires_unix() <= now) {
          expired.push_back(WriteOp{Table::kState, std::string(k), std::nullopt});
        } else {
          pending.push_back(p.manifest_envelope());
        }
        return true;
      }));
  for (const std::string& env_bytes : pending) {
    auto env = ParseEnvelope(env_bytes, kMaxEnvelopeBytes);
    if (env.ok()) CAIRN_RETURN_IF_ERROR(MarkManifest(env->payload(), mark, &objects));
  }
  r.pending_dropped = expired.size();
  if (!o.dry_run && !expired.empty()) CAIRN_RETURN_IF_ERROR(meta_->Commit(expired, true));
  CAIRN_RETURN_IF_ERROR(SweepStaged(o, mark, &objects, &r));
  CAIRN_RETURN_IF_ERROR(DropLists(dropped_lists, objects, o.dry_run, head_at_mark, &r));

  // Sweep.
  std::vector<StoredChunk> candidates;
  for (bool first = true;; first = false) {
    if (stopped()) return r;
    CAIRN_RETURN_IF_ERROR(chunks_->ListStored(first ? nullptr : &cursor, kSweepBatch, &batch));
    r.chunks += batch.size();
    candidates.clear();
    for (const StoredChunk& c : batch) {
      if (live.MayContain(c.digest)) continue;
      if (c.stored_unix + o.grace_seconds > now) {
        ++r.chunks_in_grace;
        continue;
      }
      candidates.push_back(c);
    }
    CAIRN_ASSIGN_OR_RETURN(
        uint64_t bytes,
        gc_guard_->RemoveUntouched(candidates, o.dry_run, &r.chunks_removed, &r.chunks_touched));
    r.bytes_removed += bytes;
    if (batch.size() < kSweepBatch) break;
    cursor = batch.back().digest;
  }
  if (!o.dry_run && o.compact_below > 0) {
    CAIRN_ASSIGN_OR_RETURN(r.compact, chunks_->Compact(o.compact_below, cancel));
    if (stopped()) return r;
  }
  r.seconds = std::chrono::duration<double>(clock_->SteadyNow() - t0).count();
  r.complete = true;
  return r;
}

absl::Status Repository::AnswerCollection() {
  return chunks_->AnswerCollection(
      [this](const std::vector<Digest>& candidates) -> absl::StatusOr<std::vector<Digest>> {
        absl::flat_hash_set<Digest, DigestHash> want(candidates.begin(), candidates.end());
        std::vector<Digest> need;
        const ChunkVisitor mark = [&](const Digest& d) {
          if (want.erase(d) > 0) need.push_back(d);
        };
        absl::flat_hash_set<std::string> objects;
        CAIRN_RETURN_IF_ERROR(MarkReleases(mark, &objects, [] { return false; }));
        // Pending releases (expired ones too: this node's pass drops them)
        // and every staged list, whatever its age.
        std::vector<std::string> pending, lists;
        CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kState, meta::kPendingPrefix,
                                          [&](std::string_view, std::string_view v) {
                                            cairn::v1::PendingResponse p;
                                            if (p.ParseFromString(std::string(v)))
                                              pending.push_back(p.manifest_envelope());
                                            return true;
                                          }));
        CAIRN_RETURN_IF_ERROR(
            meta_->Scan(Table::kStaging, "", [&](std::string_view k, std::string_view) {
              if (!k.starts_with(meta::kUploadPrefix)) lists.emplace_back(k);
              return true;
            }));
        for (const std::string& e : pending) {
          if (auto env = ParseEnvelope(e, kMaxEnvelopeBytes); env.ok()) {
            CAIRN_RETURN_IF_ERROR(MarkManifest(env->payload(), mark, &objects));
          }
        }
        for (const std::string& d : lists) CAIRN_RETURN_IF_ERROR(MarkList(d, mark, &objects));
        for (const Digest& d : want) {
          if (gc_guard_->Touched(d)) need.push_back(d);
        }
        return need;
      });
}

}  // namespace cairn
