// Object model helpers: canonical encoding, size limits, validation of names,
// paths and references. All parsers take untrusted bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cairn/hash.h"
#include "cairn/limits.h"
#include "cairn/v1/objects.pb.h"

namespace cairn {

inline constexpr std::string_view kManifestPayloadType = "application/vnd.cairn.manifest.v1+proto";
inline constexpr std::string_view kTagPayloadType = "application/vnd.cairn.tag.v1+proto";
inline constexpr std::string_view kYankPayloadType = "application/vnd.cairn.yank.v1+proto";
inline constexpr std::string_view kTrustRootPayloadType =
    "application/vnd.cairn.trustroot.v1+proto";
inline constexpr std::string_view kSessionPayloadType = "application/vnd.cairn.session.v1";

// Size limits: cairn/limits.h.

// Deterministic protobuf serialization. For Manifest and TrustRoot, call the
// Canonicalize* function first so order-free fields are sorted.
std::string SerializeCanonical(const google::protobuf::MessageLite& m);
void CanonicalizeManifest(cairn::v1::Manifest* m);
void CanonicalizeTrustRoot(cairn::v1::TrustRoot* t);

// Manifest path rules: relative, '/'-separated, no "." or ".." or empty
// segment, no leading '/', no backslash, no NUL, not under ".cairn/" (reserved
// for the signed manifest kept beside a pulled tree), at most kMaxPathBytes.
absl::Status ValidatePath(std::string_view path);
// "namespace/model": two segments of [A-Za-z0-9._-], 1..64 chars each, not
// starting with '.' or '-'.
absl::Status ValidateName(std::string_view name);
absl::Status ValidateVersion(std::string_view version);  // [A-Za-z0-9._+-]{1,128}
absl::Status ValidateTag(std::string_view tag);          // [A-Za-z0-9._-]{1,128}
std::string_view NamespaceOf(std::string_view name);     // part before '/'

// Parsers: size limit, wire parse, then structural validation.
absl::StatusOr<cairn::v1::Envelope> ParseEnvelope(std::string_view bytes, size_t max_bytes);
absl::StatusOr<cairn::v1::ChunkList> ParseChunkList(std::string_view bytes);
// Checks that chunk list `bytes` is the one named `root` (its SHA-256), that
// it parses, and that its chunks add up to `file_size`: DataLoss naming
// `path` otherwise. The one check that a fetched, uploaded or stored chunk
// list belongs to a manifest's file.
absl::StatusOr<cairn::v1::ChunkList> CheckChunkList(std::string_view bytes, std::string_view root,
                                                    uint64_t file_size, std::string_view path);
// Validates names, version, paths (sorted, unique), sizes, parents.
absl::StatusOr<cairn::v1::Manifest> ParseManifest(std::string_view bytes);
absl::Status ValidateManifest(const cairn::v1::Manifest& m);
absl::StatusOr<cairn::v1::TagRecord> ParseTagRecord(std::string_view bytes);
absl::StatusOr<cairn::v1::TrustRoot> ParseTrustRoot(std::string_view bytes);
// Name, digest, version >= 1, and a reason of printable UTF-8 (no control
// characters) of at most kMaxYankReasonBytes.
absl::StatusOr<cairn::v1::YankRecord> ParseYankRecord(std::string_view bytes);

// A reference: NAME, NAME:TAG, NAME@VERSION or NAME@sha256:<hex>. `tag`
// defaults to "latest" when neither tag, version nor digest is given. A
// version cannot contain ':', so "@sha256:..." is always a digest.
struct Ref {
  std::string name;
  std::string tag;      // set when by tag
  std::string version;  // set when by version
  std::string digest;   // set when by digest
  std::string ToString() const;
};
absl::StatusOr<Ref> ParseRef(std::string_view ref);

// "200G", "512M", "1.5T", "1000000" (bytes; K M G T are powers of 1024).
absl::StatusOr<uint64_t> ParseSize(const std::string& text);

absl::StatusOr<cairn::v1::Relation> ParseRelation(std::string_view s);
std::string RelationName(cairn::v1::Relation r);

}  // namespace cairn
