#include "feed_waiter.h"

#include <algorithm>

#include "cairn/transport/grpc_status.h"

namespace cairn::node {

bool FeedWaiter::Park(UnaryCall<cairn::v1::FeedRequest, cairn::v1::FeedResponse>* call) {
  const cairn::v1::FeedRequest& req = call->req();
  absl::MutexLock l(&mu_);
  if (stopping_ || repo_->FeedHead() != req.after() || waiters_.size() >= kMaxWaiters) {
    return false;
  }
  waiters_.push_back(
      Waiter{call, absl::Now() + absl::Milliseconds(std::min<uint32_t>(req.wait_ms(), 30000))});
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  return true;
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
        if (stopping || w.call->req().after() < head || w.deadline <= now ||
            w.call->ctx()->IsCancelled()) {
          due.push_back(w);
          waiters_[i] = waiters_.back();
          waiters_.pop_back();
        } else {
          ++i;
        }
      }
    }
    // Chunk lists in the answers of one wake-up share a budget: thousands of
    // parked followers answered at once must not each hold a megabyte.
    size_t list_budget = kListBytesPerWake;
    for (const Waiter& w : due) {
      if (w.call->ctx()->IsCancelled()) {
        w.call->Answer(grpc::Status::CANCELLED);
        continue;
      }
      cairn::v1::FeedRequest req = w.call->req();
      req.set_chunk_list_bytes(static_cast<uint32_t>(
          std::min<size_t>({req.chunk_list_bytes(), Repository::kFeedListBytes, list_budget})));
      auto r = repo_->Feed(req);
      if (r.ok()) {
        for (const auto& list : r->chunk_lists()) list_budget -= std::min(list_budget, list.size());
      }
      if (r.ok()) *w.call->resp() = std::move(*r);
      w.call->Answer(ToGrpc(r.status()));
    }
    if (stopping) return;
    // Wakes on the next commit (the feed's own lock, never held across I/O)
    // or after 200 ms, for deadlines and cancellations.
    head = repo_->WaitForFeed(head, absl::Milliseconds(200));
  }
}

}  // namespace cairn::node
