// Repository: publish sessions (the facade over PublishSessions), and
// objects uploaded in parts (PutObject with offset/total_size).
// A node accepts requests of at most kMaxRequestBytes, so chunk lists (up to
// kMaxChunkListBytes) and manifest envelopes (up to kMaxEnvelopeBytes) that
// are larger arrive in parts. Parts go to disk as they arrive; nothing of an
// upload is held in memory but its counters until its last part.
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "meta_schema.h"
#include "publish_sessions.h"
#include "trust_state.h"

namespace cairn {

using cairn::v1::ObjectKind;

namespace {

std::string UploadPrefix(std::string_view session_id) {
  return StrCat(meta::kUploadPrefix, session_id, "/");
}
std::string PartKey(std::string_view session_id, uint64_t offset) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(offset));
  return StrCat(UploadPrefix(session_id), "part/", hex);  // sorts in offset order
}
std::string EnvelopeKey(std::string_view session_id) {
  return StrCat(UploadPrefix(session_id), "envelope");
}

}  // namespace

absl::StatusOr<cairn::v1::PutObjectResponse> Repository::PutObjectPart(
    const cairn::v1::PutObjectRequest& req) {
  const std::string& sid = req.session_id();
  CAIRN_RETURN_IF_ERROR(CheckSession(sid).status());
  if (!cairn::v1::ObjectKind_IsValid(req.kind())) {
    return absl::InvalidArgumentError(StrCat("unknown object kind ", static_cast<int>(req.kind())));
  }
  const bool envelope = req.kind() == cairn::v1::OBJECT_KIND_MANIFEST_ENVELOPE;
  const uint64_t max = envelope ? kMaxEnvelopeBytes : kMaxChunkListBytes;
  cairn::v1::PutObjectResponse out;
  // One upload per session at a time, and parts in order: the lock is held
  // from the check to the last part's read-back, so nothing interleaves.
  // Node-wide, but what it covers is short: one part written, or one object
  // (at most kMaxChunkListBytes) read back.
  absl::MutexLock l(&upload_mu_);
  // Every key under the session's part prefix.
  auto parts = [&](std::vector<WriteOp>* drop, std::string* bytes) {
    return meta_->Scan(Table::kStaging, StrCat(UploadPrefix(sid), "part/"),
                       [&](std::string_view k, std::string_view v) {
                         if (bytes != nullptr) bytes->append(v);
                         drop->push_back({Table::kStaging, std::string(k), std::nullopt});
                         return bytes == nullptr || bytes->size() <= req.total_size();
                       });
  };
  if (req.total_size() == 0) {  // the whole object in one request
    if (req.offset() != 0) return absl::InvalidArgumentError("offset without total_size");
    if (envelope) {
      CAIRN_RETURN_IF_ERROR(ParseEnvelope(req.data(), kMaxEnvelopeBytes).status());
      CAIRN_RETURN_IF_ERROR(sessions_->Charge(sid, req.data().size()));
      upload_sessions_.insert(sid);
      CAIRN_RETURN_IF_ERROR(
          meta_->Commit({WriteOp{Table::kStaging, EnvelopeKey(sid), req.data()}}, false));
      out.set_digest(DigestName(Sha256Of(req.data())));
    } else {
      CAIRN_ASSIGN_OR_RETURN(*out.mutable_digest(), StageChunkList(sid, req.data()));
    }
    out.set_received(req.data().size());
    return out;
  }
  if (req.total_size() > max) {
    return absl::InvalidArgumentError(StrCat(envelope ? "manifest envelope" : "chunk list", " of ",
                                             req.total_size(), " bytes is over the limit of ",
                                             max));
  }
  if (req.data().empty() || req.data().size() > kBytesPerPart ||
      req.offset() + req.data().size() > req.total_size()) {
    return absl::InvalidArgumentError(
        StrCat("part of ", req.data().size(), " bytes at offset ", req.offset(), " of ",
               req.total_size(), ": parts are 1 to ", kBytesPerPart, " bytes within the object"));
  }
  auto it = uploads_.find(sid);
  if (req.offset() == 0) {
    // A new upload: whatever the session left of an earlier one goes.
    uploads_.erase(sid);
    std::vector<WriteOp> drop;
    CAIRN_RETURN_IF_ERROR(parts(&drop, nullptr));
    if (!drop.empty()) CAIRN_RETURN_IF_ERROR(meta_->Commit(drop, false));
  } else if (it == uploads_.end() || it->second.received != req.offset() ||
             it->second.total != req.total_size() || it->second.kind != req.kind()) {
    return absl::FailedPreconditionError(
        StrCat("part at offset ", req.offset(), " does not continue this session's upload (",
               it == uploads_.end()
                   ? std::string("none in progress")
                   : StrCat(it->second.received, " of ", it->second.total, " bytes received"),
               "): parts go in order; start again at offset 0"));
  }
  // Charged before anything is kept (a part sent again is charged again).
  CAIRN_RETURN_IF_ERROR(sessions_->Charge(sid, req.data().size()));
  upload_sessions_.insert(sid);
  CAIRN_RETURN_IF_ERROR(
      meta_->Commit({WriteOp{Table::kStaging, PartKey(sid, req.offset()), req.data()}}, false));
  Upload& up = uploads_.try_emplace(sid, Upload{req.kind(), req.total_size(), 0}).first->second;
  up.received += req.data().size();
  out.set_received(up.received);
  if (up.received < up.total) return out;
  uploads_.erase(sid);
  // The last part: the object is read back once, checked and staged; its
  // parts go whatever the outcome.
  std::string bytes;
  std::vector<WriteOp> ops;
  absl::Status read = parts(&ops, &bytes);
  if (!ops.empty()) CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, false));
  CAIRN_RETURN_IF_ERROR(read);
  if (bytes.size() != req.total_size()) {
    return absl::DataLossError("an uploaded part went missing; start again at offset 0");
  }
  if (envelope) {
    CAIRN_RETURN_IF_ERROR(ParseEnvelope(bytes, kMaxEnvelopeBytes).status());
    out.set_digest(DigestName(Sha256Of(bytes)));
    CAIRN_RETURN_IF_ERROR(
        meta_->Commit({WriteOp{Table::kStaging, EnvelopeKey(sid), std::move(bytes)}}, false));
    return out;
  }
  CAIRN_ASSIGN_OR_RETURN(*out.mutable_digest(),
                         StageChunkListCharged(sid, bytes, /*charged=*/true));
  return out;
}

