// Signed tag records without new files: `cairn renew` (a later expiry, same
// release) and `cairn tag` (point a tag at a release the node holds).
#include "absl/cleanup/cleanup.h"
#include "cairn/clock.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"
#include "client.h"
#include "publish_session.h"

namespace cairn::client {

namespace {

// Signs `rec` (a TagRecord or a YankRecord, `payload_type`) and commits it
// with the release `manifest_envelope` (already on the node: an idempotent
// re-commit that moves only the tag or the yank).
absl::Status CommitRecord(Connection& node, const std::string& manifest_envelope,
                          const std::string& name, std::string_view payload_type,
                          const google::protobuf::MessageLite& rec,
                          const std::vector<const SigningKey*>& signers, const std::string& what) {
  CAIRN_ASSIGN_OR_RETURN(auto env, SignEnvelope(payload_type, SerializeCanonical(rec), signers));
  CAIRN_ASSIGN_OR_RETURN(std::string session, OpenPublishSession(node, name, signers));
  bool session_used = false;
  absl::Cleanup end_session = [&] {
    if (!session_used) EndPublishSession(node, session);
  };
  cairn::v1::CommitRequest creq;
  creq.set_session_id(session);
  CAIRN_RETURN_IF_ERROR(SetManifestEnvelope(node, manifest_envelope, &creq));
  if (payload_type == kYankPayloadType) {
    creq.set_yank_envelope(SerializeCanonical(env));
  } else {
    creq.set_tag_envelope(SerializeCanonical(env));
  }
  cairn::v1::CommitResponse cresp;
  auto ctx = node.Context();
  absl::Status committed = FromGrpc(node.publish()->Commit(ctx.get(), creq, &cresp), what);
  session_used = committed.ok();
  return committed;
}

absl::Status CheckExpiryDays(int days, const char* flag) {
  if (days < 1 || days > 3650) {
    return absl::InvalidArgumentError(StrCat(flag, " must be from 1 to 3650 (got ", days, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RenewResult> RenewTag(Connection& node, const RenewOptions& o) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(o.ref));
  if (ref.tag.empty()) {
    return absl::InvalidArgumentError("renew takes NS/MODEL:TAG (got " + o.ref + ")");
  }
  CAIRN_RETURN_IF_ERROR(CheckExpiryDays(o.expires_days, "--expires-days"));
  if (o.within_days < 0 || o.within_days > 3650) {
    return absl::InvalidArgumentError(
        StrCat("--within-days must be from 0 to 3650 (got ", o.within_days, ")"));
  }
  CAIRN_ASSIGN_OR_RETURN(auto keys, LoadKeys(o.key_paths));
  std::vector<const SigningKey*> signers;
  for (auto& k : keys) signers.push_back(k.get());
  // The tag as the node holds it (also when withheld: a revoked signer's tag
  // is renewed by its successor).
  CAIRN_ASSIGN_OR_RETURN(Resolved cur, ResolveVerified(node, nullptr, ref.ToString(),
                                                       /*include_withheld=*/true));
  RenewResult res;
  res.ref = ref.ToString();
  res.manifest = cur.digest;
  res.old_version = cur.tag->version();
  res.old_expires_unix = cur.tag->expires_unix();
  const int64_t now = SystemNowUnix();
  if (cur.tag->expires_unix() > now + int64_t{o.within_days} * 86400) {
    res.renewed = false;  // not due: a cron job runs this daily
    res.new_version = res.old_version;
    res.new_expires_unix = res.old_expires_unix;
    return res;
  }
  cairn::v1::TagRecord rec = *cur.tag;
  rec.set_version(cur.tag->version() + 1);
  rec.set_expires_unix(now + int64_t{o.expires_days} * 86400);
  CAIRN_RETURN_IF_ERROR(CommitRecord(node, cur.envelope, rec.name(), kTagPayloadType, rec, signers,
                                     "commit of the renewed tag"));
  res.renewed = true;
  res.new_version = rec.version();
  res.new_expires_unix = rec.expires_unix();
  return res;
}

absl::StatusOr<TagResult> MoveTag(Connection& node, const TagOptions& o) {
  CAIRN_ASSIGN_OR_RETURN(Ref target, ParseRef(o.release));
  CAIRN_RETURN_IF_ERROR(ValidateTag(o.tag));
  CAIRN_RETURN_IF_ERROR(CheckExpiryDays(o.expires_days, "--expires-days"));
  CAIRN_ASSIGN_OR_RETURN(auto keys, LoadKeys(o.key_paths));
  std::vector<const SigningKey*> signers;
  for (auto& k : keys) signers.push_back(k.get());
  // The release must be one the node serves (verified when a trust root is
  // given: the tag is signed over exactly this digest).
  CAIRN_ASSIGN_OR_RETURN(Resolved rel, ResolveVerified(node, o.trust, target.ToString()));
  TagResult res;
  res.name = target.name;
  res.tag = o.tag;
  res.manifest = rel.digest;
  res.version = rel.manifest.version();
  // The next version of the tag; a withheld tag still holds its number.
  auto cur = ResolveVerified(node, nullptr, StrCat(target.name, ":", o.tag),
                             /*include_withheld=*/true);
  if (cur.ok()) {
    res.old_manifest = cur->digest;
    res.tag_version = cur->tag->version() + 1;
  } else if (absl::IsNotFound(cur.status())) {
    res.tag_version = 1;
  } else {
    return cur.status();
  }
  if (o.tag_version) {
    if (*o.tag_version < res.tag_version) {
      return absl::FailedPreconditionError(StrCat("tag ", target.name, ":", o.tag, " is at v",
                                                  res.tag_version - 1,
                                                  " on the node; --tag-version must be above it"));
    }
    res.tag_version = *o.tag_version;
  }
  cairn::v1::TagRecord rec;
  rec.set_name(target.name);
  rec.set_tag(o.tag);
  rec.set_manifest_digest(rel.digest);
  rec.set_version(res.tag_version);
  rec.set_expires_unix(SystemNowUnix() + int64_t{o.expires_days} * 86400);
  res.expires_unix = rec.expires_unix();
  CAIRN_RETURN_IF_ERROR(CommitRecord(node, rel.envelope, rec.name(), kTagPayloadType, rec, signers,
                                     "commit of the tag"));
  return res;
}

absl::StatusOr<YankResult> YankRelease(Connection& node, const YankOptions& o) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(o.release));
  if (!o.undo && o.reason.empty()) {
    return absl::InvalidArgumentError("say why with --reason (users see it when they pull)");
  }
  cairn::v1::YankRecord rec;
  rec.set_reason(o.undo && o.reason.empty() ? "yank withdrawn" : o.reason);
  rec.set_name(ref.name);
  rec.set_manifest_digest(ref.digest.empty() ? "sha256:" + std::string(64, '0') : ref.digest);
  rec.set_version(1);
  // Checked before the node is asked: a bad reason fails here, clearly.
  CAIRN_RETURN_IF_ERROR(ParseYankRecord(SerializeCanonical(rec)).status());
  CAIRN_ASSIGN_OR_RETURN(auto keys, LoadKeys(o.key_paths));
  std::vector<const SigningKey*> signers;
  for (auto& k : keys) signers.push_back(k.get());
  // The release as the node holds it, yanked or not (a tag naming a yanked
  // release resolves in this admin view only without a trust root).
  CAIRN_ASSIGN_OR_RETURN(Resolved rel, ResolveVerified(node, o.trust, ref.ToString(),
                                                       /*include_withheld=*/o.trust == nullptr));
  YankResult res;
  res.name = rel.manifest.name();
  res.version = rel.manifest.version();
  res.manifest = rel.digest;
  res.yanked = !o.undo;
  const bool was_yanked = rel.yank && rel.yank->yanked();
  if (was_yanked == res.yanked) {
    res.changed = false;
    res.yank_version = rel.yank ? rel.yank->version() : 0;
    return res;
  }
  rec.set_manifest_digest(rel.digest);
  rec.set_version(rel.yank ? rel.yank->version() + 1 : 1);
  rec.set_yanked(res.yanked);
  rec.set_created_unix(SystemNowUnix());
  res.yank_version = rec.version();
  CAIRN_RETURN_IF_ERROR(CommitRecord(node, rel.envelope, rec.name(), kYankPayloadType, rec, signers,
                                     o.undo ? "withdrawing the yank" : "commit of the yank"));
  return res;
}

}  // namespace cairn::client
