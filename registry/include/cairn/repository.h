// A node's content: verified releases, tags and chunks, and the publish
// protocol that admits new ones. The gRPC services in mirror-node/ are thin
// adapters over this class.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/s3_store.h"
#include "cairn/store.h"
#include "cairn/trust.h"
#include "cairn/v1/service.pb.h"
#include "cairn/verify.h"

namespace cairn {

class ChangeFeed;
class GcGuardedStore;
class PublishSessions;
class TrustState;

// Free bytes a data directory's file system needs for Repository::Open.
inline constexpr uint64_t kMinFreeToOpen = 16 << 20;

// How much a node may hold (Repository::MakeRoom). Sizes are releases'
// bytes (their files' sizes summed), each release counted whole: releases
// sharing chunks count them in each, so the disk holds at most this much.
struct CapacityOptions {
  // All releases held; 0: no cap. Default: 0.
  uint64_t max_bytes = 0;
  // Per namespace: the releases of NS held; absent: no cap.
  absl::flat_hash_map<std::string, uint64_t> namespace_bytes;
  // Never evicted: "NS/*" (fnmatch over NS/MODEL), "NS/MODEL",
  // "NS/MODEL@VERSION" or "NS/MODEL@sha256:...". Releases published to this
  // node (not mirrored) are never evicted either.
  std::vector<std::string> pins;
};

struct RepositoryOptions {
  PackStoreOptions pack;
  // Chunks in an S3 bucket (shared by several frontends) instead of pack
  // files under the data directory.
  std::optional<S3Options> s3_chunks;
  CapacityOptions capacity;
  // Lifetime of a publish session. Default: 1 hour.
  int64_t session_seconds = 3600;
  // Lifetime of a challenge. Default: 5 minutes.
  int64_t challenge_seconds = 300;
  // How long a release waiting for co-signatures is kept. Default: 7 days.
  int64_t pending_seconds = 7 * 86400;
  // Most open sessions (and, separately, pending challenges) per client
  // address. Default: 16.
  size_t max_sessions_per_peer = 16;
  // Bytes of new chunks each publisher key may upload per UTC day; 0: no
  // limit. Default: 0. `upload_quota_by_key` overrides it per key id.
  uint64_t upload_bytes_per_day = 0;
  absl::flat_hash_map<std::string, uint64_t> upload_quota_by_key;
  // Most sessions and challenges held at once. Default: 4096 each.
  size_t max_sessions = 4096;
  // Change-feed events kept; a follower whose cursor is older than the oldest
  // kept event gets a snapshot instead. Default: 1,000,000.
  uint64_t feed_retain = 1000000;
  // Free-form region label reported in NodeInfo. Default: empty.
  std::string region;
};

// Garbage collection (Repository::CollectGarbage).
struct GcOptions {
  // A chunk stored less than this long ago is never removed: it may belong
  // to an upload or a replication whose chunk lists are not staged yet.
  // Default: 24 hours.
  int64_t grace_seconds = 86400;
  // Chunk lists a replication staged and nothing else names are kept this
  // long after a pass first finds them (with them, the chunks they name):
  // a replication stalled for longer starts over. Default: 7 days.
  int64_t staged_retention_seconds = 7 * 86400;
  // Pack files whose live bytes fall below this fraction of their disk space
  // are rewritten. 0: never. Default: 0.5.
  double compact_below = 0.5;
  // A release withheld (it no longer verifies under the trust root in force:
  // a revoked signer, a namespace no longer delegated) for this long after a
  // pass first found it so is dropped: its manifest, its edge in the lineage
  // and its yank record; its chunk lists and the chunks only it named then go
  // as garbage. Its tag records stay (their versions keep rollback
  // protection). 0: kept for ever. Default: 30 days.
  int64_t withheld_retention_seconds = 30 * 86400;
  // A release its publisher yanked is dropped this long after a pass first
  // finds it yanked (its tags and yank record stay; it is marked evicted, so
  // followers' feeds do not bring it back, and a request by digest fetches it
  // on demand). 0: yanked releases are kept. Default: 0.
  int64_t yanked_retention_seconds = 0;
  // Count what would go; remove nothing.
  bool dry_run = false;
};

// What one pass did (or, dry, would do).
struct GcReport {
  uint64_t chunks = 0;          // stored when the sweep began
  uint64_t chunks_removed = 0;  // garbage removed (dry: found)
  uint64_t bytes_removed = 0;
  uint64_t chunks_in_grace = 0;   // garbage kept: stored within the grace period
  uint64_t chunks_touched = 0;    // garbage kept: a client was told of it lately
  uint64_t staged_dropped = 0;    // stale staged chunk lists
  uint64_t pending_dropped = 0;   // expired releases waiting for co-signatures
  uint64_t withheld_dropped = 0;  // withheld past withheld_retention_seconds
  uint64_t yanked_dropped = 0;    // yanked past yanked_retention_seconds
  uint64_t lists_dropped = 0;     // chunk lists no release names any more
  uint64_t mark_bytes = 0;        // memory of the live-chunk filter
  CompactReport compact;
  // The chunk store is shared (S3): chunks_removed and bytes_removed are the
  // garbage found; compact.shared says what the collection round did.
  bool shared_store = false;
  double seconds = 0;
  bool complete = false;  // false: stopped before the end
};

// A node's content. The facade over its parts: the meta-key schema
// (meta_schema), the change feed (change_feed), trust state and withholding
// (trust_state), publish sessions and quotas (publish_sessions), and commit
// and co-signing (repository_commit.cc). Thread-safe.
// Tags expiring within this are reported (status, the node's log).
inline constexpr int64_t kTagWarningSeconds = 14 * 86400;
// "YYYY-MM-DD" (UTC).
std::string UtcDay(int64_t unix_seconds);

class Repository {
 public:
  // Opens DIR/meta and DIR/chunks and locks DIR/LOCK, creating them only in
  // a directory without data. FailedPrecondition when another process holds
  // DIR, or when DIR holds files but its database is gone (see Repair).
  // `clock` (not owned) must outlive the repository.
  static absl::StatusOr<std::unique_ptr<Repository>> Open(const std::string& dir,
                                                          TrustRootView trust,
                                                          const RepositoryOptions& opts = {},
                                                          Clock* clock = Clock::Real());
  // Rebuilds DIR's metadata database and chunk index from the files left in
  // them (after meta/CURRENT or a MANIFEST was lost). DIR must not be in use.
  static absl::Status Repair(const std::string& dir);
  // The pid of the process that holds DIR open (it writes it to DIR/LOCK);
  // 0 when none does.
  static absl::StatusOr<int> HolderOf(const std::string& dir);
  // Copies the repository into the new (or empty) directory `dest` while it
  // serves: a data directory a node can be started on, holding every release
  // committed before the call with all of its chunks (and perhaps some
  // committed during it). Table files are hard-linked where `dest` is on the
  // same file system (they are immutable), pack files copied. Returns the
  // bytes in the copy.
  // It is built as DEST.partial and renamed to DEST when whole; a failure or
  // a cancel (`cancel`, may be null) removes it. DEST may not be inside the
  // data directory (symlinks resolved) nor hold control characters.
  absl::StatusOr<uint64_t> Backup(const std::string& dest, Cancellation* cancel = nullptr);
  // Over given stores (tests inject faults through them). Takes ownership.
  // Reads the node state: a failed read is returned, never taken as empty.
  static absl::StatusOr<std::unique_ptr<Repository>> Create(std::unique_ptr<MetaStore> meta,
                                                            std::unique_ptr<ChunkStore> chunks,
                                                            TrustRootView trust,
                                                            const RepositoryOptions& opts = {},
                                                            Clock* clock = Clock::Real());
  ~Repository();
  Repository(const Repository&) = delete;
  Repository& operator=(const Repository&) = delete;

