// The Registry service: resolve, objects, list, lineage (read-only). With an
// OnDemand, Resolve of a release not held fetches it from upstream first.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "cairn/repository.h"
#include "cairn/v1/service.grpc.pb.h"
#include "service_common.h"

namespace cairn::node {

class OnDemand;

std::unique_ptr<cairn::v1::Registry::CallbackService> NewRegistryService(
    Repository* repo, WorkPool* pool, StreamLimits limits, OnDemand* on_demand,
    std::shared_ptr<const std::atomic<int>> chunks_http_port);

}  // namespace cairn::node
