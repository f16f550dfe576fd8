// The Chunks service: HasMany, and GetMany as a windowed bidirectional stream.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "cairn/repository.h"
#include "cairn/v1/service.grpc.pb.h"
#include "service_common.h"

namespace cairn::node {

// Which of `req`'s digests this node holds (Chunks.HasMany and
// Publish.MissingChunks). InvalidArgument past 65536 digests or for a bad one.
absl::StatusOr<cairn::v1::HasManyResponse> HasMany(Repository* repo,
                                                   const cairn::v1::HasManyRequest& req);

std::unique_ptr<cairn::v1::Chunks::CallbackService> NewChunksService(Repository* repo,
                                                                     WorkPool* pool,
                                                                     PeerStreams* streams);

}  // namespace cairn::node
