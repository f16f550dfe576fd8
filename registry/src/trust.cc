#include "cairn/trust.h"

#include <algorithm>
#include <map>

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
    return absl::FailedPreconditionError(StrCat(
        "trust root v", root.version(), " expired at unix time ", root.expires_unix(),
        "; get a newer one: cairn trust update --node HOST:PORT (or ask the root key holders "
        "for a trust file made by cairn trust rotate)"));
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

void TrustRootView::CountDelegated(const Envelope& env, std::string_view ns, int* have,
                                   int* need) const {
  *have = 0;
  *need = 0;
  for (const auto& d : root_.delegations()) {
    if (d.namespace_() != ns) continue;
    std::vector<std::string> allowed(d.key_ids().begin(), d.key_ids().end());
    *have = CountValidSignatures(root_, env, allowed, nullptr);
    *need = static_cast<int>(d.threshold());
  }
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
    std::vector<std::string> revoked;
    for (const auto& id : claimed) {
      if (std::find(root_.revoked_key_ids().begin(), root_.revoked_key_ids().end(), id) !=
          root_.revoked_key_ids().end()) {
        revoked.push_back(id);
      }
    }
    return absl::PermissionDeniedError(
        StrCat("signature check failed: namespace '", ns, "' needs ", del->threshold(),
               " valid signature(s) from its delegated keys, got ", n, " (signed by key(s) ",
               StrJoin(claimed, ", "), "; delegated: ", StrJoin(allowed, ", "), ")",
               revoked.empty() ? std::string()
                               : StrCat("; key(s) ", StrJoin(revoked, ", "),
                                        " revoked in trust root v", root_.version())));
  }
  return absl::OkStatus();
}

std::string SuccessorSignatures::ToString() const {
  return StrCat(prev_have, " of ", prev_need, " needed from the previous root's keys (",
                StrJoin(prev_keys, ", "), "), ", next_have, " of ", next_need,
                " needed from its own root keys (", StrJoin(next_keys, ", "), ")");
}

SuccessorSignatures CountSuccessorSignatures(const TrustRoot& prev, const TrustRoot& next,
                                             const Envelope& env) {
  SuccessorSignatures s;
  s.prev_keys.assign(prev.root_key_ids().begin(), prev.root_key_ids().end());
  s.next_keys.assign(next.root_key_ids().begin(), next.root_key_ids().end());
  s.prev_need = static_cast<int>(prev.root_threshold());
  s.next_need = static_cast<int>(next.root_threshold());
  // Each key is checked against the root that names it: prev's keys with
  // prev's copies, the new root's keys with its own.
  s.prev_have = CountValidSignatures(prev, env, s.prev_keys, nullptr);
  s.next_have = CountValidSignatures(next, env, s.next_keys, nullptr);
  return s;
}

absl::StatusOr<TrustRootView> VerifySuccessor(const TrustRootView& prev,
                                              std::string_view next_bytes, int64_t now_unix) {
  auto env = ParseEnvelope(next_bytes, kMaxTrustRootBytes + 8192);
  if (!env.ok()) return Annotate(env.status(), "trust root");
  if (env->payload_type() != kTrustRootPayloadType) {
    return absl::InvalidArgumentError("not a trust root (payload type '" + env->payload_type() +
                                      "')");
  }
  CAIRN_ASSIGN_OR_RETURN(TrustRoot next, ParseTrustRoot(env->payload()));
  const uint64_t want = prev.root().version() + 1;
  if (next.version() != want) {
    return absl::InvalidArgumentError(StrCat("trust root v", next.version(), " cannot follow v",
                                             prev.root().version(),
                                             " (roots advance one version at a time)"));
  }
  SuccessorSignatures sigs = CountSuccessorSignatures(prev.root(), next, *env);
  if (!sigs.complete()) {
    return absl::UnauthenticatedError(StrCat("trust root v", next.version(),
                                             " is not signed well enough to follow v",
                                             prev.root().version(), ": ", sigs.ToString()));
  }
  // Self-consistency and expiry, exactly as for a root loaded on its own.
  return TrustRootView::FromEnvelopeBytes(next_bytes, now_unix);
}

absl::StatusOr<TrustRootView> WalkTrustChain(const TrustRootView& from,
                                             const std::vector<std::string>& chain,
                                             int64_t now_unix) {
  std::map<uint64_t, const std::string*> by_version;
  for (const auto& bytes : chain) {
    auto env = ParseEnvelope(bytes, kMaxTrustRootBytes + 8192);
    if (!env.ok()) return Annotate(env.status(), "trust root in chain");
    auto root = ParseTrustRoot(env->payload());
    if (!root.ok()) return Annotate(root.status(), "trust root in chain");
    if (root->version() <= from.root().version()) continue;
    auto [it, fresh] = by_version.emplace(root->version(), &bytes);
    if (!fresh && *it->second != bytes) {
      return absl::InvalidArgumentError(
          StrCat("two different trust roots claim version ", root->version()));
    }
  }
  TrustRootView cur = from;
  for (const auto& [version, bytes] : by_version) {
    if (version != cur.root().version() + 1) {
      return absl::NotFoundError(StrCat("trust root v", cur.root().version() + 1,
                                        " is missing: cannot reach v", version, " from v",
                                        cur.root().version()));
    }
    auto next = VerifySuccessor(cur, *bytes, kIgnoreExpiry);
    if (!next.ok()) return next.status();
    cur = std::move(*next);
  }
  if (cur.root().expires_unix() <= now_unix) {
    return absl::FailedPreconditionError(StrCat(
        "trust root v", cur.root().version(), " expired at unix time ", cur.root().expires_unix(),
        "; the root key holders must make a newer one (cairn trust rotate) and publish it "
        "to the nodes (cairn trust push); then run cairn trust update"));
  }
  return cur;
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
