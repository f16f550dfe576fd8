#include "cairn/trust.h"

#include <algorithm>

#include "cairn/hash.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

using cairn::v1::Envelope;
using cairn::v1::TrustRoot;

int CountValidSignatures(const TrustRoot& root, const Envelope& env,
                         const std::vector<std::string>& allowed,
                         std::vector<std::string>* signers) {
  std::string pae = Pae(env.payload_type(), env.payload());
  std::vector<std::string> seen;
  for (const auto& s : env.signatures()) {
    if (std::find(allowed.begin(), allowed.end(), s.key_id()) == allowed.end()) continue;
    if (std::find(seen.begin(), seen.end(), s.key_id()) != seen.end()) continue;
    if (std::find(root.revoked_key_ids().begin(), root.revoked_key_ids().end(), s.key_id()) !=
        root.revoked_key_ids().end()) {
      continue;
    }
    const cairn::v1::PublicKey* key = nullptr;
    for (const auto& k : root.keys()) {
      if (k.key_id() == s.key_id()) key = &k;
    }
    if (key == nullptr || KeyIdOf(key->ed25519()) != key->key_id()) continue;
    if (VerifyEd25519(key->ed25519(), pae, s.sig())) seen.push_back(s.key_id());
  }
  if (signers) *signers = seen;
  return static_cast<int>(seen.size());
}

absl::StatusOr<TrustRootView> TrustRootView::FromEnvelopeBytes(std::string_view bytes,
                                                               int64_t now_unix) {
  auto env = ParseEnvelope(bytes, kMaxTrustRootBytes + 8192);
  if (!env.ok()) return Annotate(env.status(), "trust root");
  if (env->payload_type() != kTrustRootPayloadType) {
    return absl::InvalidArgumentError("not a trust root (payload type '" + env->payload_type() +
                                      "')");
  }
  CAIRN_ASSIGN_OR_RETURN(TrustRoot root, ParseTrustRoot(env->payload()));
  std::vector<std::string> allowed(root.root_key_ids().begin(), root.root_key_ids().end());
  std::vector<std::string> signers;
  int n = CountValidSignatures(root, *env, allowed, &signers);
  if (n < static_cast<int>(root.root_threshold())) {
    return absl::UnauthenticatedError(StrCat("trust root v", root.version(), " has ", n,
                                             " valid root signature(s), needs ",
                                             root.root_threshold()));
  }
  if (root.expires_unix() <= now_unix) {
    return absl::FailedPreconditionError(
        StrCat("trust root v", root.version(), " expired at unix time ", root.expires_unix(),
               "; get a newer trust file from the root key holders (cairn trust rotate)"));
  }
  TrustRootView v;
  v.root_ = std::move(root);
  v.envelope_bytes_ = std::string(bytes);
  v.digest_ = DigestName(Sha256Of(bytes));
  return v;
}

absl::StatusOr<TrustRootView> TrustRootView::Load(const std::string& path, int64_t now_unix) {
  auto bytes = ReadFileLimited(path, kMaxTrustRootBytes + 8192);
  if (!bytes.ok()) return Annotate(bytes.status(), "trust file");
  auto v = FromEnvelopeBytes(*bytes, now_unix);
  if (!v.ok()) return Annotate(v.status(), "trust file " + path);
  return v;
}

bool TrustRootView::IsDelegated(std::string_view key_id, std::string_view ns) const {
  for (const auto& r : root_.revoked_key_ids()) {
    if (r == key_id) return false;
  }
  for (const auto& d : root_.delegations()) {
    if (d.namespace_() != ns) continue;
    for (const auto& k : d.key_ids()) {
      if (k == key_id) return true;
    }
  }
  return false;
}

const cairn::v1::PublicKey* TrustRootView::FindKey(std::string_view key_id) const {
  for (const auto& k : root_.keys()) {
    if (k.key_id() == key_id) return &k;
  }
  return nullptr;
}

absl::Status TrustRootView::VerifyDelegated(const Envelope& env, std::string_view ns) const {
  const cairn::v1::Delegation* del = nullptr;
  for (const auto& d : root_.delegations()) {
    if (d.namespace_() == ns) del = &d;
  }
  std::vector<std::string> claimed;
  for (const auto& s : env.signatures()) claimed.push_back(s.key_id());
  if (del == nullptr) {
    return absl::PermissionDeniedError(
        StrCat("namespace '", ns, "' has no delegation in trust root v", root_.version(),
               " (signed by key(s) ", StrJoin(claimed, ", "), ")"));
  }
  std::vector<std::string> allowed(del->key_ids().begin(), del->key_ids().end());
  std::vector<std::string> signers;
  int n = CountValidSignatures(root_, env, allowed, &signers);
  if (n < static_cast<int>(del->threshold())) {
    return absl::PermissionDeniedError(
        StrCat("signature check failed: namespace '", ns, "' needs ", del->threshold(),
               " valid signature(s) from its delegated keys, got ", n, " (signed by key(s) ",
               StrJoin(claimed, ", "), "; delegated: ", StrJoin(allowed, ", "), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SignTrustRoot(TrustRoot root,
                                          const std::vector<const SigningKey*>& signers) {
  CanonicalizeTrustRoot(&root);
  CAIRN_ASSIGN_OR_RETURN(Envelope env,
                         SignEnvelope(kTrustRootPayloadType, SerializeCanonical(root), signers));
  return SerializeCanonical(env);
}

void AddKey(TrustRoot* root, const SigningKey& key) {
  for (auto& k : *root->mutable_keys()) {
    if (k.key_id() == key.key_id()) return;
  }
  *root->add_keys() = key.ToProto();
}

}  // namespace cairn