  // ---- Registry (read-only) ----
  // NotFound for an unknown name, tag or digest; InvalidArgument for a bad ref.
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(std::string_view ref,
                                                     bool include_withheld = false);
  // A committed object's bytes by "sha256:..." name. NotFound when absent.
  absl::StatusOr<std::string> GetObject(std::string_view digest);
  absl::StatusOr<cairn::v1::ListResponse> List(std::string_view prefix,
                                               bool include_withheld = false,
                                               bool include_pending = false);
  absl::StatusOr<cairn::v1::LineageResponse> Lineage(std::string_view ref);

  ChunkStore* chunks() { return chunks_.get(); }
  // The same store without garbage collection's bookkeeping, for readers
  // that promise a client nothing about what is held (serving, the scrub):
  // a chunk Has() reports here may be collected a moment later unless a
  // release names it. Every answer that lets a publisher or a commit count
  // on a chunk goes through chunks().
  ChunkStore* chunks_for_reads();

  // ---- Garbage collection (repository_gc.cc) ----
  // One pass while the node serves: marks every chunk that a release (served,
  // withheld or pending), a staged chunk list (a publish session, a
  // replication in progress) names; removes the other chunks stored before
  // the grace period that no client was told of within the last session
  // lifetime; drops expired pending releases and stale staged lists;
  // compacts. Never removes a chunk a concurrent commit needs: a commit
  // checks each chunk through the guarded store, which the sweep respects.
  // One pass at a time (FailedPrecondition otherwise). Stops early, with
  // complete = false, when `cancel` (may be null) is.
  absl::StatusOr<GcReport> CollectGarbage(const GcOptions& opts, Cancellation* cancel = nullptr);
  // Over a chunk store shared with other nodes (S3): answers the collection
  // rounds the collecting node opened, naming the chunks of the condemned
  // packs this node counts on: those its releases (served or withheld),
  // pending releases and staged lists name, and those a client was told of
  // lately. Nothing to do for a store of its own.
  absl::Status AnswerCollection();

