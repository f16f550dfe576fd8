// Checking signed objects against a trust root: what a node does before it
// stores or serves a release or tag, and what a client does before it writes
// anything.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cairn/trust.h"
#include "cairn/v1/objects.pb.h"

namespace cairn {

// Verifies a tag envelope against the trust root: payload type, record,
// namespace delegation, expiry at `now` (kIgnoreExpiry: none). Returns the
// record. PermissionDenied / Unauthenticated for trust failures,
// InvalidArgument for malformed bytes, FailedPrecondition once expired.
absl::StatusOr<cairn::v1::TagRecord> VerifyTagEnvelope(const TrustRootView& trust,
                                                       std::string_view bytes, int64_t now);
// Verifies a manifest envelope: payload type, delegation signatures, manifest
// validity. *digest gets the manifest digest (SHA-256 of the payload as sent).
absl::StatusOr<cairn::v1::Manifest> VerifyManifestEnvelope(const TrustRootView& trust,
                                                           std::string_view bytes,
                                                           std::string* digest);

// Verifies a yank envelope: payload type, record, namespace delegation (the
// namespace's threshold). A yank does not expire.
absl::StatusOr<cairn::v1::YankRecord> VerifyYankEnvelope(const TrustRootView& trust,
                                                         std::string_view bytes);
// The record inside a stored yank envelope, no signature check; DataLoss
// when it does not parse.
absl::StatusOr<cairn::v1::YankRecord> DecodeYankEnvelope(std::string_view bytes);

// The record inside a tag envelope, with no signature check (bytes this
// process verified before it stored them, or a display). DataLoss when they
// do not parse.
absl::StatusOr<cairn::v1::TagRecord> DecodeTagEnvelope(std::string_view bytes);

}  // namespace cairn
