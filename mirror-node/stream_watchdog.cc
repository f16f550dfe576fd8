#include "stream_watchdog.h"

#include <utility>
#include <vector>

namespace cairn::node {

StreamWatchdog::StreamWatchdog(Clock* clock, SteadyDuration tick)
    : clock_(clock), tick_(tick), thread_([this] { Run(); }) {}

StreamWatchdog::~StreamWatchdog() {
  stop_.Cancel();
  thread_.join();
}

uint64_t StreamWatchdog::Watch(std::function<void()> expire) {
  absl::MutexLock l(&mu_);
  uint64_t id = next_id_++;
  streams_[id].expire = std::move(expire);
  return id;
}

void StreamWatchdog::Arm(uint64_t id, SteadyDuration limit) {
  SteadyTime deadline = clock_->SteadyNow() + limit;
  absl::MutexLock l(&mu_);
  if (auto it = streams_.find(id); it != streams_.end()) it->second.deadline = deadline;
}

void StreamWatchdog::Disarm(uint64_t id) {
  absl::MutexLock l(&mu_);
  if (auto it = streams_.find(id); it != streams_.end()) it->second.deadline = SteadyTime::max();
}

void StreamWatchdog::Forget(uint64_t id) {
  absl::MutexLock l(&mu_);
  streams_.erase(id);
  if (firing_thread_ == std::this_thread::get_id()) return;
  std::pair<const uint64_t*, uint64_t> arg(&firing_, id);
  mu_.Await(absl::Condition(
      +[](std::pair<const uint64_t*, uint64_t>* p) { return *p->first != p->second; }, &arg));
}

uint64_t StreamWatchdog::expired() const {
  absl::MutexLock l(&mu_);
  return expired_;
}

void StreamWatchdog::Run() {
  while (clock_->SleepFor(tick_, &stop_)) {
    SteadyTime now = clock_->SteadyNow();
    std::vector<uint64_t> due;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, e] : streams_) {
        if (e.deadline <= now) due.push_back(id);
      }
    }
    for (uint64_t id : due) {
      std::function<void()> expire;
      {
        absl::MutexLock l(&mu_);
        auto it = streams_.find(id);
        // Forgotten, or progress made, since the scan.
        if (it == streams_.end() || it->second.deadline > now) continue;
        expire = std::move(it->second.expire);
        streams_.erase(it);
        firing_ = id;
        firing_thread_ = std::this_thread::get_id();
        ++expired_;
      }
      expire();
      absl::MutexLock l(&mu_);
      firing_ = 0;
      firing_thread_ = std::thread::id();
    }
  }
}

}  // namespace cairn::node
