// Publish sessions: one-time challenges, sessions opened by a delegated key,
// per-peer and global caps, and per-key daily upload quotas.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/store.h"
#include "cairn/trust.h"
#include "cairn/v1/service.pb.h"
#include "meta_schema.h"

namespace cairn {

struct PublishSessionOptions {
  int64_t session_seconds = 3600;   // a session's lifetime
  int64_t challenge_seconds = 300;  // a challenge's lifetime
  size_t max_sessions_per_peer = 16;
  size_t max_sessions = 4096;         // and, separately, challenges
  uint64_t upload_bytes_per_day = 0;  // per key; 0: no limit
  absl::flat_hash_map<std::string, uint64_t> upload_quota_by_key;
};

// Thread-safe. `meta` (quota counters) and `clock` are not owned and must
// outlive it. Sessions and challenges live in memory: a restart ends them.
class PublishSessions {
 public:
  PublishSessions(MetaStore* meta, Clock* clock, PublishSessionOptions opts)
      : meta_(meta), clock_(clock), opts_(std::move(opts)), secret_(meta::RandomHex(32)) {}

  // A one-time challenge for a session on `name`, live challenge_seconds.
  // Stateless (authenticated by the node itself): asking costs no memory.
  absl::StatusOr<cairn::v1::ChallengeResponse> Challenge(std::string_view name,
                                                         std::string_view peer);
  // Spends the challenge and opens a session when one signature over it is
  // by a key `trust` delegates for the name's namespace. Unauthenticated for
  // an unknown, spent or expired challenge; PermissionDenied for keys.
  absl::StatusOr<cairn::v1::OpenSessionResponse> Open(const cairn::v1::OpenSessionRequest& r,
                                                      std::string_view peer,
                                                      const TrustRootView& trust);
  // Frees the session (committed or abandoned); no-op when unknown.
  void End(std::string_view session_id);
  // Records that the session staged chunk list `digest` (it goes when the
  // session ends, unless a commit consumed it first). Unauthenticated when
  // the session is unknown or expired.
  absl::Status AddStaged(std::string_view session_id, std::string digest);
  // Staged chunk lists of sessions that ended or expired since the last
  // call, that no live session staged too: the caller deletes them.
  std::vector<std::string> TakeOrphans();
  // The session's staged lists, which it no longer owns (a pending release
  // keeps them).
  std::vector<std::string> TakeStaged(std::string_view session_id);
  // The session's name. Unauthenticated when unknown or expired.
  absl::StatusOr<std::string> Check(std::string_view session_id);
  // Counts `bytes` against the quota of the key that opened the session, for
  // the current UTC day. ResourceExhausted (how much is left, when it resets)
  // when they do not fit: nothing charged. A failed read of the stored
  // counter is returned, never taken as zero.
  absl::Status Charge(std::string_view session_id, uint64_t bytes);
  // Bytes `key_id` uploaded in the current UTC day.
  absl::StatusOr<uint64_t> UploadedToday(const std::string& key_id);

 private:
  struct Session {
    std::string name;
    int64_t expires;
    std::string peer;
    std::string key_id;               // the delegated key that opened it
    std::vector<std::string> staged;  // chunk lists it staged
  };
  // Moves the staged lists of sessions_[it] to orphans_ and erases it.
  void DropLocked(absl::flat_hash_map<std::string, Session>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> orphans_ ABSL_GUARDED_BY(mu_);
  static size_t CountPeer(const absl::flat_hash_map<std::string, Session>& m,
                          std::string_view peer);

  MetaStore* const meta_;
  Clock* const clock_;
  const PublishSessionOptions opts_;
  absl::Mutex mu_;
  std::string Mac(std::string_view name, int64_t expires, std::string_view nonce) const;

  const std::string secret_;  // the challenges' MAC key, random per process
  // Challenges spent by an opened session -> their expiry.
  absl::flat_hash_map<std::string, int64_t> spent_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);
  // key id -> (UTC day, bytes uploaded that day); persisted in kState.
  absl::flat_hash_map<std::string, std::pair<int64_t, uint64_t>> uploads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn
