// The trust root: which keys may sign releases for which namespace.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/crypto.h"
#include "cairn/v1/objects.pb.h"

namespace cairn {

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
