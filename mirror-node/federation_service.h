// The Federation service: the change feed (long-polled through the feed
// waiter), summary, node info with replication status, trust roots.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "cairn/repository.h"
#include "cairn/v1/service.grpc.pb.h"
#include "service_common.h"
#include "unary_over_stream.h"

namespace cairn::node {

using FeedCall = UnaryCall<cairn::v1::FeedRequest, cairn::v1::FeedResponse>;

class FederationService : public UnaryOverStream<cairn::v1::Federation::CallbackService> {
 public:
  explicit FederationService(StreamLimits limits)
      : UnaryOverStream("cairn.v1.Federation", limits) {}
  // Reports replication state in NodeInfo. Once it returns, no call to the
  // previous function is in flight: its owner may be destroyed.
  virtual void SetUpstreamStatus(std::function<std::vector<cairn::v1::UpstreamStatus>()> fn) = 0;
  // Answers every parked long poll now and parks no more.
  virtual void StopWaiting() = 0;
  // Long-polled Feed calls parked right now.
  virtual size_t parked() const = 0;
};

class GcLoop;
class Scrubber;
// `scrub` (may be null; not owned, outlives the service) reports in NodeInfo.
std::unique_ptr<FederationService> NewFederationService(
    Repository* repo, WorkPool* pool, StreamLimits limits, const Scrubber* scrub = nullptr,
    const GcLoop* gc = nullptr, std::shared_ptr<const std::atomic<int>> chunks_http_port = nullptr);

}  // namespace cairn::node
