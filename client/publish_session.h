// What publishing, co-signing and tag renewal share (publish_session.cc).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/crypto.h"
#include "cairn/transport/channel.h"
#include "cairn/v1/service.pb.h"

namespace cairn::client {

// The private keys at `paths` (at least one).
absl::StatusOr<std::vector<std::unique_ptr<SigningKey>>> LoadKeys(
    const std::vector<std::string>& paths);
// A publish session on `name`, opened by answering the node's challenge with
// every one of `signers`.
absl::StatusOr<std::string> OpenPublishSession(Connection& node, const std::string& name,
                                               const std::vector<const SigningKey*>& signers);
// Frees a session the node did not end itself (best effort).
void EndPublishSession(Connection& node, const std::string& session);
// Uploads `bytes` in the session: in one request up to kBytesPerPart, in
// parts of kBytesPerPart above. Returns the digest the node computed.
absl::StatusOr<std::string> UploadObject(Connection& node, const std::string& session,
                                         const std::string& bytes, cairn::v1::ObjectKind kind);
// Puts the manifest envelope in the commit: inline when small, uploaded in
// parts first (and named by digest) when not.
absl::Status SetManifestEnvelope(Connection& node, const std::string& envelope,
                                 cairn::v1::CommitRequest* creq);

}  // namespace cairn::client
