// The Registry service: resolve, objects, list, lineage (read-only).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "cairn/repository.h"
#include "cairn/v1/service.grpc.pb.h"
#include "service_common.h"

namespace cairn::node {

std::unique_ptr<cairn::v1::Registry::CallbackService> NewRegistryService(Repository* repo,
                                                                         WorkPool* pool,
                                                                         StreamLimits limits);

}  // namespace cairn::node
