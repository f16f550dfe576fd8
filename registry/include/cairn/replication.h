// Following an upstream node's change feed: the node-to-node half of
// federation. A replicator never trusts its upstream: every release is
// verified against the local node's own trust root before it is committed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "cairn/hash.h"
#include "cairn/repository.h"
#include "cairn/transfer.h"
#include "cairn/v1/service.pb.h"

namespace cairn {

// What a replicator needs from an upstream node (gRPC in mirror-node/; tests
// wrap it with UpstreamWrapper to inject faults). Calls may block; each has
// its own deadline. Thread-compatible: one thread calls at a time, except
// Cancel(), which any thread may call at any time.
class Upstream {
 public:
  virtual ~Upstream() = default;
  // The upstream's node id (cursors are kept per upstream node, not address).
  virtual absl::StatusOr<std::string> NodeId() = 0;
  virtual absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t after, uint32_t max_events) = 0;
  virtual absl::StatusOr<cairn::v1::SummaryResponse> Summary() = 0;
  // Registry.Resolve on the upstream (bytes unverified: the caller verifies).
  virtual absl::StatusOr<cairn::v1::ResolveResponse> Resolve(const std::string& ref) = 0;
  virtual absl::StatusOr<std::string> GetObject(const std::string& digest) = 0;
  // Several objects, one result per digest in order; an implementation may
  // ask for them at once (a long link pays one round trip, not one per
  // object). Default: one GetObject after another.
  virtual std::vector<absl::StatusOr<std::string>> GetObjects(
      const std::vector<std::string>& digests);
  // Fetches `wanted`, calling `sink` for each chunk in order (bytes not yet
  // verified unless VerifiesChunks()). NotFound when the upstream lacks one;
  // Cancelled once Cancel() was called.
  virtual absl::Status GetChunks(const std::vector<ChunkWant>& wanted, const ChunkSink& sink) = 0;
  virtual std::string address() const = 0;
  // The sink is slow on purpose (a bandwidth cap): hold at most about this
  // many bytes fetched ahead of it.
  virtual void LimitBuffer(size_t /*bytes*/) {}
  // True when GetChunks hands the sink only chunks whose SHA-256 it has
  // already checked against the digest (the sink then skips a second hash).
  virtual bool VerifiesChunks() const { return false; }
  // Long poll: Feed waits up to `wait_ms` for something new when the cursor
  // is at the head (0: answer at once). Default: 0.
  virtual void SetLongPoll(uint32_t /*wait_ms*/) {}
  // Ends the calls in progress (a long poll, a chunk transfer) and every later
  // one with Cancelled. Any thread.
  virtual void Cancel() {}
  // Trust roots newer than `after_version` that the upstream (or a peer)
  // holds, oldest first; unverified (the caller walks the chain).
  virtual absl::StatusOr<std::vector<std::string>> TrustChain(uint64_t /*after_version*/) {
    return std::vector<std::string>{};
  }
  // What later Feed calls ask to carry in the same round trip: the trust
  // roots past `trust_after` (FeedResponse.trust) and the events' chunk
  // lists up to `chunk_list_bytes`. An upstream that does not carry them
  // leaves `trust` unset and sends no lists; the caller then asks
  // TrustChain and GetObjects itself. Default: asks for nothing.
  virtual void SetFeedExtras(std::optional<uint64_t> /*trust_after*/,
                             uint32_t /*chunk_list_bytes*/) {}
};

// Forwards every call; subclass and override what a test breaks.
class UpstreamWrapper : public Upstream {
 public:
  explicit UpstreamWrapper(std::unique_ptr<Upstream> target) : target_(std::move(target)) {}
  absl::StatusOr<std::string> NodeId() override { return target_->NodeId(); }
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t after, uint32_t max_events) override {
    return target_->Feed(after, max_events);
  }
  absl::StatusOr<cairn::v1::SummaryResponse> Summary() override { return target_->Summary(); }
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(const std::string& ref) override {
    return target_->Resolve(ref);
  }
  absl::StatusOr<std::string> GetObject(const std::string& digest) override {
    return target_->GetObject(digest);
  }
  std::vector<absl::StatusOr<std::string>> GetObjects(
      const std::vector<std::string>& digests) override {
    return target_->GetObjects(digests);
  }
  absl::Status GetChunks(const std::vector<ChunkWant>& wanted, const ChunkSink& sink) override {
    return target_->GetChunks(wanted, sink);
  }
  std::string address() const override { return target_->address(); }
  void LimitBuffer(size_t bytes) override { target_->LimitBuffer(bytes); }
  bool VerifiesChunks() const override { return target_->VerifiesChunks(); }
  void SetLongPoll(uint32_t wait_ms) override { target_->SetLongPoll(wait_ms); }
  void Cancel() override { target_->Cancel(); }
  absl::StatusOr<std::vector<std::string>> TrustChain(uint64_t after_version) override {
    return target_->TrustChain(after_version);
  }
  void SetFeedExtras(std::optional<uint64_t> trust_after, uint32_t chunk_list_bytes) override {
    target_->SetFeedExtras(trust_after, chunk_list_bytes);
  }

 protected:
  Upstream* target() { return target_.get(); }

 private:
  std::unique_ptr<Upstream> target_;
};

