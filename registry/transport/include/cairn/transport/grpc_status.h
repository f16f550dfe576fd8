// The one mapping between canonical statuses and gRPC statuses, both ways.
#pragma once

#include <grpcpp/support/status.h>

#include <string_view>

#include "absl/status/status.h"

namespace cairn {

// Canonical status to gRPC status: the one conversion at a server's edge.
// Codes map one to one; the message is kept.
grpc::Status ToGrpc(const absl::Status& s);

// gRPC status to canonical status, prefixed with what was being done
// ("resolve acme/m on host:7070: ..."). DEADLINE_EXCEEDED and UNAVAILABLE
// get words a user can act on.
absl::Status FromGrpc(const grpc::Status& s, std::string_view what);

}  // namespace cairn
