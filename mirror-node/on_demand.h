// Pull-through: a release a client asks this node for, that it does not hold
// and its policy allows, is fetched from its upstreams (and peers) through
// the same verified replication path as the feed, and kept afterwards.
// Requests for the same release share one fetch; the caller serves a file's
// bytes as its chunks arrive (the fetch takes that file first, then small
// files, then the rest).
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cairn/replication.h"
#include "cairn/repository.h"
#include "cairn/transport/channel.h"

namespace cairn::node {

struct OnDemandConfig {
  std::vector<std::string> upstreams;  // asked in order
  std::vector<std::string> peers;      // asked for chunks too
  TlsOptions tls;
  // What may be fetched on demand: names (include/exclude globs) and the
  // largest release (max_release_bytes, 0: any). Times and tags do not apply.
  ReplicationPolicy policy;
  // An upstream's rate cap ([[upstream]] max_bytes_per_second), by address:
  // fetches on demand from it keep to it too (it is the link's budget).
  std::map<std::string, uint64_t> max_bytes_per_second;
  int timeout_seconds = 30;  // per upstream call
  int streams = 4;           // chunk connections to the upstream
  // Told what each fetch took from which upstream (status). May be empty.
  std::function<void(const std::string& address, const ReplicationStats&)> on_fetched;
};

class OnDemand {
 public:
  // One release being fetched (or fetched).
  struct Fetch {
    std::string digest;
    cairn::v1::Manifest manifest;  // verified against this node's trust root
    std::atomic<bool> done{false};
    // Once done: how it ended (OK: committed here).
    absl::Status status() const;
    // Runs `fn` with the outcome once the fetch ends (at once if it has).
    void OnDone(std::function<void(const absl::Status&)> fn);
    void Finish(absl::Status s);

   private:
    mutable absl::Mutex mu_;
    absl::Status status_ ABSL_GUARDED_BY(mu_);
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    std::vector<std::function<void(const absl::Status&)>> waiters_ ABSL_GUARDED_BY(mu_);
  };

  OnDemand(Repository* repo, OnDemandConfig config);
  ~OnDemand();  // Stop()
  // Cancels fetches in progress (what arrived is kept; their waiters hear
  // Cancelled) and joins them. Idempotent; Begin fails after it.
  void Stop();
  // A graceful stop's first half: new fetches are refused (Unavailable), the
  // ones in progress go on, so downloads waiting on them can finish.
  void Close() { closed_ = true; }
  // Waits until no fetch is in progress, or the deadline; true if none is.
  bool WaitIdle(absl::Time deadline);
  OnDemand(const OnDemand&) = delete;
  OnDemand& operator=(const OnDemand&) = delete;

  // Starts, or joins, the fetch of the release of `name` that `ref` names at
  // an upstream: a tag, a version, "@sha256:..." or a 40-hex commit id made
  // from a manifest digest. Returns once the manifest is verified (the chunks
  // follow in the background). NotFound when no upstream has it or the
  // policy refuses it. Blocks on upstream round trips: not for I/O threads.
  // `hops`: how many nodes fetching on demand the request already passed
  // (0 from a client); past kMaxHops the node answers from what it holds.
  absl::StatusOr<std::shared_ptr<Fetch>> Begin(const std::string& name, const std::string& ref,
                                               const std::string& first_path = "", int hops = 0);
  static constexpr int kMaxHops = 3;
  // A held release served a chunk that failed its hash (the store dropped
  // it): fetches what the release now lacks from upstream, in the
  // background. Errors are logged and returned (no upstream could start
  // it). Not for I/O threads.
  absl::Status Repair(const std::string& name, const std::string& digest);

  uint64_t in_flight() const { return in_flight_.load(); }
  uint64_t fetched() const { return fetched_.load(); }
  uint64_t failed() const { return failed_.load(); }

 private:
  absl::StatusOr<std::shared_ptr<Fetch>> Start(const std::string& name, const std::string& ref,
                                               const std::string& first_path, bool repair,
                                               int hops = 0);
  absl::StatusOr<cairn::v1::ResolveResponse> ResolveAt(Upstream& up, const std::string& name,
                                                       const std::string& ref);
  Repository* repo_;
  const OnDemandConfig config_;
  Cancellation cancel_;
  std::atomic<bool> closed_{false};
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Fetch>> running_ ABSL_GUARDED_BY(mu_);
  std::list<std::pair<std::thread, std::shared_ptr<Fetch>>> threads_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> in_flight_{0}, fetched_{0}, failed_{0};
};

}  // namespace cairn::node