absl::StatusOr<std::string> Repository::UploadedEnvelope(std::string_view session_id,
                                                         std::string_view digest) {
  auto b = meta_->Get(Table::kStaging, EnvelopeKey(session_id));
  if (absl::IsNotFound(b.status()) || (b.ok() && DigestName(Sha256Of(*b)) != digest)) {
    return absl::FailedPreconditionError(
        StrCat("manifest envelope ", digest, " was not uploaded in this session"));
  }
  return b;
}

absl::StatusOr<uint64_t> Repository::UploadBytesHeld() {
  uint64_t n = 0;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kStaging, meta::kUploadPrefix, [&](std::string_view, std::string_view v) {
        n += v.size();
        return true;
      }));
  return n;
}

absl::Status Repository::DropUploads(std::string_view session_id) {
  absl::MutexLock l(&upload_mu_);
  uploads_.erase(std::string(session_id));
  upload_sessions_.erase(std::string(session_id));
  std::vector<WriteOp> drop;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kStaging, UploadPrefix(session_id), [&](std::string_view k, auto) {
        drop.push_back({Table::kStaging, std::string(k), std::nullopt});
        return true;
      }));
  if (drop.empty()) return absl::OkStatus();
  return meta_->Commit(drop, false);
}

// ---------------- Publish sessions ----------------

absl::StatusOr<cairn::v1::ChallengeResponse> Repository::Challenge(std::string_view name,
                                                                   std::string_view peer) {
  return sessions_->Challenge(name, peer);
}

absl::StatusOr<cairn::v1::OpenSessionResponse> Repository::OpenSession(
    const cairn::v1::OpenSessionRequest& r, std::string_view peer) {
  auto out = sessions_->Open(r, peer, *trust_->Current());
  // Opening sweeps expired sessions: their staged lists go now.
  if (absl::Status st = DropOrphanedStaging(); !st.ok()) {
    return Annotate(st, "removing staged chunk lists of expired sessions");
  }
  return out;
}

absl::Status Repository::ChargeUpload(std::string_view session_id, uint64_t bytes) {
  return sessions_->Charge(session_id, bytes);
}

absl::StatusOr<uint64_t> Repository::UploadedToday(const std::string& key_id) {
  return sessions_->UploadedToday(key_id);
}

absl::StatusOr<std::string> Repository::CheckSession(std::string_view id) {
  return sessions_->Check(id);
}

void Repository::EndSession(std::string_view id) {
  sessions_->End(id);
  DropUploads(id).IgnoreError();
  // Best effort: what is left is removed at the next start.
  DropOrphanedStaging().IgnoreError();
}

}  // namespace cairn
