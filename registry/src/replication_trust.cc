// Replicator: adopting the trust roots an upstream offers (on their own, or
// carried by a Feed answer).
#include "cairn/replication.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

void Replicator::NoteTrust(const absl::StatusOr<int>& st) {
  // A root that does not verify is logged and ignored: the node keeps its own.
  if (!st.ok()) {
    if (log_ && st.status().message() != last_trust_error_)
      log_(std::string(st.status().message()));
    last_trust_error_ = std::string(st.status().message());
  } else {
    last_trust_error_.clear();
  }
}

absl::StatusOr<int> Replicator::UpdateTrust() {
  const uint64_t mine = repo_->trust().root().version();
  auto chain = upstream_->TrustChain(mine);
  if (!chain.ok()) return Annotate(chain.status(), "asking for newer trust roots");
  return AdoptTrust(mine, *chain);
}

absl::StatusOr<int> Replicator::AdoptTrust(uint64_t mine, const std::vector<std::string>& chain) {
  if (chain.empty()) return 0;
  auto adopted = repo_->AdoptTrustChain(chain);
  if (!adopted.ok()) {
    return Annotate(adopted.status(), StrCat("refused trust roots offered past v", mine));
  }
  if (*adopted > 0) {
    stats_.trust_updates += *adopted;
    if (log_) {
      log_(StrCat("trust root updated from v", mine, " to v", repo_->trust().root().version()));
    }
  }
  return *adopted;
}

}  // namespace cairn
