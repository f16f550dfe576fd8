#include "publish_sessions.h"

#include "cairn/crypto.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "meta_schema.h"

namespace cairn {

size_t PublishSessions::CountPeer(const absl::flat_hash_map<std::string, Session>& m,
                                  std::string_view peer) {
  if (peer.empty()) return 0;
  size_t n = 0;
  for (const auto& [id, s] : m) n += s.peer == peer;
  return n;
}

absl::StatusOr<cairn::v1::ChallengeResponse> PublishSessions::Challenge(std::string_view name,
                                                                        std::string_view peer) {
  CAIRN_RETURN_IF_ERROR(ValidateName(name));
  const int64_t now = clock_->NowUnix();
  std::string c = meta::RandomHex(32);
  absl::MutexLock l(&mu_);
  absl::erase_if(challenges_, [&](const auto& kv) { return kv.second.expires <= now; });
  if (challenges_.size() >= opts_.max_sessions) {
    return absl::ResourceExhaustedError("too many pending publish challenges; retry later");
  }
  if (CountPeer(challenges_, peer) >= opts_.max_sessions_per_peer) {
    return absl::ResourceExhaustedError(StrCat("too many pending publish challenges from ", peer,
                                               " (limit ", opts_.max_sessions_per_peer, ")"));
  }
  challenges_[c] = Session{std::string(name), now + opts_.challenge_seconds, std::string(peer), ""};
  cairn::v1::ChallengeResponse out;
  out.set_challenge(c);
  out.set_expires_unix(now + opts_.challenge_seconds);
  return out;
}

absl::StatusOr<cairn::v1::OpenSessionResponse> PublishSessions::Open(
    const cairn::v1::OpenSessionRequest& r, std::string_view peer, const TrustRootView& trust) {
  CAIRN_RETURN_IF_ERROR(ValidateName(r.name()));
  const int64_t now = clock_->NowUnix();
  {
    absl::MutexLock l(&mu_);
    auto it = challenges_.find(r.challenge());
    if (it == challenges_.end() || it->second.expires <= now || it->second.name != r.name()) {
      return absl::UnauthenticatedError("unknown or expired publish challenge");
    }
    challenges_.erase(it);  // one use only
  }
  std::string_view ns = NamespaceOf(r.name());
  std::string pae = Pae(kSessionPayloadType, StrCat(r.challenge(), "\n", r.name()));
  std::vector<std::string> tried;
  std::string signer;
  for (const auto& s : r.signatures()) {
    tried.push_back(s.key_id());
    const auto* key = trust.FindKey(s.key_id());
    if (key && trust.IsDelegated(s.key_id(), ns) && VerifyEd25519(key->ed25519(), pae, s.sig())) {
      signer = s.key_id();
      break;
    }
  }
  if (signer.empty()) {
    return absl::PermissionDeniedError(
        StrCat("key(s) ", StrJoin(tried, ", "), " not delegated for namespace '", ns,
               "' (or revoked) in this node's trust root v", trust.root().version(),
               " (or bad signature): run cairn trust delegate, then cairn trust push --node to "
               "give the node the new root"));
  }
  cairn::v1::OpenSessionResponse out;
  out.set_session_id(meta::RandomHex(24));
  out.set_expires_unix(now + opts_.session_seconds);
  absl::MutexLock l(&mu_);
  absl::erase_if(sessions_, [&](const auto& kv) { return kv.second.expires <= now; });
  if (sessions_.size() >= opts_.max_sessions) {
    return absl::ResourceExhaustedError("too many open publish sessions; retry later");
  }
  if (CountPeer(sessions_, peer) >= opts_.max_sessions_per_peer) {
    return absl::ResourceExhaustedError(StrCat(
        "too many open publish sessions from ", peer, " (limit ", opts_.max_sessions_per_peer,
        "); they expire ", opts_.session_seconds, "s after opening"));
  }
  sessions_[out.session_id()] = Session{r.name(), out.expires_unix(), std::string(peer), signer};
  return out;
}

void PublishSessions::End(std::string_view id) {
  absl::MutexLock l(&mu_);
  sessions_.erase(std::string(id));
}

absl::StatusOr<std::string> PublishSessions::Check(std::string_view id) {
  const int64_t now = clock_->NowUnix();
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(std::string(id));
  if (it == sessions_.end() || it->second.expires <= now) {
    return absl::UnauthenticatedError("publish session unknown or expired; open a new one");
  }
  return it->second.name;
}

absl::Status PublishSessions::Charge(std::string_view session_id, uint64_t bytes) {
  const int64_t now = clock_->NowUnix();
  const int64_t day = now / 86400;
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end() || it->second.expires <= now) {
    return absl::UnauthenticatedError("unknown or expired publish session");
  }
  const std::string& key = it->second.key_id;
  uint64_t quota = opts_.upload_bytes_per_day;
  if (auto q = opts_.upload_quota_by_key.find(key); q != opts_.upload_quota_by_key.end()) {
    quota = q->second;
  }
  if (quota == 0) return absl::OkStatus();
  auto cached = uploads_.find(key);
  uint64_t used;
  if (cached != uploads_.end() && cached->second.first == day) {
    used = cached->second.second;
  } else {
    // A read error must not reset the day's usage: refuse instead.
    CAIRN_ASSIGN_OR_RETURN(used, meta::ReadCounter(meta_, meta::QuotaKey(key, day), 0));
  }
  if (used + bytes > quota) {
    return absl::ResourceExhaustedError(
        StrCat("upload quota of publisher key ", key, " exhausted: ", used, " of ", quota,
               " bytes used today; it resets at 00:00 UTC (in ", (day + 1) * 86400 - now,
               " s), or ask the node operator to raise it"));
  }
  CAIRN_RETURN_IF_ERROR(
      meta_->Commit({WriteOp{Table::kState, meta::QuotaKey(key, day), StrCat(used + bytes)}},
                    /*sync=*/false));
  uploads_[key] = {day, used + bytes};
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> PublishSessions::UploadedToday(const std::string& key_id) {
  return meta::ReadCounter(meta_, meta::QuotaKey(key_id, clock_->NowUnix() / 86400), 0);
}

}  // namespace cairn
