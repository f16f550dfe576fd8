// The trust root: which keys may sign releases for which namespace.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/crypto.h"
#include "cairn/v1/objects.pb.h"

namespace cairn {

// Passed as `now_unix`: skip the expiry check. Walking a chain of roots skips
// it for the roots in the middle (they may have expired since); only the root
// a walk ends on must be current (TUF's client workflow, 5.3).
inline constexpr int64_t kIgnoreExpiry = std::numeric_limits<int64_t>::min();

// A verified trust root. Immutable; thread-safe.
class TrustRootView {
 public:
  // Parses an Envelope holding a TrustRoot and checks that a threshold of the
  // root's own root keys signed it and that it has not expired at `now_unix`.
  // InvalidArgument for corrupt bytes, Unauthenticated for bad signatures,
  // FailedPrecondition when expired.
  static absl::StatusOr<TrustRootView> FromEnvelopeBytes(std::string_view bytes, int64_t now_unix);
  // Reads FromEnvelopeBytes from a file ("trust file").
  static absl::StatusOr<TrustRootView> Load(const std::string& path, int64_t now_unix);

  // OK iff `env` carries valid signatures from at least the delegation's
  // threshold of distinct, non-revoked keys delegated for namespace `ns`.
  // PermissionDenied otherwise, naming the keys that signed and the rule.
  absl::Status VerifyDelegated(const cairn::v1::Envelope& env, std::string_view ns) const;

  // Valid signatures on `env` by distinct non-revoked keys delegated for `ns`
  // (`have`) and the namespace's threshold (`need`, 0 without a delegation).
  void CountDelegated(const cairn::v1::Envelope& env, std::string_view ns, int* have,
                      int* need) const;

  // True iff `key_id` is delegated (and not revoked) for `ns`.
  bool IsDelegated(std::string_view key_id, std::string_view ns) const;
  // The public key for `key_id`, or nullptr.
  const cairn::v1::PublicKey* FindKey(std::string_view key_id) const;

  const cairn::v1::TrustRoot& root() const { return root_; }
  const std::string& envelope_bytes() const { return envelope_bytes_; }
  // "sha256:..." of the envelope bytes.
  const std::string& digest() const { return digest_; }

 private:
  cairn::v1::TrustRoot root_;
  std::string envelope_bytes_;
  std::string digest_;
};

// How far a candidate root N+1 is from being a valid successor of root N: it
// needs `prev_need` signatures from N's root keys and `next_need` from its own.
struct SuccessorSignatures {
  int prev_have = 0, prev_need = 0, next_have = 0, next_need = 0;
  std::vector<std::string> prev_keys, next_keys;  // root key ids that may sign
  bool complete() const { return prev_have >= prev_need && next_have >= next_need; }
  std::string ToString() const;  // "1 of 2 from v3's root keys, 1 of 1 from its own"
};
SuccessorSignatures CountSuccessorSignatures(const cairn::v1::TrustRoot& prev,
                                             const cairn::v1::TrustRoot& next,
                                             const cairn::v1::Envelope& env);

// Verifies `next_bytes` as the successor of `prev` (TUF root rotation): its
// version is prev's + 1, a threshold of prev's root keys and a threshold of
// its own root keys signed it, and it has not expired at `now_unix` (pass
// kIgnoreExpiry inside a chain). Unauthenticated names the missing
// signatures; FailedPrecondition when expired; InvalidArgument otherwise.
absl::StatusOr<TrustRootView> VerifySuccessor(const TrustRootView& prev,
                                              std::string_view next_bytes, int64_t now_unix);

// Walks from `from` through `chain` (envelopes in any order; versions at or
// below from's are ignored) one version at a time, each verified by the one
// before, and returns the newest root reached, which must not have expired at
// `now_unix`. Returns `from` itself (expiry checked) when the chain holds
// nothing newer. A gap or a bad link is an error naming the version.
absl::StatusOr<TrustRootView> WalkTrustChain(const TrustRootView& from,
                                             const std::vector<std::string>& chain,
                                             int64_t now_unix);

// Counts distinct keys in `allowed` with a valid signature over env's PAE.
int CountValidSignatures(const cairn::v1::TrustRoot& root, const cairn::v1::Envelope& env,
                         const std::vector<std::string>& allowed,
                         std::vector<std::string>* signers);

// Signs `root` (after canonicalizing it) with `signers` into envelope bytes.
absl::StatusOr<std::string> SignTrustRoot(cairn::v1::TrustRoot root,
                                          const std::vector<const SigningKey*>& signers);

// Adds (or replaces) a key in root.keys.
void AddKey(cairn::v1::TrustRoot* root, const SigningKey& key);

}  // namespace cairn
