// Time, as a seam: everything that stamps, expires, paces or waits reads it
// through a Clock, so tests run backoff, stalls, rate caps and expiry on
// simulated time instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <set>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace cairn {

using SteadyTime = std::chrono::steady_clock::time_point;
using SteadyDuration = std::chrono::steady_clock::duration;

// A flag that stops waits: set once (Cancel), never cleared. Thread-safe.
class Cancellation {
 public:
  void Cancel();
  bool cancelled() const;
  // Calls `fn` when Cancel() runs (at once when it already has). `fn` must
  // not block; it runs on the cancelling thread, under no lock of ours.
  // Returns an id for RemoveCallback.
  int AddCallback(std::function<void()> fn);
  // After it returns the callback neither runs nor is running (it waits for
  // a Cancel() calling it; never call it from inside a callback).
  void RemoveCallback(int id);

 private:
  friend class RealClock;
  friend class SimulatedClock;
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // Cancel() is calling callbacks
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<int, std::function<void()>>> callbacks_ ABSL_GUARDED_BY(mu_);
};

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, unix seconds (stamps, expiry, the UTC quota day).
  virtual int64_t NowUnix() = 0;
  // Monotonic time (rates, stalls, backoff, deadlines).
  virtual SteadyTime SteadyNow() = 0;
  // Waits until SteadyNow() >= deadline. Returns false at once when `cancel`
  // (may be null) is or becomes cancelled, true when the deadline passed.
  virtual bool SleepUntil(SteadyTime deadline, Cancellation* cancel) = 0;

  bool SleepFor(SteadyDuration d, Cancellation* cancel) {
    return SleepUntil(SteadyNow() + d, cancel);
  }
  // The process-wide real clock (never null, never destroyed).
  static Clock* Real();
};

// The system clocks.
class RealClock final : public Clock {
 public:
  int64_t NowUnix() override;
  SteadyTime SteadyNow() override;
  bool SleepUntil(SteadyTime deadline, Cancellation* cancel) override;
};

// Time that moves only when a test says so. Sleepers wake when Advance()
// carries the time past their deadline. Thread-safe.
class SimulatedClock final : public Clock {
 public:
  // Starts at `unix_seconds` wall time (default: a fixed 2026-01-01).
  explicit SimulatedClock(int64_t unix_seconds = 1767225600);
  int64_t NowUnix() override;
  SteadyTime SteadyNow() override;
  bool SleepUntil(SteadyTime deadline, Cancellation* cancel) override;

  // Moves both clocks forward by `d` and wakes the sleepers now due.
  void Advance(SteadyDuration d);
  void AdvanceSeconds(double s) {
    Advance(std::chrono::duration_cast<SteadyDuration>(std::chrono::duration<double>(s)));
  }
  // Sets the wall clock only (a jump, as NTP may make).
  void SetUnix(int64_t unix_seconds);
  // Threads blocked in SleepUntil whose deadline is still ahead (one that
  // Advance() just woke no longer counts, even before it has run).
  int sleepers() const;
  // Blocks (for real) until at least `n` threads sleep in SleepUntil, or
  // `timeout` real time passes; true when they do. For tests that advance
  // time only once the code under test is waiting.
  bool AwaitSleepers(int n, absl::Duration timeout = absl::Seconds(30)) const;

 private:
  mutable absl::Mutex mu_;
  std::chrono::nanoseconds steady_ ABSL_GUARDED_BY(mu_){std::chrono::hours(1)};
  int64_t unix_ns_ ABSL_GUARDED_BY(mu_);
  int PendingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::multiset<SteadyTime> deadlines_ ABSL_GUARDED_BY(mu_);  // of the sleepers
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;              // bumped by cancellations
};

// Real wall-clock unix seconds (the CLI's stamps; a node uses its Clock).
int64_t SystemNowUnix();

}  // namespace cairn
