// Publish.Import: a bundle streamed by `cairn import`, imported on a thread of
// its own (the importer reads forward, blocking) fed by the call's reads.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>
#include <string_view>

#include "cairn/repository.h"
#include "cairn/v1/service.grpc.pb.h"

namespace cairn::node {

// Who may import over the network ([node] import_from), and the one import
// a node runs at a time.
struct ImportGate {
  explicit ImportGate(std::string f = "loopback") : from(std::move(f)) {}
  // "loopback" (default), "any" or "none".
  std::string from = "loopback";
  // A client that sends nothing for this long is dropped (the import is
  // resumable). Default: 5 minutes.
  int idle_seconds = 300;
  std::atomic<bool> busy{false};
};

// Whether a gRPC peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000",
// "unix:...") is this machine.
bool IsLoopbackPeer(std::string_view peer);

grpc::ServerReadReactor<cairn::v1::ImportRequest>* NewImportReactor(
    Repository* repo, ImportGate* gate, grpc::CallbackServerContext* ctx,
    cairn::v1::ImportResponse* resp);

}  // namespace cairn::node
