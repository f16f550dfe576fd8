// What publishing, co-signing and tag renewal share: loading the keys, the
// authenticated publish session, and uploading objects in it (in parts when
// larger than one request).
#include "publish_session.h"

#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"

namespace cairn::client {

absl::StatusOr<std::vector<std::unique_ptr<SigningKey>>> LoadKeys(
    const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("publish needs --key KEYFILE");
  std::vector<std::unique_ptr<SigningKey>> keys;
  for (const auto& p : paths) {
    auto k = SigningKey::LoadPrivate(p);
    if (!k.ok()) return k.status();
    keys.push_back(std::move(*k));
  }
  return keys;
}

// A publish session on `name`, opened by answering the node's challenge with
// every one of `signers`.
absl::StatusOr<std::string> OpenPublishSession(Connection& node, const std::string& name,
                                               const std::vector<const SigningKey*>& signers) {
  cairn::v1::ChallengeRequest creq;
  creq.set_name(name);
  cairn::v1::ChallengeResponse cresp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(node.publish()->Challenge(ctx.get(), creq, &cresp), "publish challenge"));
  cairn::v1::OpenSessionRequest sreq;
  sreq.set_name(name);
  sreq.set_challenge(cresp.challenge());
  std::string pae = Pae(kSessionPayloadType, StrCat(cresp.challenge(), "\n", name));
  for (const auto* k : signers) {
    CAIRN_ASSIGN_OR_RETURN(std::string sig, k->Sign(pae));
    auto* s = sreq.add_signatures();
    s->set_key_id(k->key_id());
    s->set_sig(sig);
  }
  cairn::v1::OpenSessionResponse sresp;
  auto ctx2 = node.Context();
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(node.publish()->OpenSession(ctx2.get(), sreq, &sresp), "publish session"));
  return sresp.session_id();
}

// Frees a session the node did not end itself (best effort).
void EndPublishSession(Connection& node, const std::string& session) {
  cairn::v1::EndSessionRequest ereq;
  ereq.set_session_id(session);
  cairn::v1::EndSessionResponse eresp;
  auto ectx = node.Context(5);
  node.publish()->EndSession(ectx.get(), ereq, &eresp).ok();
}

// Uploads `bytes` in the session: in one request up to kBytesPerPart, in
// parts of kBytesPerPart above (a node takes at most kMaxRequestBytes per
// request). Returns the digest the node computed.
absl::StatusOr<std::string> UploadObject(Connection& node, const std::string& session,
                                         const std::string& bytes, cairn::v1::ObjectKind kind) {
  const bool parts = bytes.size() > kBytesPerPart;
  cairn::v1::PutObjectResponse resp;
  for (size_t off = 0; off < bytes.size() || (off == 0 && bytes.empty()); off += kBytesPerPart) {
    cairn::v1::PutObjectRequest req;
    req.set_session_id(session);
    req.set_kind(kind);
    req.set_data(bytes.substr(off, kBytesPerPart));
    if (parts) {
      req.set_offset(off);
      req.set_total_size(bytes.size());
    }
    auto ctx = node.Context();
    CAIRN_RETURN_IF_ERROR(FromGrpc(node.publish()->PutObject(ctx.get(), req, &resp),
                                   kind == cairn::v1::OBJECT_KIND_CHUNK_LIST
                                       ? "uploading chunk list"
                                       : "uploading manifest envelope"));
    if (bytes.empty()) break;
  }
  return resp.digest();
}

// Puts the manifest envelope in the commit: inline when small, uploaded in
// parts first when not.
absl::Status SetManifestEnvelope(Connection& node, const std::string& envelope,
                                 cairn::v1::CommitRequest* creq) {
  if (envelope.size() <= kBytesPerPart) {
    creq->set_manifest_envelope(envelope);
    return absl::OkStatus();
  }
  CAIRN_ASSIGN_OR_RETURN(std::string d, UploadObject(node, creq->session_id(), envelope,
                                                     cairn::v1::OBJECT_KIND_MANIFEST_ENVELOPE));
  if (d != DigestName(Sha256Of(envelope))) {
    return absl::DataLossError("node stored the manifest envelope under a different digest");
  }
  creq->set_manifest_envelope_digest(d);
  return absl::OkStatus();
}

}  // namespace cairn::client
