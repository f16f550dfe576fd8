// Long-polled Feed calls: a caught-up follower's call is parked here and
// answered by one waiter thread on the next commit, at its deadline, when the
// caller cancels, or at shutdown. No gRPC thread ever blocks on it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cairn/repository.h"
#include "cairn/v1/service.pb.h"
#include "unary_over_stream.h"

namespace cairn::node {

// Thread-safe. `repo` must outlive it.
class FeedWaiter {
 public:
  static constexpr size_t kMaxWaiters = 4096;
  // Chunk-list bytes all the answers of one wake-up may carry together
  // (each also at most Repository::kFeedListBytes); past it, answers carry
  // none and those followers ask for their lists as before.
  static constexpr size_t kListBytesPerWake = 16 << 20;
  explicit FeedWaiter(Repository* repo) : repo_(repo) {}
  ~FeedWaiter() { Stop(); }
  FeedWaiter(const FeedWaiter&) = delete;
  FeedWaiter& operator=(const FeedWaiter&) = delete;

  // Parks the call when nothing follows its `after` and there is room: it is
  // answered later from the waiter thread. False (call untouched) when the
  // caller should answer at once. Reads the feed head without waiting for a
  // commit in progress.
  bool Park(UnaryCall<cairn::v1::FeedRequest, cairn::v1::FeedResponse>* call);
  // Answers every parked call now and refuses new ones. Idempotent.
  void Stop();
  size_t parked() const;

 private:
  struct Waiter {
    UnaryCall<cairn::v1::FeedRequest, cairn::v1::FeedResponse>* call;
    absl::Time deadline;
  };
  void Loop();

  Repository* const repo_;
  mutable absl::Mutex mu_;
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // started by the first Park; joined by Stop
};

}  // namespace cairn::node
