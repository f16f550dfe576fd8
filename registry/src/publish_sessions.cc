#include "publish_sessions.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

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

std::string PublishSessions::Mac(std::string_view name, int64_t expires,
                                 std::string_view nonce) const {
  std::string msg = StrCat(name, "\n", expires, "\n", nonce);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[out[i] >> 4];
    hex += kHex[out[i] & 15];
  }
  return hex;
}

// Stateless: "EXPIRES.NONCE.MAC", the MAC (HMAC-SHA256 under a key only this
// process knows) binding the name and the expiry. Asking costs the node no
// memory, so no client can exhaust challenges for others.
absl::StatusOr<cairn::v1::ChallengeResponse> PublishSessions::Challenge(std::string_view name,
                                                                        std::string_view peer) {
  (void)peer;
  CAIRN_RETURN_IF_ERROR(ValidateName(name));
  const int64_t expires = clock_->NowUnix() + opts_.challenge_seconds;
  std::string nonce = meta::RandomHex(16);
  cairn::v1::ChallengeResponse out;
  out.set_challenge(StrCat(expires, ".", nonce, ".", Mac(name, expires, nonce)));
  out.set_expires_unix(expires);
  return out;
}

absl::StatusOr<cairn::v1::OpenSessionResponse> PublishSessions::Open(
    const cairn::v1::OpenSessionRequest& r, std::string_view peer, const TrustRootView& trust) {
  CAIRN_RETURN_IF_ERROR(ValidateName(r.name()));
  const int64_t now = clock_->NowUnix();
  const auto unknown = absl::UnauthenticatedError("unknown or expired publish challenge");
  std::vector<std::string_view> parts = Split(r.challenge(), '.');
  int64_t expires = 0;
  if (parts.size() != 3 || !ParseInt(parts[0], &expires) || expires <= now ||
      expires > now + opts_.challenge_seconds || parts[1].size() != 32) {
    return unknown;
  }
  std::string mac = Mac(r.name(), expires, parts[1]);
  if (parts[2].size() != mac.size() ||
      CRYPTO_memcmp(parts[2].data(), mac.data(), mac.size()) != 0) {
    return unknown;
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
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto next = std::next(it);
    if (it->second.expires <= now) DropLocked(it);
    it = next;
  }
  // One use only. Only challenges a delegated key answered are remembered
  // (until they expire), so this set is as bounded as the sessions.
  absl::erase_if(spent_, [&](const auto& kv) { return kv.second <= now; });
  if (spent_.contains(r.challenge())) return unknown;
  if (sessions_.size() >= opts_.max_sessions) {
    return absl::ResourceExhaustedError("too many open publish sessions; retry later");
  }
  if (CountPeer(sessions_, peer) >= opts_.max_sessions_per_peer) {
    return absl::ResourceExhaustedError(StrCat(
        "too many open publish sessions from ", peer, " (limit ", opts_.max_sessions_per_peer,
        "); they expire ", opts_.session_seconds, "s after opening"));
  }
  spent_[r.challenge()] = expires;
  sessions_[out.session_id()] =
      Session{r.name(), out.expires_unix(), std::string(peer), signer, {}};
  return out;
}

void PublishSessions::End(std::string_view id) {
  absl::MutexLock l(&mu_);
  if (auto it = sessions_.find(std::string(id)); it != sessions_.end()) DropLocked(it);
}

void PublishSessions::DropLocked(absl::flat_hash_map<std::string, Session>::iterator it) {
  for (auto& d : it->second.staged) orphans_.push_back(std::move(d));
  sessions_.erase(it);
}

absl::Status PublishSessions::AddStaged(std::string_view session_id, std::string digest) {
  const int64_t now = clock_->NowUnix();
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end() || it->second.expires <= now) {
    return absl::UnauthenticatedError("unknown or expired publish session");
  }
  it->second.staged.push_back(std::move(digest));
  return absl::OkStatus();
}

std::vector<std::string> PublishSessions::TakeStaged(std::string_view session_id) {
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end()) return {};
  return std::exchange(it->second.staged, {});
}

std::vector<std::string> PublishSessions::TakeOrphans() {
  absl::MutexLock l(&mu_);
  std::vector<std::string> out;
  for (auto& d : orphans_) {
    bool live = false;
    for (const auto& [id, s] : sessions_) {
      live = live || std::find(s.staged.begin(), s.staged.end(), d) != s.staged.end();
    }
    if (!live) out.push_back(std::move(d));
  }
  orphans_.clear();
  return out;
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
