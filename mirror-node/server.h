// cairn-node's gRPC server: the Registry, Chunks, Publish and Federation
// services (one file each) over a Repository, on the callback API. Wire
// limits: cairn/limits.h; status mapping: cairn/transport/grpc_status.h.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/clock.h"
#include "cairn/repository.h"
#include "cairn/v1/service.pb.h"

namespace cairn::node {

class OnDemand;
class GcLoop;
class Scrubber;

struct ServerOptions {
  // TLS on the port: PEM certificate chain and key. Empty: plaintext.
  std::string tls_cert_pem, tls_key_pem;
  // With TLS: verify client certificates against this CA (mutual TLS between
  // nodes). A client presenting a certificate the CA did not sign is refused.
  std::string tls_ca_pem;
  // With tls_ca_pem: refuse clients that present no certificate (a closed
  // federation; reads are then no longer open to everyone).
  bool require_client_cert = false;
  // Most concurrent chunk streams (GetMany, PutChunks) from one client
  // address; more are refused with RESOURCE_EXHAUSTED. Default: 64.
  int max_streams_per_peer = 64;
  // A chunk stream that waits this long for its client (no request sent, no
  // answer taken beyond what a 64 kbit/s link needs) is cancelled.
  int stream_idle_seconds = 30;
  // Memory for calls in flight (partly received requests, answers queued
  // for the network), node-wide. Default: 1 GiB.
  uint64_t call_memory_bytes = uint64_t{1} << 30;
  // Most concurrent calls on one HTTP/2 connection. Default: 100.
  int max_streams_per_connection = 100;
  // The clock those timeouts run on; null: the repository's.
  Clock* clock = nullptr;
  // Pull-through: Resolve of a release not held fetches it from upstream
  // (answered once committed). Not owned; outlives the server. Null: off.
  OnDemand* on_demand = nullptr;
  // Reported in NodeInfo. Not owned; outlives the server. Null: none.
  const Scrubber* scrub = nullptr;
  const GcLoop* gc = nullptr;
  // Who may send a bundle (Publish.Import): "loopback", "any" or "none".
  std::string import_from = "loopback";
  // Advertised in Resolve answers (ResolveResponse.chunks_http_port): the
  // plain-HTTP gateway's port while it serves chunks, else 0. Null: 0.
  std::shared_ptr<const std::atomic<int>> chunks_http_port;
};

// A running server. Not copyable; Shutdown() is thread-safe and idempotent.
class NodeServer {
 public:
  // Binds `listen` (HOST:PORT; port 0 picks one) and starts serving `repo`,
  // which must outlive the server. Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<NodeServer>> Start(Repository* repo,
                                                           const std::string& listen,
                                                           const ServerOptions& options = {});
  // Reports replication state in NodeInfo. `fn` must be thread-safe. Once
  // SetUpstreamStatus returns, no call of the previous function is in
  // flight, so clearing it (an empty function) lets its owner go.
  void SetUpstreamStatus(std::function<std::vector<cairn::v1::UpstreamStatus>()> fn);
  ~NodeServer();
  NodeServer(const NodeServer&) = delete;
  NodeServer& operator=(const NodeServer&) = delete;

  int port() const { return port_; }
  // "HOST:PORT" with the bound port.
  const std::string& address() const { return address_; }
  // Stops accepting calls and waits up to `grace_seconds` for running ones.
  void Shutdown(int grace_seconds = 5);
  void Wait();
  // Chunk streams cancelled for making no progress (status, tests).
  uint64_t streams_timed_out() const;
  // Chunk streams (GetMany, PutChunks) open right now (tests).
  int open_chunk_streams() const;
  // Long-polled Feed calls held right now (status, tests).
  size_t parked_feed_calls() const;
  // An in-process channel (tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();

 private:
  NodeServer() = default;
  struct Services;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::ResourceQuota> quota_;  // outlives server_
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
};

}  // namespace cairn::node
