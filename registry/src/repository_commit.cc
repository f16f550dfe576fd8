// Repository: admitting releases. Staging chunk lists, the verified atomic
// commit (publish and replication), and co-signing of pending releases.
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/verify.h"
#include "change_feed.h"
#include "meta_schema.h"
#include "publish_sessions.h"
#include "trust_state.h"

namespace cairn {

using cairn::v1::Envelope;
using cairn::v1::Manifest;
using cairn::v1::TagRecord;
using meta::Key2;

absl::StatusOr<std::string> Repository::StageChunkList(std::string_view session_id,
                                                       std::string_view bytes) {
  return StageChunkListCharged(session_id, bytes, /*charged=*/false);
}

absl::StatusOr<std::string> Repository::StageChunkListCharged(std::string_view session_id,
                                                              std::string_view bytes,
                                                              bool charged) {
  CAIRN_RETURN_IF_ERROR(CheckSession(session_id).status());
  CAIRN_RETURN_IF_ERROR(ParseChunkList(bytes).status());
  std::string digest = DigestName(Sha256Of(bytes));
  // Kept while this session lives, whoever staged it first.
  CAIRN_RETURN_IF_ERROR(sessions_->AddStaged(session_id, digest));
  auto held = LoadObject(digest, /*allow_staged=*/true);
  if (held.ok()) return digest;  // staged or committed already: costs nothing
  if (!absl::IsNotFound(held.status())) return held.status();
  // Staged bytes count against the publisher key's daily quota, as chunks
  // do (parts were charged as they arrived); the marker lets a restart
  // remove what no session will commit.
  if (!charged) CAIRN_RETURN_IF_ERROR(sessions_->Charge(session_id, bytes.size()));
  CAIRN_RETURN_IF_ERROR(meta_->Commit({WriteOp{Table::kStaging, digest, std::string(bytes)},
                                       WriteOp{Table::kState, meta::SessionStagedKey(digest), ""}},
                                      /*sync=*/false));
  return digest;
}

absl::Status Repository::DropOrphanedStaging() {
  // Uploads in parts of sessions that ended or expired.
  std::vector<std::string> dead;
  {
    absl::MutexLock l(&upload_mu_);
    for (const std::string& sid : upload_sessions_) {
      if (!CheckSession(sid).ok()) dead.push_back(sid);
    }
  }
  for (const std::string& sid : dead) CAIRN_RETURN_IF_ERROR(DropUploads(sid));
  std::vector<WriteOp> ops;
  for (const std::string& d : sessions_->TakeOrphans()) {
    // A commit consumed it (moved to kObjects) or it is still waiting: only
    // a list still in staging under a session's marker goes.
    auto marker = meta_->Get(Table::kState, meta::SessionStagedKey(d));
    if (absl::IsNotFound(marker.status())) continue;
    CAIRN_RETURN_IF_ERROR(marker.status());
    ops.push_back(WriteOp{Table::kStaging, d, std::nullopt});
    ops.push_back(WriteOp{Table::kState, meta::SessionStagedKey(d), std::nullopt});
  }
  if (ops.empty()) return absl::OkStatus();
  return meta_->Commit(ops, /*sync=*/false);
}

absl::Status Repository::PromoteStaged(const absl::flat_hash_set<std::string>& roots) {
  std::vector<WriteOp> ops;
  size_t bytes = 0;
  for (const std::string& root : roots) {
    auto b = meta_->Get(Table::kStaging, root);
    if (absl::IsNotFound(b.status())) {
      // Moved meanwhile by another commit naming the same list.
      if (meta_->Get(Table::kObjects, root).ok()) continue;
      return absl::FailedPreconditionError(
          StrCat("chunk list ", root, " was dropped from staging"));
    }
    CAIRN_RETURN_IF_ERROR(b.status());
    if (!ops.empty() && bytes + b->size() > kPromoteBatchBytes) {
      CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/false));
      ops.clear();
      bytes = 0;
    }
    bytes += b->size();
    ops.push_back(WriteOp{Table::kObjects, root, std::move(*b)});
    ops.push_back(WriteOp{Table::kStaging, root, std::nullopt});
    ops.push_back(WriteOp{Table::kState, meta::SessionStagedKey(root), std::nullopt});
  }
  if (ops.empty()) return absl::OkStatus();
  return meta_->Commit(ops, /*sync=*/false);
}

