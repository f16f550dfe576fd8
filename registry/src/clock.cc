#include "cairn/clock.h"

#include <algorithm>

namespace cairn {

void Cancellation::Cancel() {
  std::vector<std::pair<int, std::function<void()>>> cbs;
  {
    absl::MutexLock l(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    running_ = true;
    cbs = callbacks_;
  }
  for (auto& [id, fn] : cbs) fn();
  absl::MutexLock l(&mu_);
  running_ = false;
  callbacks_.clear();
}

bool Cancellation::cancelled() const {
  absl::MutexLock l(&mu_);
  return cancelled_;
}

int Cancellation::AddCallback(std::function<void()> fn) {
  {
    absl::MutexLock l(&mu_);
    if (!cancelled_) {
      callbacks_.emplace_back(++next_id_, std::move(fn));
      return next_id_;
    }
  }
  fn();
  return 0;
}

void Cancellation::RemoveCallback(int id) {
  absl::MutexLock l(&mu_);
  // A callback running now may touch its owner: wait until it returned.
  mu_.Await(absl::Condition(
      +[](bool* running) { return !*running; }, &running_));
  std::erase_if(callbacks_, [id](const auto& p) { return p.first == id; });
}

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

int64_t RealClock::NowUnix() { return SystemNowUnix(); }

SteadyTime RealClock::SteadyNow() { return std::chrono::steady_clock::now(); }

bool RealClock::SleepUntil(SteadyTime deadline, Cancellation* cancel) {
  if (cancel == nullptr) {
    for (auto now = SteadyNow(); now < deadline; now = SteadyNow()) {
      absl::SleepFor(absl::FromChrono(deadline - now));
    }
    return true;
  }
  absl::MutexLock l(&cancel->mu_);
  for (;;) {
    if (cancel->cancelled_) return false;
    auto now = SteadyNow();
    if (now >= deadline) return true;
    // Woken by Cancel()'s unlock; re-checked at least every 100 ms.
    cancel->mu_.AwaitWithTimeout(
        absl::Condition(&cancel->cancelled_),
        std::min(absl::FromChrono(deadline - now), absl::Milliseconds(100)));
  }
}

SimulatedClock::SimulatedClock(int64_t unix_seconds) : unix_ns_(unix_seconds * 1000000000) {}

int64_t SimulatedClock::NowUnix() {
  absl::MutexLock l(&mu_);
  return unix_ns_ / 1000000000;
}

SteadyTime SimulatedClock::SteadyNow() {
  absl::MutexLock l(&mu_);
  return SteadyTime(std::chrono::duration_cast<SteadyDuration>(steady_));
}

bool SimulatedClock::SleepUntil(SteadyTime deadline, Cancellation* cancel) {
  int cb = 0;
  if (cancel != nullptr) {
    // A cancellation wakes the sleepers (they re-check their own flag).
    cb = cancel->AddCallback([this] {
      absl::MutexLock l(&mu_);
      ++generation_;
    });
  }
  bool reached;
  {
    absl::MutexLock l(&mu_);
    auto me = deadlines_.insert(deadline);
    for (;;) {
      if (cancel != nullptr && cancel->cancelled()) {
        reached = false;
        break;
      }
      if (SteadyTime(std::chrono::duration_cast<SteadyDuration>(steady_)) >= deadline) {
        reached = true;
        break;
      }
      const uint64_t gen = generation_;
      const auto at = steady_;
      struct Arg {
        SimulatedClock* c;
        uint64_t gen;
        std::chrono::nanoseconds at;
      } arg{this, gen, at};
      mu_.Await(absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return a->c->generation_ != a->gen || a->c->steady_ != a->at;
          },
          &arg));
    }
    deadlines_.erase(me);
  }
  if (cancel != nullptr) cancel->RemoveCallback(cb);
  return reached;
}

void SimulatedClock::Advance(SteadyDuration d) {
  absl::MutexLock l(&mu_);
  steady_ += std::chrono::duration_cast<std::chrono::nanoseconds>(d);
  unix_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

void SimulatedClock::SetUnix(int64_t unix_seconds) {
  absl::MutexLock l(&mu_);
  unix_ns_ = unix_seconds * 1000000000;
}

int SimulatedClock::PendingLocked() const {
  const SteadyTime now(std::chrono::duration_cast<SteadyDuration>(steady_));
  return static_cast<int>(std::distance(deadlines_.upper_bound(now), deadlines_.end()));
}

int SimulatedClock::sleepers() const {
  absl::MutexLock l(&mu_);
  return PendingLocked();
}

bool SimulatedClock::AwaitSleepers(int n, absl::Duration timeout) const {
  struct Arg {
    const SimulatedClock* c;
    int n;
  } arg{this, n};
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->c->PendingLocked() >= a->n; },
          &arg),
      timeout);
}

int64_t SystemNowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace cairn
