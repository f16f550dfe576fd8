// The Publish service: challenges, sessions, chunk and object uploads, commit, co-signing.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "cairn/repository.h"
#include "cairn/v1/service.grpc.pb.h"
#include "import_service.h"
#include "service_common.h"

namespace cairn::node {

std::unique_ptr<cairn::v1::Publish::CallbackService> NewPublishService(Repository* repo,
                                                                       WorkPool* pool,
                                                                       PeerStreams* streams,
                                                                       StreamLimits limits,
                                                                       ImportGate* import_gate);

}  // namespace cairn::node
