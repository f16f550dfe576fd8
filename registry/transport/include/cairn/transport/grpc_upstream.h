// An upstream node reached over gRPC: the replicator's Upstream, and the
// source `cairn export --node` reads a bundle's contents from.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/replication.h"
#include "cairn/transport/channel.h"
#include "cairn/v1/service.grpc.pb.h"

namespace cairn {

// An upstream node reached over gRPC. Every call has a deadline. Chunks come
// through the transport's Fetcher: a windowed GetMany stream to the upstream and
// to each peer (nodes asked for chunks, not followed), weighted by measured
// throughput; a peer that lacks a chunk or misbehaves is passed over.
class GrpcUpstream final : public Upstream {
 public:
  // 64 kbit/s: far below any link worth replicating over, far above a
  // trickle. A client's default is higher (it has other mirrors to go to).
  static constexpr uint64_t kDefaultMinRate = 8 << 10;
  static constexpr int kStallSeconds = 60;
  // `streams`: parallel connections to the upstream for chunks (each its own
  // TCP congestion window: what keeps a long lossy link busy).
  GrpcUpstream(std::string address, int timeout_seconds, std::vector<std::string> peers = {},
               int streams = 4, const TlsOptions& tls = {});
  absl::StatusOr<std::string> NodeId() override;
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t after, uint32_t max_events) override;
  absl::StatusOr<cairn::v1::SummaryResponse> Summary() override;
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(const std::string& ref) override;
  // The upstream's HTTP chunk port (NodeInfo, Resolve), for its chunk streams.
  void SetChunksHttpPort(uint32_t port);
  absl::StatusOr<std::string> GetObject(const std::string& digest) override;
  // All at once, on gRPC's asynchronous client API (no thread per call).
  std::vector<absl::StatusOr<std::string>> GetObjects(
      const std::vector<std::string>& digests) override;
  absl::Status GetChunks(const std::vector<ChunkWant>& wanted, const ChunkSink& sink) override;
  std::string address() const override { return address_; }
  void LimitBuffer(size_t bytes) override { buffer_limit_ = bytes; }
  // Slowest the upstream may deliver (bytes/s over all its streams) before
  // its connections are dropped and the release retried later.
  void SetMinRate(uint64_t bytes_per_second) {
    min_rate_ = std::max<uint64_t>(1, bytes_per_second);
  }
  bool VerifiesChunks() const override { return true; }  // the Fetcher hashes each
  // The clock the chunk fetcher judges stalls and rates by (not owned).
  // Default: the real clock.
  void SetClock(Clock* clock) { clock_ = clock; }
  // Where "not using peer X any more: why" goes. Default: stderr.
  void SetLog(std::function<void(const std::string&)> log) { log_ = std::move(log); }
  void SetLongPoll(uint32_t wait_ms) override { long_poll_ms_ = wait_ms; }
  void SetFeedExtras(std::optional<uint64_t> trust_after, uint32_t chunk_list_bytes) override {
    feed_trust_after_ = trust_after;
    feed_list_bytes_ = chunk_list_bytes;
  }
  // Resolve calls say they come from a node fetching on demand, `hops`
  // nodes from the client that asked (gRPC metadata kOnDemandHopsHeader):
  // the upstream fetches on demand itself only within a bound, so a loop of
  // upstreams (a mesh) cannot make requests chase each other.
  void SetOnDemandHops(int hops) { on_demand_hops_ = hops; }
  static constexpr const char* kOnDemandHopsHeader = "cairn-on-demand-hops";
  void Cancel() override;
  // From the upstream; when it has nothing newer, from the first peer that does.
  absl::StatusOr<std::vector<std::string>> TrustChain(uint64_t after_version) override;
  // The first non-empty chain past `after_version` a reachable peer offers.
  std::vector<std::string> PeerTrustChain(uint64_t after_version);

 private:
  // Cancelled by Cancel(): ends a chunk transfer in progress.
  Cancellation cancel_;
  std::string address_;
  int timeout_seconds_;
  Clock* clock_ = Clock::Real();
  std::function<void(const std::string&)> log_;
  std::vector<std::unique_ptr<Connection>> sources_;  // upstream streams, then peers
  size_t upstream_streams_ = 1;
  size_t buffer_limit_ = 0;
  uint64_t min_rate_ = kDefaultMinRate;
  uint32_t long_poll_ms_ = 0;
  std::optional<uint64_t> feed_trust_after_;
  uint32_t feed_list_bytes_ = 0;
  int on_demand_hops_ = 0;
  absl::Mutex cancel_mu_;
  grpc::ClientContext* feed_ctx_ ABSL_GUARDED_BY(cancel_mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(cancel_mu_) = false;
};

}  // namespace cairn
