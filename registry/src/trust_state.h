// A node's trust: the root in force, every root it has held (kState
// "trust/<version>"), and what no longer verifies under the root in force
// (withheld releases and tags: kept on disk, never served).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/store.h"
#include "cairn/trust.h"

namespace cairn {

// Thread-safe. `meta` and `clock` are not owned and must outlive it.
class TrustState {
 public:
  // Picks the root in force from the trust file's root and the stored chain
  // (a node never goes below a newer root it stored that follows from the
  // file), stores the file's root, and computes what is withheld.
  // FailedPrecondition when the root in force has expired.
  static absl::StatusOr<std::unique_ptr<TrustState>> Load(MetaStore* meta, Clock* clock,
                                                          TrustRootView file_root);

  // The root in force (a snapshot: a newer one may replace it at any time).
  std::shared_ptr<const TrustRootView> Current() const;
  // Walks from the root in force through `chain`, stores every new version,
  // makes the newest the root in force and recomputes what is withheld.
  // Returns how many versions it advanced.
  absl::StatusOr<int> Adopt(const std::vector<std::string>& chain);
  // The stored roots newer than `version`, oldest first.
  absl::StatusOr<std::vector<std::string>> ChainAfter(uint64_t version);

  // Why release `manifest_digest` is withheld; empty when it is not.
  std::string WithheldReason(std::string_view manifest_digest) const;
  // Whether the tag stored under `key` (meta::Key2(name, tag)) is withheld,
  // and why.
  bool TagWithheld(const std::string& key, std::string* why = nullptr) const;
  size_t releases_withheld() const;
  size_t tags_withheld() const;
  // A release (or tag) committed validly under the root in force is served
  // again.
  void Cleared(const std::string& manifest_digest, const std::string* tag_key);
  // Set when the node started on stored roots newer than its trust file, or
  // refused stored roots that do not follow from the file.
  const std::string& note() const { return note_; }

 private:
  TrustState(MetaStore* meta, Clock* clock) : meta_(meta), clock_(clock) {}
  absl::Status Init(TrustRootView file_root);
  absl::Status Recheck(const TrustRootView& trust);

  MetaStore* const meta_;
  Clock* const clock_;
  std::string note_;      // set once by Init
  absl::Mutex adopt_mu_;  // one update at a time
  mutable absl::Mutex mu_;
  std::shared_ptr<const TrustRootView> trust_ ABSL_GUARDED_BY(mu_);
  // manifest digest (or name \0 tag) -> why it no longer verifies
  absl::flat_hash_map<std::string, std::string> withheld_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> withheld_tags_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn
