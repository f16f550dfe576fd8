// Channels to nodes: TLS, keepalive, message limits and reconnect backoff,
// the same for the CLI and for a node following its upstreams.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cairn/clock.h"
#include "cairn/transport/address.h"
#include "cairn/v1/service.grpc.pb.h"

namespace cairn {

// Transport security for connections to nodes. Default: plaintext.
struct TlsOptions {
  std::string ca_pem;    // verify the node's certificate against these roots; empty: no TLS
  std::string cert_pem;  // present this certificate (mutual TLS); optional
  std::string key_pem;
  bool enabled() const { return !ca_pem.empty(); }
  // Reads the PEM files; empty `ca` gives plaintext. A certificate needs its
  // key. InvalidArgument naming the file otherwise.
  static absl::StatusOr<TlsOptions> Load(const std::string& ca, const std::string& cert,
                                         const std::string& key);
};

// Keepalive ping interval (and ping timeout) of every channel NewChannel makes;
// nodes accept pings this often.
inline constexpr int kKeepaliveMs = 10000;

// A channel to HOST:PORT with Cairn's message limits (cairn/limits.h),
// keepalive and reconnect backoff. `private_pool`: its own TCP connection
// (parallel streams to one node then ride separate congestion windows, which
// is what wins on a lossy long link).
// `address` as ParseNodeAddress takes it (cairn/transport/address.h).
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, const TlsOptions& tls,
                                          bool private_pool = true);
// Whether a channel to `address` uses TLS: tls:// always, plain:// never,
// otherwise when `tls` has a CA.
bool UsesTls(const std::string& address, const TlsOptions& tls);

// A connection to one node: a channel and a stub per service. Every context
// it makes carries a deadline. Thread-safe: gRPC channels and stubs may be
// used from several threads at once, and the fields never change after
// construction but for the atomic chunk port.
class Connection {
 public:
  // Connects to HOST:PORT, waiting at most `timeout_seconds`. Unavailable
  // (naming the node) when it cannot be reached in time; InvalidArgument for
  // an address that is not HOST:PORT. Cancelled once `cancel` (not owned,
  // may be null) fires, within about 50 ms.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& address,
                                                          int timeout_seconds,
                                                          const TlsOptions& tls = {},
                                                          Cancellation* cancel = nullptr);
  // A second connection to the same node (its own TCP connection), not yet
  // connected: for parallel streams.
  std::unique_ptr<Connection> Another() const;
  // Over an existing channel (tests: in-process channels).
  // `tls`: what Another() uses for its own channel.
  Connection(std::shared_ptr<grpc::Channel> channel, std::string address, int timeout_seconds,
             TlsOptions tls = {});

  // A client context whose deadline is `timeout_seconds` from now.
  std::unique_ptr<grpc::ClientContext> Context() const;
  std::unique_ptr<grpc::ClientContext> Context(int seconds) const;

  cairn::v1::Registry::Stub* registry() const { return registry_.get(); }
  cairn::v1::Chunks::Stub* chunks() const { return chunks_.get(); }
  cairn::v1::Publish::Stub* publish() const { return publish_.get(); }
  cairn::v1::Federation::Stub* federation() const { return federation_.get(); }
  const std::string& address() const { return address_; }
  int timeout_seconds() const { return timeout_seconds_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const TlsOptions& tls() const { return tls_; }
  // The node's plain-HTTP chunk port, as its last Resolve answer named it
  // (ResolveResponse.chunks_http_port); 0: Chunks.GetMany only. Copied by
  // Another().
  int chunks_http_port() const { return chunks_http_port_.load(); }
  void set_chunks_http_port(int port) { chunks_http_port_.store(port); }

 private:
  const std::shared_ptr<grpc::Channel> channel_;
  const std::string address_;
  const int timeout_seconds_;
  const TlsOptions tls_;
  const std::unique_ptr<cairn::v1::Registry::Stub> registry_;
  const std::unique_ptr<cairn::v1::Chunks::Stub> chunks_;
  const std::unique_ptr<cairn::v1::Publish::Stub> publish_;
  const std::unique_ptr<cairn::v1::Federation::Stub> federation_;
  std::atomic<int> chunks_http_port_{0};
};

}  // namespace cairn
