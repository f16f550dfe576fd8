#include "federation_service.h"

#include "absl/synchronization/mutex.h"
#include "cairn/status.h"
#include "feed_waiter.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

namespace {

class FederationImpl final : public FederationService {
 public:
  FederationImpl(Repository* repo, WorkPool* pool) : repo_(repo), pool_(pool), waiter_(repo) {}
  grpc::ServerUnaryReactor* Summary(grpc::CallbackServerContext* ctx, const SummaryRequest* /*req*/,
                                    SummaryResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return repo_->Summary(); });
  }
  grpc::ServerUnaryReactor* Feed(grpc::CallbackServerContext* ctx, const FeedRequest* req,
                                 FeedResponse* resp) override {
    // Long poll: a caught-up follower's call is parked and answered later
    // from the waiter's thread (asynchronous completion of the reactor).
    if (req->wait_ms() > 0) {
      if (auto* r = waiter_.Park(ctx, req, resp)) return r;
    }
    return Unary(pool_, ctx, resp,
                 [=, this] { return repo_->Feed(req->after(), req->max_events()); });
  }
  void StopWaiting() override { waiter_.Stop(); }
  size_t parked() const override { return waiter_.parked(); }
  ~FederationImpl() override { StopWaiting(); }
  grpc::ServerUnaryReactor* NodeInfo(grpc::CallbackServerContext* ctx,
                                     const NodeInfoRequest* /*req*/,
                                     NodeInfoResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<NodeInfoResponse> {
      CAIRN_ASSIGN_OR_RETURN(NodeInfoResponse out, repo_->NodeInfo());
      // Called under the reader lock: SetUpstreamStatus({}) waits for calls
      // in flight, so the function's owner may go once it returned.
      absl::ReaderMutexLock l(&mu_);
      if (upstream_status_) {
        for (auto& u : upstream_status_()) *out.add_upstreams() = std::move(u);
      }
      return out;
    });
  }
  void SetUpstreamStatus(std::function<std::vector<UpstreamStatus>()> fn) override {
    absl::MutexLock l(&mu_);
    upstream_status_ = std::move(fn);
  }
  grpc::ServerUnaryReactor* TrustRoot(grpc::CallbackServerContext* ctx, const TrustRootRequest* req,
                                      TrustRootResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<TrustRootResponse> {
      TrustRootResponse out;
      out.set_envelope(repo_->trust().envelope_bytes());
      if (req->after_version() > 0) {
        CAIRN_ASSIGN_OR_RETURN(auto chain, repo_->TrustChainAfter(req->after_version()));
        for (auto& r : chain) out.add_chain(std::move(r));
      }
      return out;
    });
  }
  grpc::ServerUnaryReactor* OfferTrustRoots(grpc::CallbackServerContext* ctx,
                                            const OfferTrustRootsRequest* req,
                                            OfferTrustRootsResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<OfferTrustRootsResponse> {
      if (req->chain_size() > 64) {
        return absl::InvalidArgumentError("at most 64 trust roots per offer");
      }
      std::vector<std::string> chain(req->chain().begin(), req->chain().end());
      CAIRN_ASSIGN_OR_RETURN(int advanced, repo_->AdoptTrustChain(chain));
      if (advanced > 0) {
        spdlog::warn("trust root updated to v{} (offered by {})", repo_->trust().root().version(),
                     ctx->peer());
      }
      OfferTrustRootsResponse out;
      out.set_version(repo_->trust().root().version());
      out.set_advanced(static_cast<uint32_t>(advanced));
      return out;
    });
  }

 private:
  absl::Mutex mu_;
  std::function<std::vector<UpstreamStatus>()> upstream_status_ ABSL_GUARDED_BY(mu_);
  Repository* repo_;
  WorkPool* pool_;
  FeedWaiter waiter_;
};

}  // namespace

std::unique_ptr<FederationService> NewFederationService(Repository* repo, WorkPool* pool) {
  return std::make_unique<FederationImpl>(repo, pool);
}

}  // namespace cairn::node
