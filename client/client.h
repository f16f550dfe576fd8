// The cairn client library: resolve (resolve.cc), publish a directory as a
// signed release (publish.cc), pull a release into a directory (pull.cc),
// verify a pulled tree (verify_tree.cc). Connections, TLS and the chunk
// fetcher come from the transport library (cairn/transport/).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/chunker.h"
#include "cairn/clock.h"
#include "cairn/objects.h"
#include "cairn/transport/channel.h"
#include "cairn/trust.h"
#include "cairn/v1/service.grpc.pb.h"

namespace cairn::client {

struct PublishOptions {
  std::string dir;
  std::string name;
  std::string version;
  std::vector<std::string> key_paths;   // at least one
  std::string tag = "latest";           // empty: no tag
  std::optional<uint64_t> tag_version;  // default: node's current + 1
  int tag_expires_days = 90;
  // Set when the same release goes to a second node, so that every node gets
  // byte-identical manifest and tag envelopes. Default: now.
  std::optional<int64_t> created_unix, tag_expires_unix;
  std::string base;  // NS/MODEL@sha256:... or NS/MODEL[:TAG], resolved on the node
  std::string relation = "finetune";
  std::string license;
  ChunkerParams chunker;
  bool progress = false;  // progress lines on stderr
  // Extra manifest metadata (key, value); `cairn import-hf` records the Hub
  // commit id and repository here.
  std::vector<std::pair<std::string, std::string>> metadata;
  // A Hugging Face cache snapshot: symlinks are followed when they resolve to
  // a regular file inside this folder (the cache repository's blobs/).
  // Empty: symlinks are refused.
  std::string link_root;
  // A Hub download: the top-level .cache folder (huggingface_hub's download
  // state) is not content.
  bool skip_hf_state = false;
};

// `cairn import-hf`: turns DIR (a Hub snapshot folder, one revision of a Hub
// cache folder models--ORG--NAME/snapshots/SHA, or the cache folder itself
// with `revision` naming a ref under refs/) into publish options: the folder
// to publish, the blob folder its links may point into, and the commit id
// (kept as manifest metadata hf.commit, so caches filled from the Hub and
// from Cairn agree). `commit` overrides the id found in the path.
absl::Status PrepareHfImport(const std::string& dir, const std::string& revision,
                             const std::string& commit, PublishOptions* o);

struct PublishResult {
  std::string node;  // the address it went to
  std::string manifest;
  int64_t created_unix = 0, tag_expires_unix = 0;
  std::string name, version, tag;
  uint64_t tag_version = 0;
  uint64_t bytes_total = 0, bytes_uploaded = 0;
  uint64_t chunks_total = 0, chunks_uploaded = 0;
  uint64_t files = 0;
  bool already_present = false;
  // The namespace needs more signatures than the keys given: the node keeps
  // the release pending until co-signers run `cairn sign`.
  bool pending = false;
  uint32_t signatures = 0, signatures_needed = 0;
  double seconds = 0;
};

// Adds `keys`' signatures to a release pending on `node` ("NAME@sha256:...").
// The manifest is checked to be that release (and, with `trust`, each key to be
// delegated for its namespace) before anything is signed.
struct CoSignResult {
  std::string name, version, manifest;
  uint64_t files = 0, bytes = 0;
  bool pending = true;
  uint32_t signatures = 0, signatures_needed = 0;
};
absl::StatusOr<CoSignResult> CoSign(Connection& node, const std::string& ref,
                                    const std::vector<const SigningKey*>& keys,
                                    const TrustRootView* trust);

// Publishes opts.dir. Refuses (InvalidArgument) an empty directory, symlinks,
// special files, unsafe paths and files that change while being read.
absl::StatusOr<PublishResult> Publish(Connection& node, const PublishOptions& opts);

// Re-signs tag `ref` (NS/MODEL:TAG) with a later expiry and the next version,
// pointing at the same release, when it expires within `within_days`
// (0: only once expired). For a cron job: exits 0 with renewed=false when
// the tag is not due.
struct RenewOptions {
  std::string ref;
  std::vector<std::string> key_paths;
  int expires_days = 90;
  int within_days = 14;
};
struct RenewResult {
  std::string ref, manifest;
  bool renewed = false;
  uint64_t old_version = 0, new_version = 0;
  int64_t old_expires_unix = 0, new_expires_unix = 0;
};
absl::StatusOr<RenewResult> RenewTag(Connection& node, const RenewOptions& opts);

// Points tag `tag` of the release `release` (NAME@sha256:..., NAME@VERSION or
// NAME:OTHER_TAG, resolved on the node) at that release: a signed tag record
// with the next version, committed without touching any file.
struct TagOptions {
  std::string release;
  std::string tag;
  std::vector<std::string> key_paths;
  int expires_days = 90;
  std::optional<uint64_t> tag_version;   // default: the node's current + 1
  const TrustRootView* trust = nullptr;  // when given, the release is verified
};
struct TagResult {
  std::string name, tag, manifest, version;
  std::string old_manifest;  // where the tag pointed before, if anywhere
  uint64_t tag_version = 0;
  int64_t expires_unix = 0;
};
absl::StatusOr<TagResult> MoveTag(Connection& node, const TagOptions& opts);

// `cairn yank`: a signed yank record (or, with undo, its withdrawal) for a
// release the node holds, committed without touching any file. The record's
// version is the node's current + 1.
struct YankOptions {
  std::string release;  // NS/MODEL@sha256:..., NS/MODEL@VERSION or NS/MODEL:TAG
  std::string reason;   // required to yank; at most 1024 bytes, one line
  bool undo = false;
  std::vector<std::string> key_paths;
  const TrustRootView* trust = nullptr;  // when given, the release is verified
};
struct YankResult {
  std::string name, version, manifest;
  uint64_t yank_version = 0;
  bool yanked = false;
  bool changed = true;  // false: it already was (or was not) yanked
};
absl::StatusOr<YankResult> YankRelease(Connection& node, const YankOptions& opts);

class ModelStore;

struct PullOptions {
  std::string ref;
  // TUF's first step, moving the trust root forward; returns the root to
  // judge by. When set (and not offline), it runs while the resolve is in
  // flight, and the nodes' answers are verified only against the root it
  // returns, which then replaces Pull's `trust` argument: a long link pays
  // one round trip for both.
  std::function<absl::StatusOr<TrustRootView>()> update_trust;
  // Where the release goes: a plain tree at `out`, or, when `out` is empty,
  // the store's own directory for it (ModelStore::ReleaseDir), with the tag
  // link moved to it.
  std::string out;
  // The managed store (not owned): chunks already in a file it indexed are
  // copied from there, never fetched, and every file written is indexed.
  // Metadata of the release is kept there for --offline. When null, the
  // pull opens the store at `store_dir`, waiting `store_wait_seconds` (< 0:
  // for ever, like apt's lock) while another cairn process holds it.
  ModelStore* store = nullptr;
  std::string store_dir;
  int store_wait_seconds = -1;
  // Resolve and assemble from the store alone (no node): FailedPrecondition
  // naming what is missing when a chunk is not local.
  bool offline = false;
  // Only these files (exact paths) and/or the files matching these globs
  // (fnmatch, '*' crosses '/', as huggingface_hub's --include); empty: all.
  std::vector<std::string> files, include, exclude;
  // Also re-read each assembled file and compare its whole SHA-256 with the
  // manifest's (every chunk is verified either way; see docs/security.md).
  // Also re-hash local chunks from files whose fingerprint is unchanged.
  bool paranoid = false;
  // With the store: evict least recently used releases until it fits
  // (0: no limit).
  uint64_t max_store_bytes = 0;
  size_t window_bytes = 16 << 20;  // most bytes one stream may owe us at a time
  // Parallel streams (TCP connections) to each node. On a long lossy link
  // each has its own congestion window, so throughput scales with them.
  int streams_per_node = 2;
  // Slow-retrieval guard: a node owing chunks that delivers less than
  // min_rate bytes/s over rate_seconds, or nothing for stall_seconds, is
  // dropped and its chunks go to the other nodes (with one node: the pull
  // fails, naming it).
  uint64_t min_rate = 32 << 10;
  int rate_seconds = 10;
  int stall_seconds = 10;
  // Where the highest verified version of each tag is recorded (rollback
  // protection); empty disables the check.
  std::string state_dir;
  // fdatasync each file before its rename. Default: false, like curl, wget
  // and huggingface_hub: a file appears under its name only once verified,
  // and `cairn verify` re-checks a tree after a power loss.
  bool fsync = false;
  // Progress on stderr: a bar redrawn in place, or a line every few seconds.
  enum class ProgressMode { kNone, kBar, kLines } progress = ProgressMode::kNone;
  // Replace files in `out` that no earlier pull wrote there (by default the
  // pull refuses, naming them, before writing anything).
  bool force = false;
  // Once it fires the pull stops (Cancelled), keeping what it wrote so the
  // same command resumes. Not owned; may be null.
  Cancellation* cancel = nullptr;
  // Notices as they happen (a mirror dropped and why, conflicting tags,
  // waiting for the cache); the CLI prints them on stderr. Called from the
  // fetch threads too. Default: none (they are still in PullResult::warnings).
  std::function<void(const std::string&)> log;
};

struct PullResult {
  std::string manifest, name, version;
  std::string path;      // the release's directory
  std::string tag_path;  // in the store, pulled through a tag: its stable link
  uint64_t bytes_total = 0, bytes_fetched = 0, bytes_local = 0;
  uint64_t chunks_total = 0, chunks_fetched = 0, chunks_local = 0;
  // Of bytes_local: taken from files whose fingerprint was the one recorded
  // when cairn wrote or verified them, without reading them back.
  uint64_t bytes_local_unread = 0;
  uint64_t files = 0;
  // Chunk lists that came with the resolve answer / were asked for one by one.
  uint64_t lists_carried = 0, lists_fetched = 0;
  bool partial = false;  // only some of the release's files were asked for
  double seconds = 0;
  // From the first chunk asked for to the last one received: the transfer
  // itself, without connecting, resolving and fetching chunk lists.
  double transfer_seconds = 0;
  struct Source {
    std::string address;
    uint64_t bytes = 0, chunks = 0;
    std::string demoted;  // why it was dropped, if it was
    // The round trip its streams measured (the shortest) and their rates
    // added up: what sizes their windows.
    double rtt_seconds = 0;
    double rate = 0;
  };
  std::vector<Source> sources;
  // The most chunk bytes asked for, or arrived and waiting to be written, at
  // once: about what a cut would have cost again.
  uint64_t peak_in_flight = 0;
  // Releases the store's size limit evicted after this pull ("NAME VERSION").
  std::vector<std::string> evicted;
  // Every notice of the pull (also given to PullOptions::log as it happened).
  std::vector<std::string> warnings;
};

// Resolves, verifies against `trust` before writing anything, then assembles
// each file under a temporary name from verified chunks and renames it.
// Writes the signed manifest to OUT/.cairn/manifest.envelope (and, for a
// partial pull, the paths it holds to OUT/.cairn/partial). With no node,
// `opts.offline` must be set.
absl::StatusOr<PullResult> Pull(Connection& node, const TrustRootView& trust,
                                const PullOptions& opts);
// The same from several nodes at once: metadata from all of them (the
// highest valid tag version wins), chunks from every node that has them.
absl::StatusOr<PullResult> Pull(const std::vector<Connection*>& nodes, const TrustRootView& trust,
                                const PullOptions& opts);

struct VerifyResult {
  std::string manifest, name, version;
  uint64_t files_ok = 0;
  std::vector<std::string> problems;  // "PATH: reason", one per differing file
  std::vector<std::string> extra;     // files present but not in the manifest
};

// Re-checks DIR against DIR/.cairn/manifest.envelope, verified with `trust`.
absl::StatusOr<VerifyResult> VerifyTree(const std::string& dir, const TrustRootView& trust);

// Resolves a ref on the node and verifies tag and manifest against `trust`
// (when given). Returns the manifest and its digest.
struct Resolved {
  std::string digest;
  std::string envelope;
  std::string tag_envelope;  // signed, when resolved by tag
  cairn::v1::Manifest manifest;
  std::optional<cairn::v1::TagRecord> tag;
  // The release's newest yank record when the node sent one that verifies
  // (decoded only, without a trust root) and names this release.
  std::optional<cairn::v1::YankRecord> yank;
  // Chunk lists the node sent with its answer (unverified: each is checked
  // against the manifest's file entries before use).
  std::vector<std::string> chunk_lists;
};
// Bytes of chunk lists a pull asks to come with the Resolve answer.
inline constexpr uint32_t kResolveListBytes = 512 << 10;
// What a resolve may also do, for a pull on a long link.
struct ResolveExtras {
  uint32_t list_bytes = 0;  // chunk lists to ask for with the answer
  // When set, called once a node answered and before its answer is
  // verified: the root to judge it by. A pull moves its trust root forward
  // meanwhile, and the answer is judged by the root that update leaves.
  std::function<absl::StatusOr<const TrustRootView*>()> late_trust;
};
// Checks what a node (or the local store: `source` names it) answered for
// `ref`: the tag and manifest verify under `trust` (when given) and name what
// `ref` asks for.
absl::StatusOr<Resolved> VerifyResolved(const cairn::v1::ResolveResponse& resp,
                                        const TrustRootView* trust, const Ref& ref,
                                        const std::string& source);
// With `include_withheld` (only without `trust`: nothing is verified) the
// node also answers for a release or tag it withholds after a revocation.
// Cancelled once `cancel` (not owned, may be null) fires.
absl::StatusOr<Resolved> ResolveVerified(Connection& node, const TrustRootView* trust,
                                         const std::string& ref, bool include_withheld = false,
                                         Cancellation* cancel = nullptr,
                                         const ResolveExtras& extras = {});

// For commands that describe a release (info, lineage), not ones that use
// it: when `resolving` failed because tag `ref` names a release its
// publisher yanked, "NS/MODEL@DIGEST" of that release as `node` lists the
// tag (resolve that: it verifies); otherwise nothing.
std::optional<std::string> YankedTagTarget(Connection& node, const std::string& ref,
                                           const absl::Status& resolving);

// Resolves on every node in parallel and keeps the highest valid tag version.
struct MultiResolved {
  Resolved resolved;
  size_t node = 0;                    // index of the node it came from
  std::vector<size_t> order;          // all nodes, those holding this release first
  std::vector<std::string> warnings;  // nodes that failed, conflicting tags
};
absl::StatusOr<MultiResolved> ResolveAcross(const std::vector<Connection*>& nodes,
                                            const TrustRootView* trust, const std::string& ref,
                                            const ResolveExtras& extras = {});

// A node's identity, feed and replication status (Federation.NodeInfo).
absl::StatusOr<cairn::v1::NodeInfoResponse> NodeStatus(Connection& node);
// Names under `prefix` with their releases and tags (Registry.List), and
// with `include_pending` the releases waiting for co-signatures.
absl::StatusOr<cairn::v1::ListResponse> ListNames(Connection& node, const std::string& prefix,
                                                  bool include_pending = false);
// A release waiting for co-signatures (Publish.GetPending). NotFound if none.
absl::StatusOr<cairn::v1::PendingResponse> PendingRelease(Connection& node,
                                                          const std::string& digest);
// The release `ref` names and the children the node knows of
// (Registry.Lineage; the parents are in its signed manifest).
absl::StatusOr<cairn::v1::LineageResponse> Children(Connection& node, const std::string& ref);

// Opens every address in parallel. Unreachable ones are skipped (their errors
// appended to *unreachable); Unavailable only when none answers.
absl::StatusOr<std::vector<std::unique_ptr<Connection>>> OpenAll(
    const std::vector<std::string>& addresses, int timeout_seconds,
    std::vector<std::string>* unreachable, const TlsOptions& tls = {});

// Rollback protection. The highest tag version verified so far for each
// name:tag lives in STATE_DIR/tags-<scope> (one "name tag version manifest"
// line per tag), where the scope names the trust root's root keys (see
// TrustScope): floors recorded under one trust root never judge releases
// verified under an unrelated one. PermissionDenied, naming `node`, for a
// lower version or for the same version naming another manifest; otherwise
// records `rec`.
absl::Status CheckAndRecordTag(const std::string& state_dir, const TrustRootView& trust,
                               const cairn::v1::TagRecord& rec, const std::string& node);
// 16 hex digits of SHA-256 over the trust root's sorted root key ids.
std::string TrustScope(const TrustRootView& trust);
// $XDG_STATE_HOME/cairn, else ~/.local/state/cairn.
std::string DefaultStateDir();

}  // namespace cairn::client