  // ---- Federation ----
  // Events after `after` (at most max_events, capped at 1000), or a snapshot
  // of every current release and tag when `after` is older than the oldest
  // retained event. Every commit that adds a release or moves a tag appends
  // one event in the same atomic batch, so the feed never names a release the
  // node does not hold. OutOfRange when `after` is past the head (this node
  // was restored from an older copy, or is another node).
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t after, uint32_t max_events);
  // Feed, plus what the request asks to carry in the same answer: the trust
  // roots past `trust_after` and the events' chunk lists up to
  // `chunk_list_bytes` (at most kFeedListBytes).
  absl::StatusOr<cairn::v1::FeedResponse> Feed(const cairn::v1::FeedRequest& req);
  static constexpr size_t kFeedListBytes = 1 << 20;
  // Appends the chunk lists of the manifest in `manifest_envelope` to `out`,
  // in file order, skipping (then recording) roots in `sent`, while each
  // fits in what is left of `*budget`; the first that does not, or one not
  // held, ends it (*budget becomes 0). For answers that carry lists.
  void AppendChunkLists(std::string_view manifest_envelope, size_t* budget,
                        absl::flat_hash_set<std::string>* sent,
                        google::protobuf::RepeatedPtrField<std::string>* out);
  absl::StatusOr<cairn::v1::NodeInfoResponse> NodeInfo();
  // Served tags whose expiry is before now + `within_seconds` (expired ones
  // too), soonest first.
  absl::StatusOr<std::vector<cairn::v1::TagRecord>> ExpiringTags(int64_t within_seconds);
  // The feed's head now. Never waits for a commit in progress.
  uint64_t FeedHead() const;
  // Grows whenever what List answers may have changed: the feed's head plus
  // the changes that make no feed event (evictions, drops, tags of releases
  // not held). For caches of List.
  uint64_t ListGeneration() const { return FeedHead() + list_changes_.load(); }
  // Blocks until the feed head passes `after` or `timeout` passes; returns
  // the head.
  uint64_t WaitForFeed(uint64_t after, absl::Duration timeout);
  // Every release (name, version, digest) and tag (name, tag, version, digest).
  absl::StatusOr<cairn::v1::SummaryResponse> Summary();
  // The held version of tag name:tag (0 when there is none); the store's
  // error or DataLoss when it cannot be read.
  absl::StatusOr<uint64_t> TagVersion(const std::string& name, const std::string& tag);
  // The newest yank record held for a release, as Summary lists it
  // (version 0: none).
  absl::StatusOr<cairn::v1::YankSummary> YankOf(std::string_view manifest_digest);

