// The replication loop: one thread per upstream that keeps a node following
// it (long-polled feed, anti-entropy, backoff), and the status it reports.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/replication.h"
#include "cairn/transport/channel.h"
#include "cairn/transport/grpc_upstream.h"
#include "cairn/v1/service.pb.h"

namespace cairn::node {

// One background thread per upstream: SyncOnce with a long-polled feed (the
// upstream answers as soon as it commits something, or after 20 s), again at
// once; `poll_seconds` between syncs only for an upstream that does not hold
// the call. On failure back off exponentially with jitter (1 s .. 60 s). The
// node keeps serving whatever it holds meanwhile. Waits and stamps use the
// repository's clock. Thread-safe.
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
                  std::vector<std::string> peers = {}, TlsOptions tls = {});
  ~ReplicationLoop();  // Stop()
  // Stops every upstream's thread and joins them: a long poll, a chunk
  // transfer and a pacing or backoff wait in progress end at once (what
  // arrived is kept for the next start). Idempotent.
  void Stop();
  ReplicationLoop(const ReplicationLoop&) = delete;
  ReplicationLoop& operator=(const ReplicationLoop&) = delete;

  // A snapshot of every upstream's status, in the order given.
  std::vector<cairn::v1::UpstreamStatus> Status();
  // Counts what was fetched from `address` outside the feed (on demand), so
  // its status tells all that came from it.
  void AddFetched(const std::string& address, const ReplicationStats& s);

 private:
  void Run(size_t index, UpstreamConfig config);
  // Copies `s` (and the sync's outcome, unless null) into status_[index].
  void Publish(size_t index, const ReplicationStats& s, const absl::Status* outcome);
  Repository* repo_;
  Clock* const clock_;                                  // the repository's
  Cancellation cancel_;                                 // fired by Stop()
  std::vector<Upstream*> active_ ABSL_GUARDED_BY(mu_);  // cancelled on stop
  const int poll_seconds_;
  const std::vector<std::string> peers_;
  const TlsOptions tls_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<cairn::v1::UpstreamStatus> status_ ABSL_GUARDED_BY(mu_);
  std::vector<ReplicationStats> on_demand_ ABSL_GUARDED_BY(mu_);  // per upstream, AddFetched
  // Per upstream: (when, bytes_fetched) samples of the last 10 s, for the rate.
  std::vector<std::deque<std::pair<SteadyTime, uint64_t>>> samples_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace cairn::node