// Which of an upstream's releases a node takes. Checked on the signed
// manifest before anything is fetched; a release outside it is skipped (the
// cursor moves on) and counted.
struct ReplicationPolicy {
  // Globs (fnmatch) over "namespace/model". Empty include: everything.
  std::vector<std::string> include;
  std::vector<std::string> exclude;  // wins over include
  // Largest release (sum of file sizes) to take; 0: no limit. Default: 0.
  uint64_t max_release_bytes = 0;
  // Average fetch rate cap for this upstream, bytes per second; 0: none.
  // Default: 0. Paced per chunk, so it holds over any span of a few chunks.
  uint64_t max_bytes_per_second = 0;
  // Local-time windows in which releases are fetched, as minutes since
  // midnight [start, end); end < start wraps past midnight. Empty: any time.
  // Outside them the node still serves, and polls nothing.
  std::vector<std::pair<int, int>> windows;
  // Tags to follow: only releases a followed tag names are fetched (the
  // release comes with its tag). Empty: every release and every tag.
  std::vector<std::string> tags;

  // "" when `name` (of a release of `bytes`) is taken, else why not.
  std::string Refuses(const std::string& name, uint64_t bytes) const;
  // Whether a tag named `tag` ("" for none) is followed.
  bool FollowsTag(const std::string& tag) const;
  // Whether `now` (unix seconds) falls in a window, in the local time zone.
  bool InWindow(int64_t now) const;
  // "HH:MM-HH:MM" -> minutes; InvalidArgument naming the text otherwise.
  static absl::StatusOr<std::pair<int, int>> ParseWindow(std::string_view text);
  std::string ToString() const;
};

// Process deaths while applying one feed event before it is quarantined.
inline constexpr uint64_t kMaxApplyAttempts = 3;

struct ReplicationStats {
  uint64_t cursor = 0;
  uint64_t upstream_head = 0;
  uint64_t events_applied = 0;
  uint64_t releases_committed = 0;
  uint64_t chunks_fetched = 0;
  uint64_t bytes_fetched = 0;
  // Chunk bytes the release being fetched still needs (0 between releases).
  uint64_t bytes_pending = 0;
  uint64_t events_refused = 0;            // failed verification: logged, skipped
  uint64_t events_outside_policy = 0;     // skipped by the policy, never fetched
  uint64_t events_skipped_for_space = 0;  // evicted here, no room, or larger than a cap
  uint64_t events_skipped_yanked = 0;     // yanked before this node held them
  bool outside_window = false;            // last sync found the time window closed
  uint64_t trust_updates = 0;             // newer trust root versions adopted from this upstream
  uint64_t tag_conflicts = 0;             // equal tag version, different manifest: ours kept
  uint64_t yank_conflicts = 0;            // equal yank record version, different record: ours kept
  std::string last_conflict;
  // Events this node died applying kMaxApplyAttempts times in a row (a
  // crash loop under Restart=on-failure): skipped, named here and logged.
  uint64_t events_quarantined = 0;
  std::string last_quarantined;
  uint64_t tags_rolled_back = 0;  // older than the held tag: dropped (a rollback attempt)
  std::string last_rollback;
  std::string last_error;
};

// Applies an upstream's feed to a repository. Not thread-safe: one thread per
// upstream. Idempotent and resumable: the cursor is committed in the same
// batch as each release, chunks already held are never fetched again. Time
// (stamps, expiry, pacing) comes from the repository's clock.
class Replicator {
 public:
  // `log` receives one line per refused event or error (may be empty).
  Replicator(Repository* repo, std::unique_ptr<Upstream> upstream,
             std::function<void(const std::string&)> log = {}, ReplicationPolicy policy = {});

  // Applies every event past the persisted cursor, then returns. Unavailable
  // (and the cursor where it stopped) when the upstream fails mid-way; a
  // release that does not verify is skipped and counted, never committed.
  absl::Status SyncOnce();