  // ---- Capacity and eviction (repository_capacity.cc) ----
  // Called by a replicator (feed or on demand) before it fetches release
  // `digest` of `bytes`: when taking it would pass max_bytes or its
  // namespace's cap, evicts mirrored releases that are not pinned, least
  // recently requested first, until it fits (their chunks go at the next
  // garbage collection, which SetOnEvicted's callback may start). Evicts
  // nothing and answers ResourceExhausted, saying what is held and why
  // nothing more can go, when it cannot fit (a feed replicator defers such a
  // release: MarkEvicted), OutOfRange when the release is larger than a cap
  // itself. Either way before any byte is fetched. A publish's commit asks
  // too: publishes count against the caps.
  absl::Status MakeRoom(const cairn::v1::Manifest& m, const std::string& digest, uint64_t bytes);
  // Evicts until the caps hold (after a restart with lower caps). Returns how
  // many releases went.
  absl::StatusOr<uint64_t> EnforceCapacity();
  // A client asked for release `digest` (eviction order). Cheap: memory only,
  // written to the node state when room is next made.
  void NoteRequested(std::string_view digest);
  // Release `digest` came from another node (a replicator calls it after
  // the commit): it may be evicted.
  absl::Status MarkMirrored(std::string_view digest);
  // Evicted here for space (a replicator skips it; a fetch on demand brings
  // it back).
  absl::StatusOr<bool> IsEvicted(std::string_view digest);
  // Marks a release not held as evicted (a replicator deferring one there is
  // no room for): the feed and anti-entropy pass it over from then on.
  absl::Status MarkEvicted(std::string_view digest, std::string_view what);
  cairn::v1::CapacityStatus CapacityStatus();
  // Called (under the capacity lock: keep it short) with "NS/MODEL VERSION,
  // ... (why)" after each eviction.
  void SetOnEvicted(std::function<void(const std::string&)> fn);

  // ---- Replication (a peer's releases, verified against this node's trust) ----
  // Stores a chunk list fetched from a peer (invisible until committed).
  absl::StatusOr<std::string> StageReplicatedChunkList(std::string_view bytes);
  // A chunk list or manifest committed or staged here. NotFound otherwise.
  absl::StatusOr<std::string> GetObjectOrStaged(std::string_view digest);
  // Verifies and commits a release received from a peer exactly as Commit
  // does (signatures against this node's own trust root, every chunk list and
  // chunk present), with no session; a tag that is not newer than the held one
  // is dropped (the highest valid version wins) and reported in
  // tag_not_newer. Stores `cursor` under `cursor_key` in the same batch, so a
  // crash never loses or repeats a step.
  // A yank record (may be empty) is applied the same way: the highest
  // version wins, an older one is dropped (yank_not_newer).
  absl::StatusOr<cairn::v1::CommitResponse> CommitReplicated(std::string_view manifest_envelope,
                                                             std::string_view tag_envelope,
                                                             std::string_view yank_envelope,
                                                             std::string cursor_key,
                                                             uint64_t cursor);
  // A replicated tag record whose release this node does not fetch now
  // (evicted for space, or no room): the tag is stored all the same when it
  // is newer than the held one, so a request for the tag fetches the release
  // it names on demand instead of serving the old target. With the cursor,
  // in one batch. Whether the tag moved.
  absl::StatusOr<bool> ApplyReplicatedTag(std::string_view tag_envelope, std::string cursor_key,
                                          uint64_t cursor);
  // Marks release `digest` as being fetched by one replicator: a second
  // replicator (another upstream) claiming the same release waits until the
  // first lets go, then finds it held and fetches nothing, so a node in a mesh
  // never transfers a release twice. The claim ends when the guard dies.
  class FetchClaim {
   public:
    FetchClaim(Repository* r, std::string d) : repo_(r), digest_(std::move(d)) {}
    ~FetchClaim();
    FetchClaim(const FetchClaim&) = delete;
    FetchClaim& operator=(const FetchClaim&) = delete;

   private:
    Repository* repo_;
    std::string digest_;
  };
  std::unique_ptr<FetchClaim> ClaimFetch(const std::string& digest);
  // Whether the release `digest` is committed here; the store's error when
  // it cannot tell.
  absl::StatusOr<bool> HasRelease(std::string_view digest);

