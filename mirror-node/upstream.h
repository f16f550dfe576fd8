// Upstream over gRPC, and the loop that keeps a node following its upstreams.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cairn/replication.h"
#include "cairn/v1/service.grpc.pb.h"
#include "client.h"

namespace cairn::node {

// An upstream node reached over gRPC. Every call has a deadline. Chunks come
// through the client's Fetcher: a windowed GetMany stream to the upstream and
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
               int streams = 4, const client::TlsOptions& tls = {});
  absl::StatusOr<std::string> NodeId() override;
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t after, uint32_t max_events) override;
  absl::StatusOr<cairn::v1::SummaryResponse> Summary() override;
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(const std::string& ref) override;
  absl::StatusOr<std::string> GetObject(const std::string& digest) override;
  absl::Status GetChunks(
      const std::vector<Want>& wanted,
      const std::function<absl::Status(const Digest&, std::string_view)>& sink) override;
  std::string address() const override { return address_; }
  void LimitBuffer(size_t bytes) override { buffer_limit_ = bytes; }
  // Slowest the upstream may deliver (bytes/s over all its streams) before
  // its connections are dropped and the release retried later.
  void SetMinRate(uint64_t bytes_per_second) {
    min_rate_ = std::max<uint64_t>(1, bytes_per_second);
  }
  bool VerifiesChunks() const override { return true; }  // the Fetcher hashes each
  void SetLongPoll(uint32_t wait_ms) override { long_poll_ms_ = wait_ms; }
  void Cancel() override;
  // From the upstream; when it has nothing newer, from the first peer that does.
  absl::StatusOr<std::vector<std::string>> TrustChain(uint64_t after_version) override;

 private:
  std::unique_ptr<grpc::ClientContext> Context(int seconds) const;
  std::string address_;
  int timeout_seconds_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cairn::v1::Federation::Stub> federation_;
  std::unique_ptr<cairn::v1::Registry::Stub> registry_;
  std::unique_ptr<cairn::v1::Chunks::Stub> chunks_;
  std::vector<std::unique_ptr<client::Connection>> sources_;  // upstream streams, then peers
  size_t upstream_streams_ = 1;
  size_t buffer_limit_ = 0;
  uint64_t min_rate_ = kDefaultMinRate;
  uint32_t long_poll_ms_ = 0;
  absl::Mutex cancel_mu_;
  grpc::ClientContext* feed_ctx_ ABSL_GUARDED_BY(cancel_mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(cancel_mu_) = false;
};

// One background thread per upstream: SyncOnce with a long-polled feed (the
// upstream answers as soon as it commits something, or after 20 s), again at
// once; `poll_seconds` between syncs only for an upstream that does not hold
// the call. On failure back off exponentially with jitter (1 s .. 60 s). The node keeps
// serving whatever it holds meanwhile. Thread-safe.
class ReplicationLoop {
 public:
  struct UpstreamConfig {
    std::string address;
    ReplicationPolicy policy;
    int streams = 4;  // parallel chunk connections to it, 1..8
    // Slowest acceptable delivery, bytes/s over all its streams; a slower
    // upstream's connections are dropped and the release retried later.
    uint64_t min_bytes_per_second = GrpcUpstream::kDefaultMinRate;
  };
  // `peers`: nodes also asked for chunks of every upstream's releases.
  // `tls`: how to reach upstreams and peers (plaintext by default).
  ReplicationLoop(Repository* repo, std::vector<UpstreamConfig> upstreams, int poll_seconds = 2,
                  std::vector<std::string> peers = {}, client::TlsOptions tls = {});
  ~ReplicationLoop();  // stops and joins
  ReplicationLoop(const ReplicationLoop&) = delete;
  ReplicationLoop& operator=(const ReplicationLoop&) = delete;

  // A snapshot of every upstream's status, in the order given.
  std::vector<cairn::v1::UpstreamStatus> Status();

 private:
  void Run(size_t index, UpstreamConfig config);
  // Copies `s` (and the sync's outcome, unless null) into status_[index].
  void Publish(size_t index, const ReplicationStats& s, const absl::Status* outcome);
  Repository* repo_;
  std::vector<Upstream*> active_ ABSL_GUARDED_BY(mu_);  // cancelled on stop
  const int poll_seconds_;
  const std::vector<std::string> peers_;
  const client::TlsOptions tls_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<cairn::v1::UpstreamStatus> status_ ABSL_GUARDED_BY(mu_);
  // Per upstream: (when, bytes_fetched) samples of the last 10 s, for the rate.
  std::vector<std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>>> samples_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace cairn::node
