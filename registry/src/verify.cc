#include "cairn/verify.h"

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

using cairn::v1::Envelope;
using cairn::v1::Manifest;
using cairn::v1::TagRecord;

absl::StatusOr<TagRecord> VerifyTagEnvelope(const TrustRootView& trust, std::string_view bytes,
                                            int64_t now) {
  CAIRN_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(bytes, kMaxTagBytes + 8192));
  if (env.payload_type() != kTagPayloadType) {
    return absl::InvalidArgumentError("tag envelope has payload type '" + env.payload_type() + "'");
  }
  CAIRN_ASSIGN_OR_RETURN(TagRecord rec, ParseTagRecord(env.payload()));
  auto st = trust.VerifyDelegated(env, NamespaceOf(rec.name()));
  if (!st.ok()) return Annotate(st, "tag " + rec.name() + ":" + rec.tag());
  if (rec.expires_unix() <= now) {
    return absl::FailedPreconditionError(
        StrCat("tag ", rec.name(), ":", rec.tag(), " v", rec.version(), " expired at unix time ",
               rec.expires_unix(), "; ask the publisher to re-sign it (cairn publish ... --tag)"));
  }
  return rec;
}

absl::StatusOr<Manifest> VerifyManifestEnvelope(const TrustRootView& trust, std::string_view bytes,
                                                std::string* digest) {
  CAIRN_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(bytes, kMaxEnvelopeBytes));
  if (env.payload_type() != kManifestPayloadType) {
    return absl::InvalidArgumentError("manifest envelope has payload type '" + env.payload_type() +
                                      "'");
  }
  CAIRN_ASSIGN_OR_RETURN(Manifest m, ParseManifest(env.payload()));
  auto st = trust.VerifyDelegated(env, NamespaceOf(m.name()));
  if (!st.ok()) return Annotate(st, "release " + m.name() + " " + m.version());
  *digest = DigestName(Sha256Of(env.payload()));
  return m;
}

absl::StatusOr<cairn::v1::YankRecord> VerifyYankEnvelope(const TrustRootView& trust,
                                                         std::string_view bytes) {
  CAIRN_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(bytes, kMaxYankBytes + 8192));
  if (env.payload_type() != kYankPayloadType) {
    return absl::InvalidArgumentError("yank envelope has payload type '" + env.payload_type() +
                                      "'");
  }
  CAIRN_ASSIGN_OR_RETURN(auto rec, ParseYankRecord(env.payload()));
  auto st = trust.VerifyDelegated(env, NamespaceOf(rec.name()));
  if (!st.ok()) return Annotate(st, "yank of " + rec.name() + "@" + rec.manifest_digest());
  return rec;
}

absl::StatusOr<cairn::v1::YankRecord> DecodeYankEnvelope(std::string_view bytes) {
  Envelope env;
  cairn::v1::YankRecord rec;
  if (!env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      !rec.ParseFromString(env.payload())) {
    return absl::DataLossError("yank record does not parse");
  }
  return rec;
}

absl::StatusOr<TagRecord> DecodeTagEnvelope(std::string_view bytes) {
  Envelope env;
  TagRecord rec;
  if (!env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      !rec.ParseFromString(env.payload())) {
    return absl::DataLossError("tag record does not parse");
  }
  return rec;
}

}  // namespace cairn
