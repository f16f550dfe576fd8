// A node's content: verified releases, tags and chunks, and the publish
// protocol that admits new ones. The gRPC services in mirror-node/ are thin
// adapters over this class.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cairn/store.h"
#include "cairn/trust.h"
#include "cairn/v1/service.pb.h"

namespace cairn {

using Clock = std::function<int64_t()>;  // unix seconds
int64_t SystemNowUnix();

struct RepositoryOptions {
  PackStoreOptions pack;
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

// Thread-safe.
class Repository {
 public:
  // Opens (creating) DIR/meta and DIR/chunks and locks DIR/LOCK.
  // FailedPrecondition when another process holds DIR.
  static absl::StatusOr<std::unique_ptr<Repository>> Open(const std::string& dir,
                                                          TrustRootView trust,
                                                          const RepositoryOptions& opts = {},
                                                          Clock clock = SystemNowUnix);
  // Over injected stores (tests). Takes ownership.
  Repository(std::unique_ptr<MetaStore> meta, std::unique_ptr<ChunkStore> chunks,
             TrustRootView trust, const RepositoryOptions& opts, Clock clock);
  ~Repository();
  Repository(const Repository&) = delete;
  Repository& operator=(const Repository&) = delete;

  // ---- Registry (read-only) ----
  // NotFound for an unknown name, tag or digest; InvalidArgument for a bad ref.
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(std::string_view ref);
  // A committed object's bytes by "sha256:..." name. NotFound when absent.
  absl::StatusOr<std::string> GetObject(std::string_view digest);
  absl::StatusOr<cairn::v1::ListResponse> List(std::string_view prefix);
  absl::StatusOr<cairn::v1::LineageResponse> Lineage(std::string_view ref);

  ChunkStore* chunks() { return chunks_.get(); }

  // ---- Federation ----
  // Events after `after` (at most max_events, capped at 1000), or a snapshot
  // of every current release and tag when `after` is older than the oldest
  // retained event. Every commit that adds a release or moves a tag appends
  // one event in the same atomic batch, so the feed never names a release the
  // node does not hold. OutOfRange when `after` is past the head (this node
  // was restored from an older copy, or is another node).
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t after, uint32_t max_events);
  absl::StatusOr<cairn::v1::NodeInfoResponse> NodeInfo();
  // Blocks until the feed head passes `after` or `timeout` passes; returns
  // the head.
  uint64_t WaitForFeed(uint64_t after, absl::Duration timeout);
  // Every release (name, version, digest) and tag (name, tag, version, digest).
  absl::StatusOr<cairn::v1::SummaryResponse> Summary();
  // True when a release `digest` is held and the tag is at `version` or newer.
  uint64_t TagVersion(const std::string& name, const std::string& tag);

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
  absl::StatusOr<cairn::v1::CommitResponse> CommitReplicated(std::string_view manifest_envelope,
                                                             std::string_view tag_envelope,
                                                             std::string cursor_key,
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
  // True when the release `digest` is committed here.
  bool HasRelease(std::string_view digest);

  // A follower's persisted cursor (0 when none) and a cursor-only update.
  uint64_t GetCursor(const std::string& cursor_key);
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
  const std::string& trust_note() const { return trust_note_; }

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
  uint64_t UploadedToday(const std::string& key_id);
  // Unauthenticated when the session is unknown or expired. Returns its name.
  absl::StatusOr<std::string> CheckSession(std::string_view session_id);
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
  absl::StatusOr<cairn::v1::CommitResponse> Commit(std::string_view session_id,
                                                   std::string_view manifest_envelope,
                                                   std::string_view tag_envelope);
  // A pending release. NotFound when there is none (or it expired).
  absl::StatusOr<cairn::v1::PendingResponse> GetPending(std::string_view manifest_digest);
  // Adds the valid signatures among `req`'s to a pending release and commits
  // it once the threshold is met (as Commit would). PermissionDenied when no
  // offered signature is valid and delegated.
  absl::StatusOr<cairn::v1::CommitResponse> CoSign(const cairn::v1::CoSignRequest& req);

 private:
  struct Session {
    std::string name;
    int64_t expires;
    std::string peer;
    std::string key_id;  // the delegated key that opened it
  };
  struct CommitSpec {
    std::string required_name;       // a session's name; empty: any
    bool stale_tag_is_ok = false;    // replication: drop a tag that is not newer
    std::vector<WriteOp> extra_ops;  // written in the same batch
  };
  absl::StatusOr<cairn::v1::CommitResponse> CommitVerified(std::string_view manifest_envelope,
                                                           std::string_view tag_envelope,
                                                           const CommitSpec& spec);
  absl::StatusOr<std::string> LoadObject(std::string_view digest, bool allow_staged);
  // Reads (or creates) node_id and the feed's head and tail.
  absl::Status InitState();
  // Picks the root in force from the trust file's root and the stored chain.
  absl::Status InitTrust(TrustRootView file_root);
  // Recomputes the withheld releases and tags under `trust`.
  absl::Status RecheckHeld(const TrustRootView& trust);
  std::shared_ptr<const TrustRootView> TrustPtr() const;
  bool TagWithheld(const std::string& key, std::string* why) const;

  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<ChunkStore> chunks_;
  mutable absl::Mutex trust_mu_;
  std::shared_ptr<const TrustRootView> trust_ ABSL_GUARDED_BY(trust_mu_);
  // manifest digest (or name \0 tag) -> why it no longer verifies
  absl::flat_hash_map<std::string, std::string> withheld_ ABSL_GUARDED_BY(trust_mu_);
  absl::flat_hash_map<std::string, std::string> withheld_tags_ ABSL_GUARDED_BY(trust_mu_);
  absl::Mutex adopt_mu_;   // one trust update at a time
  absl::Mutex cosign_mu_;  // one co-signature at a time
  std::string trust_note_;
  RepositoryOptions opts_;
  Clock clock_;
  int lock_fd_ = -1;
  std::string data_dir_;      // empty over injected stores
  absl::Status init_status_;  // of InitState(), reported by Commit and Feed
  std::string node_id_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Session> challenges_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);
  // key id -> (UTC day, bytes uploaded that day); persisted in kState.
  absl::flat_hash_map<std::string, std::pair<int64_t, uint64_t>> uploads_ ABSL_GUARDED_BY(mu_);
  absl::Mutex fetch_mu_;
  absl::CondVar fetch_cv_;
  absl::flat_hash_set<std::string> fetching_ ABSL_GUARDED_BY(fetch_mu_);
  absl::Mutex commit_mu_;  // serializes check-then-write of releases and tags
  uint64_t feed_head_ ABSL_GUARDED_BY(commit_mu_) = 0;  // last seq written
  uint64_t feed_tail_ ABSL_GUARDED_BY(commit_mu_) = 1;  // oldest seq kept
};

// Verifies a tag envelope against the trust root: payload type, record,
// namespace delegation, expiry at `now`. Returns the record.
absl::StatusOr<cairn::v1::TagRecord> VerifyTagEnvelope(const TrustRootView& trust,
                                                       std::string_view bytes, int64_t now);
// Verifies a manifest envelope: payload type, delegation signatures, manifest
// validity. *digest gets the manifest digest (SHA-256 of the payload as sent).
absl::StatusOr<cairn::v1::Manifest> VerifyManifestEnvelope(const TrustRootView& trust,
                                                           std::string_view bytes,
                                                           std::string* digest);

}  // namespace cairn
