// The node's HTTP gateway: the Hugging Face Hub download API and plain HTTP
// downloads that curl, wget and aria2c can resume to exact bytes.
//
//   GET /v1/releases/{ns}/{model}                       releases and tags, JSON
//   GET|HEAD /v1/files/{ns}/{model}/{ref}/{path}        a file of a release
//        {ref}: a tag, a version, or @sha256:<manifest digest>
//        Range (one range), ETag (the file's SHA-256), If-None-Match
//   GET|HEAD /v1/chunks/sha256:<hex>                    one chunk, verified
//   /api/models/..., /{ns}/{model}/resolve|raw/...     the Hub API (hf_api.cc)
//   GET /metrics (Prometheus), GET / (status page)
//
// Boost.Beast on Boost.Asio with C++20 coroutines. Bounded: connections,
// header bytes, request bodies, header and idle timeouts. A file is streamed
// chunk by chunk from the store, and every chunk is hashed before a byte of
// it is sent: a chunk that does not match the signed chunk list aborts the
// connection (never a short or wrong body) and is counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cairn/repository.h"
#include "cairn/v1/service.pb.h"

namespace cairn::node {

class OnDemand;
class GcLoop;
class Scrubber;

struct HttpOptions {
  size_t max_connections = 4096;            // more are answered 503 and closed
  size_t max_connections_per_client = 256;  // per client address, likewise
  // Requests per second one client address may make (a token bucket holding
  // two seconds' worth); more are answered 429 with Retry-After. 0: no cap.
  double requests_per_second_per_client = 1000;
  int header_timeout_seconds = 10;  // to receive a request's headers (and body)
  int idle_seconds = 60;            // keep-alive wait; also per write
  uint32_t max_header_bytes = 16 << 10;
  uint64_t max_body_bytes = 64 << 10;  // request bodies (paths-info)
  // File bytes read ahead of the network, node-wide. Up to it a response reads
  // 1 MiB batches with one ahead; past it, 64 KiB batches and none ahead.
  uint64_t max_read_ahead_bytes = 256ull << 20;
  size_t tree_page_size = 1000;  // entries per page of the Hub tree API
  // Every chunk is checked against its digest before it is sent (a plain
  // HTTP client cannot check it): by the store when it verifies reads (the
  // node's verify_reads), else here. false ([http] verify_reads = false):
  // chunks verified when they entered the node are sent as read, and the
  // scrub is the defence against the disk. Default: true.
  bool verify_reads = true;
  // How the gateway checks them: with the CRC-32C the store recorded when
  // the chunk's SHA-256 was checked on arrival (true; about 20 GB/s a core,
  // so sending keeps up with nginx; chunks with no CRC recorded are
  // re-hashed), or by re-hashing every chunk with SHA-256 (false; [http]
  // verify_reads_with = "sha256", 1-2 GB/s a core). A CRC mismatch is
  // settled by the SHA-256: the chunk is sent if it still hashes right.
  bool verify_with_crc = true;
  bool store_verifies_reads = false;
  // Plain HTTP: chunk bytes go from the pack files to the socket with
  // sendfile (no copy through the node's memory); when verifying, each chunk
  // is hashed from a reused buffer first. false: read, then written.
  // Default: true.
  bool zero_copy = true;
  // TLS on the port: PEM certificate chain and key (the node's). Empty: plain.
  std::string tls_cert_pem, tls_key_pem;
  int threads = 2;
  // The node's data directory: its size and free space go to /metrics and
  // the status page. Empty: not reported.
  std::string data_dir;
  // Pull-through: releases not held are fetched from upstream (and served
  // as they arrive) when set. Not owned; outlives the gateway.
  OnDemand* on_demand = nullptr;
  // The node's scrub, reported in /metrics and on the status page. Not
  // owned; outlives the gateway. Null: none.
  const Scrubber* scrub = nullptr;
  // The node's garbage collection, reported likewise. Not owned. Null: none.
  const GcLoop* gc = nullptr;
};

struct HttpCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bytes_sent{0};            // file and chunk bytes
  std::atomic<uint64_t> bytes_sent_on_demand{0};  // of which waited for from upstream
  std::atomic<uint64_t> bytes_sent_zero_copy{0};  // of which sent with sendfile
  std::atomic<uint64_t> chunk_hits{0};            // chunks held when a response needed them
  std::atomic<uint64_t> chunk_misses{0};          // chunks waited for (on-demand fetch)
  std::atomic<uint64_t> verification_failures{0};
  // Chunks the gateway checked before sending: with their recorded CRC-32C,
  // or by re-hashing them (SHA-256).
  std::atomic<uint64_t> chunks_checked_crc{0};
  std::atomic<uint64_t> chunks_checked_sha256{0};
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
  // A graceful stop's first half: no new connection is accepted, a kept-alive
  // connection closes after its current answer, and this waits until no
  // answer is in progress or `deadline` passes. Returns how many were still
  // in progress then (the destructor cuts them).
  size_t Drain(absl::Time deadline);
  HttpGateway(const HttpGateway&) = delete;
  HttpGateway& operator=(const HttpGateway&) = delete;

  // Replication state for /metrics and the status page. `fn` must be
  // thread-safe and outlive the gateway, or be cleared (empty) first.
  void SetUpstreamStatus(std::function<std::vector<cairn::v1::UpstreamStatus>()> fn);

  int port() const;
  std::string address() const;  // HOST:PORT as bound
  const HttpCounters& counters() const;
  // Connections open now, refused ones included until they close.
  size_t open_connections() const;

 private:
  struct Impl;
  explicit HttpGateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cairn::node