  // A follower's persisted cursor (0 when none; a read error is returned, so
  // a follower never replays from 0 by mistake) and a cursor-only update.
  absl::StatusOr<uint64_t> GetCursor(const std::string& cursor_key);
  absl::Status SetCursor(std::string cursor_key, uint64_t cursor);
  // A random id made at first start and kept in the node state.
  const std::string& node_id() const { return node_id_; }
  // The trust root in force (a copy: it may be replaced by a newer one at any
  // time by AdoptTrustChain).
  TrustRootView trust() const;

  // ---- Trust root updates ----
  // Walks from the root in force through `chain` (TUF rotation: each version
  // signed by a threshold of the previous one's root keys and of its own),
  // stores every new version and makes the newest the root in force. Then
  // re-checks every held release and tag: whatever no longer verifies (signed
  // by a revoked key, a namespace no longer delegated) is withheld: kept on
  // disk, never served, counted in NodeInfo. Returns how many versions it
  // advanced (0 when the chain holds nothing newer).
  absl::StatusOr<int> AdoptTrustChain(const std::vector<std::string>& chain);
  // The stored roots newer than `version`, oldest first (for peers and
  // clients walking the chain).
  absl::StatusOr<std::vector<std::string>> TrustChainAfter(uint64_t version);
  // Why release `manifest_digest` is withheld, or empty when it is not.
  std::string WithheldReason(std::string_view manifest_digest) const;
  // Set when the node started on stored roots newer than its trust file, or
  // refused stored roots that do not follow from the file.
  const std::string& trust_note() const;
  Clock* clock() const { return clock_; }

  // ---- Publish ----
  // A one-time challenge for a session on `name`.
  // `peer`: the client's address, for the per-peer limit ("" in tests).
  absl::StatusOr<cairn::v1::ChallengeResponse> Challenge(std::string_view name,
                                                         std::string_view peer = "");
  // Opens a session when the challenge is live and at least one signature is
  // by a key delegated for the name's namespace. PermissionDenied /
  // Unauthenticated otherwise.
  absl::StatusOr<cairn::v1::OpenSessionResponse> OpenSession(const cairn::v1::OpenSessionRequest& r,
                                                             std::string_view peer = "");
  // Counts `bytes` of new chunks against the quota of the key that opened
  // `session_id`. ResourceExhausted (saying how much is left and when it
  // resets) when they do not fit today; nothing is charged then.
  absl::Status ChargeUpload(std::string_view session_id, uint64_t bytes);
  // Bytes the key uploaded today (UTC).
  absl::StatusOr<uint64_t> UploadedToday(const std::string& key_id);
  // Unauthenticated when the session is unknown or expired. Returns its name.
  absl::StatusOr<std::string> CheckSession(std::string_view session_id);
  // Frees a session (a publisher gave up; commits free theirs by themselves).
  void EndSession(std::string_view session_id);
  // Stores a chunk list uploaded in a session (invisible until a commit names
  // it). Returns its digest name.
  absl::StatusOr<std::string> StageChunkList(std::string_view session_id, std::string_view bytes);
  // Verifies and atomically commits a release (and optional tag): signatures
  // against the trust root and the namespace delegation, paths, every chunk
  // list and every chunk present. PermissionDenied for trust failures,
  // InvalidArgument for malformed objects, FailedPrecondition for missing
  // chunks or lists, AlreadyExists for a different release under an existing
  // name+version or a tag version that does not increase.
  // When the manifest carries at least one valid delegated signature but
  // fewer than the namespace's threshold, the release is kept as pending
  // (pending = true in the response) for `pending_seconds`, unserved, until
  // CoSign completes it.
  // `manifest_envelope_digest` (when `manifest_envelope` is empty) names an
  // envelope the session uploaded with PutObjectPart.
  // `yank_envelope` (no tag then) yanks or un-yanks the release, which the
  // node must hold: its version must increase on the held yank record's
  // (AlreadyExists otherwise). A tag may not be moved to a yanked release
  // (FailedPrecondition).
  // Resolve answers no tag with a yanked release (FailedPrecondition saying
  // why and how to pull it by digest); by digest or version it answers with
  // yank_envelope set.
  absl::StatusOr<cairn::v1::CommitResponse> Commit(std::string_view session_id,
                                                   std::string_view manifest_envelope,
                                                   std::string_view tag_envelope,
                                                   std::string_view manifest_envelope_digest = {},
                                                   std::string_view yank_envelope = {});
  // PutObject: an object, or one part of one (see PutObjectRequest). Parts
  // are kept on disk (kStaging "upload/<session>/..."), charged to the
  // session's quota as they arrive, and must come in order; the complete
  // object is checked and staged like StageChunkList, or kept for Commit
  // when it is a manifest envelope.
  absl::StatusOr<cairn::v1::PutObjectResponse> PutObjectPart(
      const cairn::v1::PutObjectRequest& req);
  // Bytes of uploads in parts held on disk (in progress, or an uploaded
  // manifest envelope waiting for its Commit).
  absl::StatusOr<uint64_t> UploadBytesHeld();
  // A pending release. NotFound when there is none (or it expired).
  absl::StatusOr<cairn::v1::PendingResponse> GetPending(std::string_view manifest_digest);
  // List's include_pending: the unexpired pending releases under `prefix`.
  absl::Status AddPending(std::string_view prefix,
                          std::map<std::string, cairn::v1::ListEntry>* entries);
  // Adds the valid signatures among `req`'s to a pending release and commits
  // it once the threshold is met (as Commit would). PermissionDenied when no
  // offered signature is valid and delegated.
  absl::StatusOr<cairn::v1::CommitResponse> CoSign(const cairn::v1::CoSignRequest& req);

