#include "federation_service.h"

#include "absl/synchronization/mutex.h"
#include "cairn/status.h"
#include "feed_waiter.h"
#include "gc_loop.h"
#include "scrub.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

namespace {

class FederationImpl final : public FederationService {
 public:
  FederationImpl(Repository* repo, WorkPool* pool, StreamLimits limits, const Scrubber* scrub,
                 const GcLoop* gc, std::shared_ptr<const std::atomic<int>> http_port)
      : FederationService(limits), waiter_(repo) {
    ServeOnPool<SummaryRequest, SummaryResponse>("Summary", pool,
                                                 [repo](auto*) { return repo->Summary(); });
    // Long poll: a caught-up follower's call is parked and answered later
    // from the waiter's thread.
    Serve<FeedRequest, FeedResponse>("Feed", [this, pool](FeedCall* call) {
      if (call->req().wait_ms() > 0 && waiter_.Park(call)) return;
      RunOnPool<FeedRequest, FeedResponse>(pool, call, feed_now_);
    });
    feed_now_ = [repo](FeedCall* call) { return repo->Feed(call->req()); };
    ServeOnPool<NodeInfoRequest, NodeInfoResponse>(
        "NodeInfo", pool,
        [this, repo, scrub, gc, http_port](auto*) -> absl::StatusOr<NodeInfoResponse> {
          CAIRN_ASSIGN_OR_RETURN(NodeInfoResponse out, repo->NodeInfo());
          if (http_port) out.set_chunks_http_port(static_cast<uint32_t>(http_port->load()));
          if (scrub != nullptr) *out.mutable_scrub() = scrub->Status();
          if (gc != nullptr) *out.mutable_gc() = gc->Status();
          // Called under the reader lock: SetUpstreamStatus({}) waits for calls
          // in flight, so the function's owner may go once it returned.
          absl::ReaderMutexLock l(&mu_);
          if (upstream_status_) {
            for (auto& u : upstream_status_()) *out.add_upstreams() = std::move(u);
          }
          return out;
        });
    ServeOnPool<TrustRootRequest, TrustRootResponse>(
        "TrustRoot", pool, [repo](auto* call) -> absl::StatusOr<TrustRootResponse> {
          TrustRootResponse out;
          out.set_envelope(repo->trust().envelope_bytes());
          if (call->req().after_version() > 0) {
            CAIRN_ASSIGN_OR_RETURN(auto chain, repo->TrustChainAfter(call->req().after_version()));
            for (auto& r : chain) out.add_chain(std::move(r));
          }
          return out;
        });
    ServeOnPool<OfferTrustRootsRequest, OfferTrustRootsResponse>(
        "OfferTrustRoots", pool, [repo](auto* call) -> absl::StatusOr<OfferTrustRootsResponse> {
          const OfferTrustRootsRequest& req = call->req();
          if (req.chain_size() > 64) {
            return absl::InvalidArgumentError("at most 64 trust roots per offer");
          }
          std::vector<std::string> chain(req.chain().begin(), req.chain().end());
          CAIRN_ASSIGN_OR_RETURN(int advanced, repo->AdoptTrustChain(chain));
          if (advanced > 0) {
            spdlog::warn("trust root updated to v{} (offered by {})",
                         repo->trust().root().version(), call->ctx()->peer());
          }
          OfferTrustRootsResponse out;
          out.set_version(repo->trust().root().version());
          out.set_advanced(static_cast<uint32_t>(advanced));
          return out;
        });
  }
  void StopWaiting() override { waiter_.Stop(); }
  size_t parked() const override { return waiter_.parked(); }
  ~FederationImpl() override { StopWaiting(); }
  void SetUpstreamStatus(std::function<std::vector<UpstreamStatus>()> fn) override {
    absl::MutexLock l(&mu_);
    upstream_status_ = std::move(fn);
  }

 private:
  absl::Mutex mu_;
  std::function<std::vector<UpstreamStatus>()> upstream_status_ ABSL_GUARDED_BY(mu_);
  FeedWaiter waiter_;
  std::function<absl::StatusOr<FeedResponse>(FeedCall*)> feed_now_;
};

}  // namespace

std::unique_ptr<FederationService> NewFederationService(
    Repository* repo, WorkPool* pool, StreamLimits limits, const Scrubber* scrub, const GcLoop* gc,
    std::shared_ptr<const std::atomic<int>> chunks_http_port) {
  return std::make_unique<FederationImpl>(repo, pool, limits, scrub, gc,
                                          std::move(chunks_http_port));
}

}  // namespace cairn::node
