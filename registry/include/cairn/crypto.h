// Ed25519 keys and DSSE-style signing over OpenSSL 3.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/v1/objects.pb.h"

namespace cairn {

struct EvpPkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// An Ed25519 key pair (or public key only). Immutable after creation;
// thread-safe for concurrent Sign/Verify.
class SigningKey {
 public:
  static absl::StatusOr<std::unique_ptr<SigningKey>> Generate();
  // Reads a PEM PKCS#8 private key. InvalidArgument for a corrupt, truncated
  // or non-Ed25519 file; NotFound / PermissionDenied from the file system.
  static absl::StatusOr<std::unique_ptr<SigningKey>> LoadPrivate(const std::string& path);
  // Reads a PEM public key (KEY.pub).
  static absl::StatusOr<std::unique_ptr<SigningKey>> LoadPublic(const std::string& path);
  // The same from bytes; `source` names them in errors.
  static absl::StatusOr<std::unique_ptr<SigningKey>> ParsePrivate(std::string_view pem,
                                                                  const std::string& source);
  static absl::StatusOr<std::unique_ptr<SigningKey>> ParsePublic(std::string_view pem,
                                                                 const std::string& source);

  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;

  // Writes the private key (mode 0600, refuses to overwrite) and PATH.pub.
  absl::Status Save(const std::string& path) const;

  bool has_private() const { return has_private_; }
  const std::string& raw_public() const { return raw_public_; }
  const std::string& key_id() const { return key_id_; }
  cairn::v1::PublicKey ToProto() const;

  // FailedPrecondition when the key has no private half.
  absl::StatusOr<std::string> Sign(std::string_view message) const;

 private:
  SigningKey(std::unique_ptr<EVP_PKEY, EvpPkeyFree> k, bool has_private);
  std::unique_ptr<EVP_PKEY, EvpPkeyFree> pkey_;
  bool has_private_;
  std::string raw_public_;
  std::string key_id_;
};

// Key id: hex of the first 16 bytes of SHA-256 of the raw 32-byte public key.
std::string KeyIdOf(std::string_view raw_public);

// True iff `sig` is a valid Ed25519 signature of `message` by `raw_public`.
bool VerifyEd25519(std::string_view raw_public, std::string_view message, std::string_view sig);

// DSSE pre-authentication encoding:
// "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload.
std::string Pae(std::string_view payload_type, std::string_view payload);

// Builds an envelope signed by every key in `keys`.
absl::StatusOr<cairn::v1::Envelope> SignEnvelope(std::string_view payload_type, std::string payload,
                                                 const std::vector<const SigningKey*>& keys);

// Reads a whole file (at most max_bytes). NotFound, PermissionDenied,
// InvalidArgument (too large).
// Adds a signature by each of `keys` over env's PAE, skipping keys that
// already signed it (co-signing: the payload, and so every digest naming it,
// does not change).
absl::Status AddSignatures(cairn::v1::Envelope* env, const std::vector<const SigningKey*>& keys);

absl::StatusOr<std::string> ReadFileLimited(const std::string& path, size_t max_bytes);
// Writes a file atomically (temp + fsync + rename) with `mode`.
absl::Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);

}  // namespace cairn