absl::StatusOr<std::string> Repository::StageReplicatedChunkList(std::string_view bytes) {
  CAIRN_RETURN_IF_ERROR(ParseChunkList(bytes).status());
  std::string digest = DigestName(Sha256Of(bytes));
  CAIRN_RETURN_IF_ERROR(
      meta_->Commit({WriteOp{Table::kStaging, digest, std::string(bytes)}}, /*sync=*/false));
  return digest;
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::Commit(
    std::string_view session_id, std::string_view manifest_envelope, std::string_view tag_envelope,
    std::string_view manifest_envelope_digest, std::string_view yank_envelope) {
  CAIRN_ASSIGN_OR_RETURN(std::string session_name, CheckSession(session_id));
  if (!yank_envelope.empty() && !tag_envelope.empty()) {
    return absl::InvalidArgumentError("a commit carries a tag record or a yank record, not both");
  }
  std::string uploaded;
  if (manifest_envelope.empty() && !manifest_envelope_digest.empty()) {
    CAIRN_ASSIGN_OR_RETURN(uploaded, UploadedEnvelope(session_id, manifest_envelope_digest));
    manifest_envelope = uploaded;
  }
  // A yank names a release already served: never kept pending.
  std::optional<cairn::v1::CommitResponse> pending;
  if (yank_envelope.empty()) {
    CAIRN_ASSIGN_OR_RETURN(pending,
                           MaybeKeepPending(session_name, manifest_envelope, tag_envelope));
  }
  if (pending) {
    // Co-signers commit it later: what the session staged stays (kept,
    // like a replication's, until the pending release commits).
    std::vector<WriteOp> keep;
    for (const std::string& d : sessions_->TakeStaged(session_id)) {
      keep.push_back(WriteOp{Table::kState, meta::SessionStagedKey(d), std::nullopt});
    }
    if (!keep.empty()) CAIRN_RETURN_IF_ERROR(meta_->Commit(keep, /*sync=*/true));
    EndSession(session_id);
    return *pending;
  }
  CommitSpec spec;
  spec.required_name = session_name;
  spec.yank_envelope = yank_envelope;
  auto r = CommitVerified(manifest_envelope, tag_envelope, spec);
  // A commit frees its session at once: the per-peer cap counts open
  // sessions, not the releases of the last hour.
  if (r.ok()) EndSession(session_id);
  return r;
}

absl::StatusOr<std::optional<cairn::v1::CommitResponse>> Repository::MaybeKeepPending(
    std::string_view session_name, std::string_view manifest_envelope,
    std::string_view tag_envelope) {
  // Short of the namespace's threshold, but signed by at least one of its
  // keys: keep it for co-signers.
  auto env = ParseEnvelope(manifest_envelope, kMaxEnvelopeBytes);
  if (!env.ok() || env->payload_type() != kManifestPayloadType) return std::nullopt;
  auto m = ParseManifest(env->payload());
  int have = 0, need = 0;
  if (m.ok() && m->name() == session_name) {
    trust().CountDelegated(*env, NamespaceOf(m->name()), &have, &need);
  }
  if (have == 0 || have >= need) return std::nullopt;
  cairn::v1::PendingResponse p;
  p.set_manifest_envelope(std::string(manifest_envelope));
  p.set_tag_envelope(std::string(tag_envelope));
  p.set_signatures(have);
  p.set_signatures_needed(need);
  p.set_expires_unix(clock_->NowUnix() + opts_.pending_seconds);
  const std::string digest = DigestName(Sha256Of(env->payload()));
  CAIRN_RETURN_IF_ERROR(meta_->Commit(
      {WriteOp{Table::kState, meta::PendingKey(digest), p.SerializeAsString()}}, true));
  cairn::v1::CommitResponse out;
  out.set_manifest_digest(digest);
  out.set_pending(true);
  out.set_signatures(have);
  out.set_signatures_needed(need);
  return out;
}

absl::Status Repository::AddPending(std::string_view prefix,
                                    std::map<std::string, cairn::v1::ListEntry>* entries) {
  const int64_t now = clock_->NowUnix();
  return meta_->Scan(
      Table::kState, meta::kPendingPrefix, [&](std::string_view k, std::string_view v) {
        cairn::v1::PendingResponse p;
        Envelope menv, tenv;
        Manifest m;
        if (!p.ParseFromString(std::string(v)) || p.expires_unix() <= now ||
            !menv.ParseFromString(p.manifest_envelope()) || !m.ParseFromString(menv.payload()) ||
            m.name().compare(0, prefix.size(), prefix) != 0) {
          return true;
        }
        auto& e = (*entries)[m.name()];
        e.set_name(m.name());
        auto* info = e.add_pending();
        info->set_version(m.version());
        info->set_manifest_digest(std::string(k.substr(meta::kPendingPrefix.size())));
        uint64_t bytes = 0;
        for (const auto& f : m.files()) bytes += f.size();
        info->set_bytes(bytes);
        info->set_files(m.files_size());
        info->set_signatures(p.signatures());
        info->set_signatures_needed(p.signatures_needed());
        info->set_expires_unix(p.expires_unix());
        TagRecord rec;
        if (tenv.ParseFromString(p.tag_envelope()) && rec.ParseFromString(tenv.payload())) {
          info->set_tag(rec.tag());
        }
        return true;
      });
}

absl::StatusOr<cairn::v1::PendingResponse> Repository::GetPending(
    std::string_view manifest_digest) {
  CAIRN_RETURN_IF_ERROR(ParseDigestName(manifest_digest).status());
  const std::string key = meta::PendingKey(manifest_digest);
  auto v = meta_->Get(Table::kState, key);
  if (absl::IsNotFound(v.status())) {
    return absl::NotFoundError(
        StrCat("no release ", manifest_digest, " waits for signatures here"));
  }
  CAIRN_RETURN_IF_ERROR(v.status());
  cairn::v1::PendingResponse p;
  if (!p.ParseFromString(*v)) return absl::DataLossError("stored pending release is corrupt");
  if (p.expires_unix() <= clock_->NowUnix()) {
    CAIRN_RETURN_IF_ERROR(meta_->Commit({WriteOp{Table::kState, key, std::nullopt}}, true));
    return absl::NotFoundError(StrCat("pending release ", manifest_digest,
                                      " expired before enough co-signatures; publish it again"));
  }
  return p;
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::CoSign(const cairn::v1::CoSignRequest& req) {
  if (req.manifest_signatures_size() + req.tag_signatures_size() > 2 * int(kMaxSignatures)) {
    return absl::InvalidArgumentError("too many signatures");
  }
  absl::MutexLock l(&cosign_mu_);
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::PendingResponse p, GetPending(req.manifest_digest()));
  const TrustRootView trust = this->trust();
  Envelope menv, tenv;
  Manifest m;
  if (!menv.ParseFromString(p.manifest_envelope()) || !m.ParseFromString(menv.payload())) {
    return absl::DataLossError("pending manifest is corrupt");
  }
  const std::string_view ns = NamespaceOf(m.name());
  // Keeps only signatures by keys delegated for ns that verify over env.
  int added = 0;
  auto add = [&](Envelope* env,
                 const google::protobuf::RepeatedPtrField<cairn::v1::Signature>& sigs) {
    std::string pae = Pae(env->payload_type(), env->payload());
    for (const auto& s : sigs) {
      bool present = false;
      for (const auto& e : env->signatures()) present |= e.key_id() == s.key_id();
      const auto* key = trust.FindKey(s.key_id());
      if (present || key == nullptr || !trust.IsDelegated(s.key_id(), ns) ||
          !VerifyEd25519(key->ed25519(), pae, s.sig()) ||
          env->signatures_size() >= static_cast<int>(kMaxSignatures)) {
        continue;
      }
      *env->add_signatures() = s;
      ++added;
    }
  };
  add(&menv, req.manifest_signatures());
  if (!p.tag_envelope().empty()) {
    if (!tenv.ParseFromString(p.tag_envelope())) {
      return absl::DataLossError("pending tag record is corrupt");
    }
    add(&tenv, req.tag_signatures());
  }
  if (added == 0) {
    std::vector<std::string> ids;
    for (const auto& s : req.manifest_signatures()) ids.push_back(s.key_id());
    return absl::PermissionDeniedError(
        StrCat("no new valid signature from a key delegated for namespace '", ns,
               "' (offered: ", StrJoin(ids, ", "),
               "; already signed or not delegated in trust root v", trust.root().version(), ")"));
  }
  p.set_manifest_envelope(SerializeCanonical(menv));
  if (!p.tag_envelope().empty()) p.set_tag_envelope(SerializeCanonical(tenv));
  int have = 0, need = 0;
  trust.CountDelegated(menv, ns, &have, &need);
  int tag_have = need, tag_need = 0;
  if (!p.tag_envelope().empty()) trust.CountDelegated(tenv, ns, &tag_have, &tag_need);
  const std::string key = meta::PendingKey(req.manifest_digest());
  if (have < need || tag_have < tag_need) {
    p.set_signatures(have);
    CAIRN_RETURN_IF_ERROR(
        meta_->Commit({WriteOp{Table::kState, key, p.SerializeAsString()}}, true));
    cairn::v1::CommitResponse out;
    out.set_manifest_digest(req.manifest_digest());
    out.set_pending(true);
    out.set_signatures(have);
    out.set_signatures_needed(need);
    return out;
  }
  CommitSpec spec;
  spec.required_name = m.name();
  spec.extra_ops.push_back(WriteOp{Table::kState, key, std::nullopt});
  auto out = CommitVerified(p.manifest_envelope(), p.tag_envelope(), spec);
  if (out.ok()) {
    out->set_signatures(have);
    out->set_signatures_needed(need);
  }
  return out;
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::CommitReplicated(
    std::string_view manifest_envelope, std::string_view tag_envelope,
    std::string_view yank_envelope, std::string cursor_key, uint64_t cursor) {
  CommitSpec spec;
  spec.stale_tag_is_ok = true;
  spec.yank_envelope = yank_envelope;
  if (!cursor_key.empty()) {  // empty: fetched on demand, no feed cursor moves
    spec.extra_ops.push_back(WriteOp{Table::kState, std::move(cursor_key), StrCat(cursor)});
  }
  return CommitVerified(manifest_envelope, tag_envelope, spec);
}

absl::StatusOr<bool> Repository::ApplyReplicatedTag(std::string_view tag_envelope,
                                                    std::string cursor_key, uint64_t cursor) {
  std::shared_ptr<const TrustRootView> trust = trust_->Current();
  CAIRN_ASSIGN_OR_RETURN(TagRecord tag, VerifyTagEnvelope(*trust, tag_envelope, clock_->NowUnix()));
  absl::MutexLock commit_lock(&commit_mu_);
  std::vector<WriteOp> ops{WriteOp{Table::kState, std::move(cursor_key), StrCat(cursor)}};
  CAIRN_ASSIGN_OR_RETURN(std::optional<meta::StoredTag> cur,
                         meta::ReadTag(meta_.get(), tag.name(), tag.tag()));
  const bool moved = !cur || cur->record.version() < tag.version();  // the highest wins
  if (moved) {
    ops.push_back(WriteOp{Table::kTags, Key2(tag.name(), tag.tag()), std::string(tag_envelope)});
  }
  CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  if (moved) list_changes_++;
  return moved;
}

absl::StatusOr<cairn::v1::CommitResponse> Repository::CommitVerified(
    std::string_view manifest_envelope, std::string_view tag_envelope, const CommitSpec& spec) {
  std::shared_ptr<const TrustRootView> trust = trust_->Current();
  std::string digest;
  CAIRN_ASSIGN_OR_RETURN(Manifest m, VerifyManifestEnvelope(*trust, manifest_envelope, &digest));
  if (!spec.required_name.empty() && m.name() != spec.required_name) {
    return absl::PermissionDeniedError(
        StrCat("session was opened for ", spec.required_name, ", not for ", m.name()));
  }
  const int64_t now = clock_->NowUnix();
  std::optional<TagRecord> tag;
  if (!tag_envelope.empty()) {
    CAIRN_ASSIGN_OR_RETURN(tag, VerifyTagEnvelope(*trust, tag_envelope, now));
    if (tag->name() != m.name() || tag->manifest_digest() != digest) {
      return absl::InvalidArgumentError("tag record does not point at this release");
    }
  }
  std::optional<cairn::v1::YankRecord> yank;
  if (!spec.yank_envelope.empty()) {
    CAIRN_ASSIGN_OR_RETURN(yank, VerifyYankEnvelope(*trust, spec.yank_envelope));
    if (yank->name() != m.name() || yank->manifest_digest() != digest) {
      return absl::InvalidArgumentError("yank record does not name this release");
    }
  }

  // Every file's chunk list must be uploaded, consistent with the file size,
  // and every chunk present. Each distinct list is read, parsed and checked
  // once, however many files name it (issue 12 B: 23.6 MB per file,
  // bad_alloc at N=90 under 2.5 GB), and only one list is held at a time.
  absl::flat_hash_set<std::string> staged;  // roots still in staging
  uint64_t expanded = 0, unique = 0;        // file bytes; distinct chunk bytes per list
  for (const auto& f : m.files()) expanded += f.size();
  {
    absl::flat_hash_set<std::string_view> seen;
    absl::flat_hash_set<Digest, DigestHash> checked;  // within one list
    for (const auto& f : m.files()) {
      if (!seen.insert(f.root()).second) continue;  // sizes agree (ValidateManifest)
      bool in_staging = false;
      auto cl_bytes = meta_->Get(Table::kObjects, f.root());
      if (absl::IsNotFound(cl_bytes.status())) {
        cl_bytes = meta_->Get(Table::kStaging, f.root());
        in_staging = true;
      }
      if (absl::IsNotFound(cl_bytes.status())) {
        return absl::FailedPreconditionError(
            StrCat("chunk list ", f.root(), " of ", f.path(), " was not uploaded"));
      }
      CAIRN_RETURN_IF_ERROR(cl_bytes.status());
      CAIRN_ASSIGN_OR_RETURN(auto cl, CheckChunkList(*cl_bytes, f.root(), f.size(), f.path()));
      checked.clear();
      for (const auto& c : cl.chunks()) {
        CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
        if (!checked.insert(d).second) continue;
        unique += c.length();
        CAIRN_ASSIGN_OR_RETURN(bool has, chunks_->Has(d));
        if (!has) {
          return absl::FailedPreconditionError(
              StrCat("chunk ", DigestName(d), " of ", f.path(), " was not uploaded"));
        }
      }
      if (in_staging) staged.insert(f.root());
    }
  }
  // Every node and client that takes the release writes `expanded` bytes
  // from `unique` distinct ones (a chunk shared by two lists counts twice:
  // the cap errs towards admitting).
  if (expanded > kExpansionSlackBytes &&
      (expanded - kExpansionSlackBytes) / kMaxExpansion > unique) {
    return absl::InvalidArgumentError(StrCat("release expands to ", expanded, " bytes from ",
                                             unique, " distinct bytes: more than ", kMaxExpansion,
                                             " times plus ", kExpansionSlackBytes >> 30,
                                             " GiB (files or chunks repeated)"));
  }
  // A publish counts against the node's caps (a replica made room before
  // it fetched; a bundle import is the operator's own). Before commit_mu_:
  // eviction takes it.
  if (!spec.required_name.empty()) CAIRN_RETURN_IF_ERROR(MakeRoom(m, digest, expanded));
  std::vector<WriteOp> ops;
  absl::MutexLock commit_lock(&commit_mu_);
  cairn::v1::CommitResponse out;
  out.set_manifest_digest(digest);
  const std::string release_key = Key2(m.name(), m.version());
  auto existing = meta_->Get(Table::kReleases, release_key);
  if (existing.ok() && *existing != digest) {
    return absl::AlreadyExistsError(StrCat("release ", m.name(), " ", m.version(),
                                           " already exists with different content (", *existing,
                                           "); releases are immutable: publish a new version"));
  }
  if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();
  out.set_already_present(existing.ok());
  bool tag_moved = false;
  if (tag) {
    tag_moved = true;
    CAIRN_ASSIGN_OR_RETURN(std::optional<meta::StoredTag> cur,
                           meta::ReadTag(meta_.get(), tag->name(), tag->tag()));
    if (cur && cur->record.version() >= tag->version()) {
      const TagRecord& cr = cur->record;
      if (cr.version() == tag->version() && cur->envelope == tag_envelope) {
        tag_moved = false;  // same record again: idempotent
      } else if (spec.stale_tag_is_ok) {
        // Replication: the highest valid version wins. An older (or
        // conflicting equal) version from a peer is dropped; the release
        // still lands.
        tag_moved = false;
        out.set_tag_not_newer(true);
        if (cr.version() > tag->version()) {
          out.set_tag_older(StrCat("tag ", tag->name(), ":", tag->tag(), " version ",
                                   tag->version(), " is older than the held version ", cr.version(),
                                   "; dropped"));
        }
        if (cr.version() == tag->version() && cr.manifest_digest() != tag->manifest_digest()) {
          out.set_tag_conflict(StrCat("tag ", tag->name(), ":", tag->tag(), " version ",
                                      tag->version(), " names ", tag->manifest_digest(),
                                      " upstream but ", cr.manifest_digest(),
                                      " here (a signing error; keeping ours)"));
        }
      } else {
        return absl::AlreadyExistsError(
            StrCat("tag ", tag->name(), ":", tag->tag(), " version ", tag->version(),
                   " does not increase on the node's version ", cr.version()));
      }
    }
    if (tag_moved && !spec.stale_tag_is_ok) {
      // A publisher pointing a tag at a release it yanked is a mistake; a
      // peer's order of events is not (its yank may follow).
      CAIRN_ASSIGN_OR_RETURN(auto y, meta::ReadYank(meta_.get(), digest));
      if (y && y->record.yanked()) {
        return absl::FailedPreconditionError(
            StrCat("release ", m.name(), " ", m.version(), " (", digest,
                   ") is yanked: ", y->record.reason(),
                   "; withdraw the yank first (cairn yank --undo) or tag another release"));
      }
    }
    if (tag_moved) {
      ops.push_back(
          WriteOp{Table::kTags, Key2(tag->name(), tag->tag()), std::string(tag_envelope)});
    }
  }
  bool yank_moved = false;
  if (yank) {
    if (!existing.ok() && !spec.stale_tag_is_ok) {
      return absl::FailedPreconditionError(
          StrCat("release ", m.name(), " ", m.version(), " (", digest, ") is not on this node"));
    }
    CAIRN_ASSIGN_OR_RETURN(std::optional<meta::StoredYank> cur,
                           meta::ReadYank(meta_.get(), digest));
    yank_moved = true;
    if (cur && cur->record.version() >= yank->version()) {
      yank_moved = false;
      if (cur->envelope == spec.yank_envelope) {
        // the same record again: idempotent
      } else if (spec.stale_tag_is_ok && cur->record.version() == yank->version()) {
        out.set_yank_conflict(StrCat("yank record of ", m.name(), " ", m.version(), " version ",
                                     yank->version(), " differs from the one held (",
                                     cur->record.yanked() ? "yanked" : "withdrawn", ": ",
                                     cur->record.reason(), "); kept the held one"));
      } else if (spec.stale_tag_is_ok) {
        out.set_yank_not_newer(true);  // the highest version wins
      } else {
        return absl::AlreadyExistsError(
            StrCat("yank record of ", m.name(), " ", m.version(), " version ", yank->version(),
                   " does not increase on the node's version ", cur->record.version()));
      }
    }
    if (yank_moved) {
      ops.push_back(WriteOp{Table::kState, meta::YankKey(digest), std::string(spec.yank_envelope)});
    }
  }
  // Staged lists move to the served objects in batches of at most
  // kPromoteBatchBytes, once every check passed and before the release that
  // names them is written: a release's lists are never all in memory at
  // once. A crash in between leaves lists in objects that no release names
  // yet; the retried commit finds them there.
  CAIRN_RETURN_IF_ERROR(PromoteStaged(staged));
  // Chunks must be durable before the release that names them is.
  CAIRN_RETURN_IF_ERROR(chunks_->Sync());
  {
    Envelope env;
    env.ParseFromArray(manifest_envelope.data(), static_cast<int>(manifest_envelope.size()));
    ops.push_back(WriteOp{Table::kObjects, digest, env.payload()});
  }
  ops.push_back(WriteOp{Table::kEnvelopes, digest, std::string(manifest_envelope)});
  ops.push_back(WriteOp{Table::kReleases, release_key, digest});
  // Back after an eviction (fetched on demand): no longer marked evicted.
  if (!existing.ok()) {
    ops.push_back(WriteOp{Table::kState, StrCat(meta::kEvictedPrefix, digest), std::nullopt});
  }
  for (const auto& p : m.parents()) {
    ops.push_back(WriteOp{Table::kChildren, Key2(p.manifest_digest(), digest),
                          StrCat(m.name(), std::string(1, '\0'), m.version(), std::string(1, '\0'),
                                 static_cast<int>(p.relation()))});
  }
  // The feed: one event per commit that changed something, in the same batch
  // (a withheld release re-signed by a valid key too: followers clear it).
  const bool resigned = existing.ok() && !trust_->WithheldReason(digest).empty();
  std::optional<ChangeFeed::Append> append;
  if (!existing.ok() || tag_moved || resigned || yank_moved) {
    cairn::v1::FeedEvent ev;
    ev.set_name(m.name());
    ev.set_version(m.version());
    ev.set_manifest_digest(digest);
    ev.set_manifest_envelope(std::string(manifest_envelope));
    if (tag_moved) ev.set_tag_envelope(std::string(tag_envelope));
    if (yank_moved) ev.set_yank_envelope(std::string(spec.yank_envelope));
    ev.set_accepted_unix(now);
    append = feed_->Prepare(std::move(ev), &ops);
  }
  for (const auto& op : spec.extra_ops) ops.push_back(op);
  CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  if (append) feed_->Publish(*append);
  // A withheld release (or tag) re-signed validly is served again.
  const std::string tag_key = tag ? Key2(tag->name(), tag->tag()) : std::string();
  trust_->Cleared(digest, tag_moved ? &tag_key : nullptr);
  return out;
}

}  // namespace cairn