 private:
  Repository(std::unique_ptr<MetaStore> meta, std::unique_ptr<ChunkStore> chunks,
             const RepositoryOptions& opts, Clock* clock);
  absl::Status Init(TrustRootView trust);
  struct CommitSpec {
    std::string required_name;       // a session's name; empty: any
    bool stale_tag_is_ok = false;    // replication: drop a tag that is not newer
    std::string_view yank_envelope;  // optional: a yank record for the release
    std::vector<WriteOp> extra_ops;  // written in the same batch
  };
  absl::StatusOr<cairn::v1::CommitResponse> CommitVerified(std::string_view manifest_envelope,
                                                           std::string_view tag_envelope,
                                                           const CommitSpec& spec);
  // Keeps a release short of its namespace's threshold for co-signers.
  absl::StatusOr<std::optional<cairn::v1::CommitResponse>> MaybeKeepPending(
      std::string_view session_name, std::string_view manifest_envelope,
      std::string_view tag_envelope);
  absl::StatusOr<std::string> LoadObject(std::string_view digest, bool allow_staged);
  // Removes the staged chunk lists of ended or expired publish sessions.
  absl::Status DropOrphanedStaging();
  // Moves staged chunk lists to the served objects, kPromoteBatchBytes per
  // write batch.
  static constexpr size_t kPromoteBatchBytes = 16 << 20;
  absl::Status PromoteStaged(const absl::flat_hash_set<std::string>& roots);
  // The current releases and tags as feed events (a follower too far behind).
  absl::Status Snapshot(cairn::v1::FeedResponse* out);
  // Calls fn(envelope, record) for each stored tag under `prefix` that is not
  // withheld; DataLoss for a stored tag that does not decode.
  absl::Status ScanServedTags(
      std::string_view prefix,
      const std::function<void(std::string_view, const cairn::v1::TagRecord&)>& fn);