  // Asks the upstream for trust roots newer than this node's and adopts them
  // when the chain verifies (the node's Repository::AdoptTrustChain).
  // SyncOnce adopts the roots its Feed answer carries, or calls this when
  // the upstream carries none, before it verifies any event of the answer,
  // so a revocation reaches a follower before the releases it invalidates.
  // Returns how many versions were adopted.
  absl::StatusOr<int> UpdateTrust();
  // Bytes of chunk lists a follower asks a Feed answer to carry, and keeps
  // at most (the node caps what it sends at Repository::kFeedListBytes).
  static constexpr uint32_t kFeedListAsk = 512 << 10;

  // Anti-entropy: compares the upstream's summary with this node's and
  // repairs what the feed missed (releases not held, tags older than the
  // upstream's), through the same verification as the feed. The cursor does
  // not move. Returns how many releases or tags were repaired.
  absl::StatusOr<int> Reconcile();

  // Fetches and commits the one release `r` (the upstream's answer to a
  // Resolve: a client asked this node for it), through the same checks as
  // the feed: verified against this node's trust root, refused outside the
  // policy (PermissionDenied), chunks hash-checked. No cursor moves. The
  // chunk list and chunks of the file at `first_path` are fetched first, so a
  // client waiting for that file gets its bytes as they arrive. With
  // `repair`, a release already held is checked for chunks it lacks (one
  // dropped after failing its hash) and those are fetched again.
  absl::Status FetchRelease(const cairn::v1::ResolveResponse& r, std::string_view first_path = "",
                            bool repair = false);

  // Long-poll the upstream's feed for up to `ms` at the start of each
  // SyncOnce when there is nothing new (0: do not wait). Default: 0.
  void set_long_poll_ms(uint32_t ms) { long_poll_ms_ = ms; }
  // Called on the replicating thread twice a second while chunks
  // arrive, so that status can follow a long release as it goes.
  void set_progress(std::function<void(const ReplicationStats&)> cb) { progress_ = std::move(cb); }
  // Once `cancel` (not owned; outlives the replicator) fires, pacing waits
  // end and the transfer in progress stops with Cancelled; the chunks
  // fetched so far are kept (synced), so a restart does not fetch them again.
  void set_cancel(Cancellation* cancel) { cancel_ = cancel; }

  const ReplicationStats& stats() const { return stats_; }
  Upstream* upstream() { return upstream_.get(); }

 private:
  absl::Status Apply(const cairn::v1::FeedEvent& ev, uint64_t cursor_after);
  // Fetches the chunks release `m` needs that this node lacks, in batches of
  // kWantsPerBatch; stages the chunk lists it lacks on the way.
  static constexpr size_t kWantsPerBatch = 1 << 16;
  absl::Status FetchMissing(const cairn::v1::Manifest& m);
  // `envelope` when it is a yank record of release `digest` that verifies
  // here (*yanked: whether it yanks or withdraws); empty, logged, otherwise.
  std::string VerifiedYank(const std::string& envelope, std::string_view digest, bool* yanked);
  // Passes over an event whose release is not fetched now (evicted, no
  // room), keeping its verified tag (may be empty): moves the cursor.
  absl::Status SkipKeepingTag(const std::string& tag_envelope, uint64_t cursor_after);
  // Fetches one batch; bytes_pending counts down from what the caller set.
  absl::Status Transfer(const std::vector<ChunkWant>& wanted);
  absl::Status EnsureCursorKey();
  // Adopts `chain` (offered by the upstream, unverified) past root `mine`.
  absl::StatusOr<int> AdoptTrust(uint64_t mine, const std::vector<std::string>& chain);
  // UpdateTrust's outcome, logged once per distinct error.
  void NoteTrust(const absl::StatusOr<int>& st);

  Repository* repo_;
  std::unique_ptr<Upstream> upstream_;
  std::function<void(const std::string&)> log_;
  ReplicationPolicy policy_;
  std::string cursor_key_;
  // Upstream yank records (envelope digests) already found to conflict with
  // ours: counted once, not fetched again on every reconcile.
  absl::flat_hash_set<std::string> yank_conflicts_seen_;
  std::string last_trust_error_;  // logged once, not every poll
  // Chunk lists the last Feed answer carried, by root (at most
  // kFeedListBytes): FetchMissing takes a list from here before asking.
  absl::flat_hash_map<std::string, std::string> offered_lists_;
  uint32_t long_poll_ms_ = 0;
  ReplicationStats stats_;
  std::function<void(const ReplicationStats&)> progress_;
  Cancellation* cancel_ = nullptr;
  std::string first_path_;  // FetchRelease: this file's lists and chunks first,
  bool on_demand_ = false;  // then files below kSmallFileBytes
  static constexpr uint64_t kSmallFileBytes = 10ull << 20;
};

}  // namespace cairn
