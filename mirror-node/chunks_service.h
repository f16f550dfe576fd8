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
// Publish.MissingChunks). With `intact` (a publish asking what to upload),
// each stored record's header and extent are checked too, and a damaged one
// is reported missing so the publisher uploads it again. InvalidArgument
// past 65536 digests or for a bad one.
absl::StatusOr<cairn::v1::HasManyResponse> HasMany(Repository* repo,
                                                   const cairn::v1::HasManyRequest& req,
                                                   bool intact = false);

std::unique_ptr<cairn::v1::Chunks::CallbackService> NewChunksService(Repository* repo,
                                                                     WorkPool* pool,
                                                                     PeerStreams* streams,
                                                                     StreamLimits limits);

}  // namespace cairn::node
