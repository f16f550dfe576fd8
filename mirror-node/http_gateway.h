// The node's HTTP gateway (issue 13, first part): plain HTTP downloads that
// curl, wget and aria2c can resume to exact bytes.
//
//   GET /v1/releases/{ns}/{model}                       releases and tags, JSON
//   GET|HEAD /v1/files/{ns}/{model}/{ref}/{path}        a file of a release
//        {ref}: a tag, a version, or @sha256:<manifest digest>
//        Range (one range), ETag (the file's SHA-256), If-None-Match
//
// Boost.Beast on Boost.Asio with C++20 coroutines. Bounded: connections,
// header bytes, request bodies, header and idle timeouts. A file is streamed
// chunk by chunk from the store, and every chunk is hashed before a byte of
// it is sent: a chunk that does not match the signed chunk list aborts the
// connection (never a short or wrong body) and is counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cairn/repository.h"

namespace cairn::node {

struct HttpOptions {
  size_t max_connections = 1024;    // more are answered 503 and closed
  int header_timeout_seconds = 10;  // to receive a request's headers
  int idle_seconds = 60;            // keep-alive wait; also per write of a chunk
  uint32_t max_header_bytes = 16 << 10;
  int threads = 2;
};

struct HttpCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> verification_failures{0};
  std::atomic<uint64_t> connections_refused{0};
};

class HttpGateway {
 public:
  // Binds `listen` (HOST:PORT; port 0 picks one) and serves `repo`, which
  // must outlive the gateway. Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpGateway>> Start(Repository* repo,
                                                            const std::string& listen,
                                                            const HttpOptions& options = {});
  ~HttpGateway();  // stops accepting, closes connections, joins its threads
  HttpGateway(const HttpGateway&) = delete;
  HttpGateway& operator=(const HttpGateway&) = delete;

  int port() const;
  std::string address() const;  // HOST:PORT as bound
  const HttpCounters& counters() const;

 private:
  struct Impl;
  explicit HttpGateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cairn::node
