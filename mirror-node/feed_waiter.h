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

namespace cairn::node {

// Thread-safe. `repo` must outlive it.
class FeedWaiter {
 public:
  static constexpr size_t kMaxWaiters = 4096;
  explicit FeedWaiter(Repository* repo) : repo_(repo) {}
  ~FeedWaiter() { Stop(); }
  FeedWaiter(const FeedWaiter&) = delete;
  FeedWaiter& operator=(const FeedWaiter&) = delete;

  // Parks the call when nothing follows req->after() and there is room, and
  // returns its reactor (ctx->DefaultReactor()), finished later from the
  // waiter thread. nullptr (ctx untouched) when the caller should answer at
  // once. Reads the feed head without waiting for a commit in progress.
  grpc::ServerUnaryReactor* Park(grpc::CallbackServerContext* ctx,
                                 const cairn::v1::FeedRequest* req, cairn::v1::FeedResponse* resp);
  // Answers every parked call now and refuses new ones. Idempotent.
  void Stop();
  size_t parked() const;

 private:
  struct Waiter {
    grpc::ServerUnaryReactor* reactor;
    grpc::CallbackServerContext* ctx;
    const cairn::v1::FeedRequest* req;
    cairn::v1::FeedResponse* resp;
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