  // The live set of a GC pass: chunk lists' digests into *objects, their
  // chunks to `chunk`.
  using ChunkVisitor = std::function<void(const Digest&)>;
  absl::Status MarkList(std::string_view list_digest, const ChunkVisitor& chunk,
                        absl::flat_hash_set<std::string>* objects);
  absl::Status MarkManifest(std::string_view manifest_envelope, const ChunkVisitor& chunk,
                            absl::flat_hash_set<std::string>* objects);
  // Every release held (served or withheld): its manifest and chunk lists
  // into *objects, its chunks to `chunk`; stops early (OK) when `stopped`.
  absl::Status MarkReleases(const ChunkVisitor& chunk, absl::flat_hash_set<std::string>* objects,
                            const std::function<bool()>& stopped);
  // Releases that lapsed: withheld, or yanked by their publisher, past the
  // retention period of each (GcOptions). Drops them (their manifests'
  // digests into *manifests) and records when the others were first found
  // withheld or yanked.
  absl::Status DropLapsedReleases(const GcOptions& o, std::vector<std::string>* manifests,
                                  GcReport* r);
  // Removes chunk lists of dropped releases that nothing in `live` names,
  // unless a release was committed since the feed was at `head_at_mark`.
  absl::Status DropLists(const std::vector<std::string>& lists,
                         const absl::flat_hash_set<std::string>& live, bool dry_run,
                         uint64_t head_at_mark, GcReport* r);
  // Staged lists: which are still needed; drops the stale ones.
  absl::Status SweepStaged(const GcOptions& o, const ChunkVisitor& chunk,
                           absl::flat_hash_set<std::string>* objects, GcReport* r);

  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<ChunkStore> chunks_;
  GcGuardedStore* gc_guard_;               // chunks_, as the guard it is
  std::atomic<bool> gc_running_{false};    // one pass at a time
  std::atomic<uint64_t> list_changes_{0};  // ListGeneration
  const RepositoryOptions opts_;
  Clock* const clock_;
  int lock_fd_ = -1;
  std::string data_dir_;  // empty over injected stores
  std::string node_id_;
  std::unique_ptr<TrustState> trust_;
  std::unique_ptr<ChangeFeed> feed_;
  std::unique_ptr<PublishSessions> sessions_;
  absl::Mutex cosign_mu_;  // one co-signature at a time
  // Uploads in parts in progress, per session.
  struct Upload {
    cairn::v1::ObjectKind kind;
    uint64_t total = 0;
    uint64_t received = 0;
  };
  absl::Mutex upload_mu_;
  absl::flat_hash_map<std::string, Upload> uploads_ ABSL_GUARDED_BY(upload_mu_);
  // Sessions that may have upload keys on disk (parts, an envelope).
  absl::flat_hash_set<std::string> upload_sessions_ ABSL_GUARDED_BY(upload_mu_);
  // Removes the parts and envelope the session uploaded.
  absl::Status DropUploads(std::string_view session_id);
  absl::StatusOr<std::string> UploadedEnvelope(std::string_view session_id,
                                               std::string_view digest);
  absl::StatusOr<std::string> StageChunkListCharged(std::string_view session_id,
                                                    std::string_view bytes, bool charged);
  // Capacity (repository_capacity.cc).
  struct Held {
    std::string key;  // kReleases key: name \0 version
    std::string ns;
    uint64_t bytes = 0;
  };
  // Every release held, by digest (filled on first use; releases never change).
  absl::StatusOr<absl::flat_hash_map<std::string, Held>*> HeldReleasesLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(capacity_mu_);
  bool PinnedLocked(const std::string& digest, const Held& h) const;
  // Evicts `victims` (digests) in one batch; writes the request times kept
  // in memory.
  absl::Status EvictLocked(const std::vector<std::string>& victims, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(capacity_mu_);
  // Chooses releases to evict so that `need_node` bytes (and `need_ns` of
  // namespace `ns`) go; false when the evictable ones do not add up.
  absl::StatusOr<bool> ChooseVictimsLocked(int64_t need_node, const std::string& ns,
                                           int64_t need_ns, const std::string& keep,
                                           std::vector<std::string>* victims)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(capacity_mu_);
  absl::Mutex capacity_mu_;  // one decision at a time; before commit_mu_
  std::optional<absl::flat_hash_map<std::string, Held>> held_ ABSL_GUARDED_BY(capacity_mu_);
  uint64_t held_head_ ABSL_GUARDED_BY(capacity_mu_) = 0;  // feed head held_ was read at
  cairn::v1::CapacityStatus capacity_status_ ABSL_GUARDED_BY(capacity_mu_);
  std::function<void(const std::string&)> on_evicted_ ABSL_GUARDED_BY(capacity_mu_);
  // Orders requests for eviction (see RequestTick).
  int64_t RequestTick();
  std::atomic<int64_t> last_tick_{0};
  absl::Mutex requested_mu_;
  absl::flat_hash_map<std::string, int64_t> requested_ ABSL_GUARDED_BY(requested_mu_);

  absl::Mutex fetch_mu_;
  absl::CondVar fetch_cv_;
  absl::flat_hash_set<std::string> fetching_ ABSL_GUARDED_BY(fetch_mu_);
  // Serializes check-then-write of releases, tags and feed appends. Held
  // across the commit's fdatasync: nothing that serves reads takes it.
  absl::Mutex commit_mu_;
};

}  // namespace cairn
