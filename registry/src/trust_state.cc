#include "trust_state.h"

#include <map>

#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/verify.h"
#include "meta_schema.h"

namespace cairn {

absl::StatusOr<std::unique_ptr<TrustState>> TrustState::Load(MetaStore* meta, Clock* clock,
                                                             TrustRootView file_root) {
  std::unique_ptr<TrustState> t(new TrustState(meta, clock));
  CAIRN_RETURN_IF_ERROR(t->Init(std::move(file_root)));
  return t;
}

std::shared_ptr<const TrustRootView> TrustState::Current() const {
  absl::MutexLock l(&mu_);
  return trust_;
}

absl::Status TrustState::Init(TrustRootView file_root) {
  std::map<uint64_t, std::string> stored;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, meta::kTrustPrefix, [&](std::string_view k, std::string_view v) {
        uint64_t version = 0;
        if (ParseInt(k.substr(meta::kTrustPrefix.size()), &version)) {
          stored[version] = std::string(v);
        }
        return true;
      }));
  const uint64_t fv = file_root.root().version();
  const uint64_t held = stored.empty() ? 0 : stored.rbegin()->first;
  TrustRootView cur = file_root;
  std::vector<WriteOp> ops;
  auto refuse = [&](const std::string& why) {
    return absl::FailedPreconditionError(StrCat(
        "the trust file is v", fv, " but this node already holds trust root v", held, " and ", why,
        "; a node never goes back to an older trust root. Start it with its newest trust "
        "file (cairn trust update writes one), or use a new data directory for another trust "
        "root"));
  };
  if (fv <= held) {
    // The file may be older than what the node received since, or the same
    // version with other bytes (more signatures): the stored chain must
    // follow from it, and the newest stored root is used.
    std::vector<std::string> newer;
    for (const auto& [v, bytes] : stored) {
      if (v > fv) newer.push_back(bytes);
    }
    if (newer.empty()) {
      auto stored_same = TrustRootView::FromEnvelopeBytes(stored.at(fv), kIgnoreExpiry);
      if (!stored_same.ok() ||
          stored_same->root().SerializeAsString() != file_root.root().SerializeAsString()) {
        return refuse(StrCat("its stored v", fv, " is a different root"));
      }
      cur = std::move(*stored_same);
    } else {
      auto walked = WalkTrustChain(file_root, newer, kIgnoreExpiry);
      if (!walked.ok()) {
        return refuse(StrCat("the stored roots do not follow from the file (",
                             walked.status().message(), ")"));
      }
      cur = std::move(*walked);
      note_ = StrCat("trust file is v", fv, "; using v", cur.root().version(),
                     " received since and stored");
    }
  } else {
    // A newer file: the operator moved forward (cairn trust update).
    ops.push_back(WriteOp{Table::kState, meta::TrustKey(fv), file_root.envelope_bytes()});
  }
  if (!ops.empty()) CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  if (cur.root().expires_unix() <= clock_->NowUnix()) {
    return absl::FailedPreconditionError(StrCat(
        "trust root v", cur.root().version(), " expired at unix time ", cur.root().expires_unix(),
        "; start the node with a newer trust file (cairn trust update, or from the root key "
        "holders)"));
  }
  {
    absl::MutexLock l(&mu_);
    trust_ = std::make_shared<const TrustRootView>(cur);
  }
  return Recheck(cur);
}

absl::Status TrustState::Recheck(const TrustRootView& trust) {
  absl::flat_hash_map<std::string, std::string> releases, tags;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kEnvelopes, "", [&](std::string_view k, std::string_view v) {
        std::string digest;
        auto m = VerifyManifestEnvelope(trust, v, &digest);
        if (!m.ok()) releases[std::string(k)] = std::string(m.status().message());
        return true;
      }));
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kTags, "", [&](std::string_view k, std::string_view v) {
    // Expiry is the client's check; here only who signed it matters.
    auto rec = VerifyTagEnvelope(trust, v, kIgnoreExpiry);
    if (!rec.ok()) tags[std::string(k)] = std::string(rec.status().message());
    return true;
  }));
  absl::MutexLock l(&mu_);
  withheld_ = std::move(releases);
  withheld_tags_ = std::move(tags);
  return absl::OkStatus();
}

absl::StatusOr<int> TrustState::Adopt(const std::vector<std::string>& chain) {
  absl::MutexLock adopt(&adopt_mu_);
  std::shared_ptr<const TrustRootView> cur = Current();
  CAIRN_ASSIGN_OR_RETURN(TrustRootView next, WalkTrustChain(*cur, chain, clock_->NowUnix()));
  const uint64_t from = cur->root().version(), to = next.root().version();
  if (to == from) return 0;
  std::vector<WriteOp> ops;
  for (const auto& bytes : chain) {
    cairn::v1::Envelope env;
    cairn::v1::TrustRoot root;
    if (!env.ParseFromString(bytes) || !root.ParseFromString(env.payload())) continue;
    if (root.version() > from && root.version() <= to) {
      ops.push_back(WriteOp{Table::kState, meta::TrustKey(root.version()), bytes});
    }
  }
  CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  {
    absl::MutexLock l(&mu_);
    trust_ = std::make_shared<const TrustRootView>(next);
  }
  CAIRN_RETURN_IF_ERROR(Recheck(next));
  return static_cast<int>(to - from);
}

absl::StatusOr<std::vector<std::string>> TrustState::ChainAfter(uint64_t version) {
  std::vector<std::string> out;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, meta::kTrustPrefix, [&](std::string_view k, std::string_view v) {
        uint64_t ver = 0;
        if (ParseInt(k.substr(meta::kTrustPrefix.size()), &ver) && ver > version) {
          out.push_back(std::string(v));
        }
        return true;
      }));
  return out;  // keys are zero-padded: oldest first
}

std::string TrustState::WithheldReason(std::string_view manifest_digest) const {
  absl::MutexLock l(&mu_);
  auto it = withheld_.find(std::string(manifest_digest));
  return it == withheld_.end() ? std::string() : it->second;
}

bool TrustState::TagWithheld(const std::string& key, std::string* why) const {
  absl::MutexLock l(&mu_);
  auto it = withheld_tags_.find(key);
  if (it == withheld_tags_.end()) return false;
  if (why) *why = it->second;
  return true;
}

size_t TrustState::releases_withheld() const {
  absl::MutexLock l(&mu_);
  return withheld_.size();
}

size_t TrustState::tags_withheld() const {
  absl::MutexLock l(&mu_);
  return withheld_tags_.size();
}

void TrustState::Cleared(const std::string& manifest_digest, const std::string* tag_key) {
  absl::MutexLock l(&mu_);
  withheld_.erase(manifest_digest);
  if (tag_key != nullptr) withheld_tags_.erase(*tag_key);
}

}  // namespace cairn
