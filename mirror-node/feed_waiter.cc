#include "feed_waiter.h"

#include <algorithm>

#include "cairn/transport/grpc_status.h"

namespace cairn::node {

grpc::ServerUnaryReactor* FeedWaiter::Park(grpc::CallbackServerContext* ctx,
                                           const cairn::v1::FeedRequest* req,
                                           cairn::v1::FeedResponse* resp) {
  absl::MutexLock l(&mu_);
  if (stopping_ || repo_->FeedHead() != req->after() || waiters_.size() >= kMaxWaiters) {
    return nullptr;
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  waiters_.push_back(
      Waiter{reactor, ctx, req, resp,
             absl::Now() + absl::Milliseconds(std::min<uint32_t>(req->wait_ms(), 30000))});
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  return reactor;
}

void FeedWaiter::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

size_t FeedWaiter::parked() const {
  absl::MutexLock l(&mu_);
  return waiters_.size();
}

void FeedWaiter::Loop() {
  uint64_t head = repo_->FeedHead();
  for (;;) {
    std::vector<Waiter> due;
    bool stopping;
    {
      absl::MutexLock l(&mu_);
      stopping = stopping_;
      const absl::Time now = absl::Now();
      for (size_t i = 0; i < waiters_.size();) {
        Waiter& w = waiters_[i];
        if (stopping || w.req->after() < head || w.deadline <= now || w.ctx->IsCancelled()) {
          due.push_back(w);
          waiters_[i] = waiters_.back();
          waiters_.pop_back();
        } else {
          ++i;
        }
      }
    }
    for (const Waiter& w : due) {
      if (w.ctx->IsCancelled()) {
        w.reactor->Finish(grpc::Status::CANCELLED);
        continue;
      }
      auto r = repo_->Feed(w.req->after(), w.req->max_events());
      if (r.ok()) *w.resp = std::move(*r);
      w.reactor->Finish(ToGrpc(r.status()));
    }
    if (stopping) return;
    // Wakes on the next commit (the feed's own lock, never held across I/O)
    // or after 200 ms, for deadlines and cancellations.
    head = repo_->WaitForFeed(head, absl::Milliseconds(200));
  }
}

}  // namespace cairn::node
