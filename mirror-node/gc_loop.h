// The node's garbage collection schedule: a pass (Repository::CollectGarbage)
// every interval on a thread of its own, and the passes `cairn-node gc` asks
// for; what the last one did, for NodeInfo, /metrics and the status page.
#pragma once

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "cairn/repository.h"
#include "cairn/v1/service.pb.h"

namespace cairn::node {

struct GcLoopOptions {
  // From one pass's end to the next one's start; 0: no background passes.
  // Default: 24 hours.
  int64_t interval_seconds = 86400;
  // Over a shared chunk store (S3): how often the node answers the
  // collector's rounds (Repository::AnswerCollection); 0: never.
  int64_t answer_seconds = 0;
  GcOptions gc;  // dry_run is ignored: RunPass says
};

class GcLoop {
 public:
  // `repo` must outlive the loop; time runs on repo->clock().
  GcLoop(Repository* repo, GcLoopOptions opts);
  ~GcLoop();  // Stop()
  GcLoop(const GcLoop&) = delete;
  GcLoop& operator=(const GcLoop&) = delete;

  // Background passes come one interval after the last pass ended (kept in
  // the node state across restarts), the first one an interval after the
  // node's first start. Answers, on a thread of their own, every
  // answer_seconds.
  void Start();
  // Stops a pass in progress between batches and joins the thread.
  // Idempotent.
  void Stop();
  // One pass on the calling thread. FailedPrecondition while another runs.
  // A dry pass changes nothing, and is not recorded in Status().
  absl::StatusOr<GcReport> RunPass(bool dry_run);
  // Starts a pass on a thread of its own unless one is running (space to
  // free after an eviction), and one more two hours later when chunks a
  // client was told of had to stay; at most one every 10 minutes (later
  // calls wait for that, and calls while one waits or runs are folded into
  // it). Returns at once.
  void RunSoon();
  cairn::v1::GcStatus Status() const;

 private:
  void Loop();
  void AnswerLoop();

  Repository* const repo_;
  const GcLoopOptions opts_;
  Cancellation stop_;
  std::thread thread_;
  std::thread answers_;
  absl::Mutex soon_mu_;
  std::thread soon_ ABSL_GUARDED_BY(soon_mu_);
  std::atomic<bool> soon_running_{false};
  SteadyTime last_soon_{};  // when the last such pass started (its thread only)
  mutable absl::Mutex mu_;
  cairn::v1::GcStatus status_ ABSL_GUARDED_BY(mu_);
};

// "removed N chunks (B bytes); kept K in their grace period and T a client
// was told of; ..." for logs and the command's output.
std::string DescribeGc(const GcReport& r, bool dry_run);

}  // namespace cairn::node
