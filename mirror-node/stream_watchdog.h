// Times out streaming calls that make no progress: a client that opens a
// chunk stream and then neither sends the next request nor reads the answer
// holds a per-address stream slot (and up to a few MiB of built answers)
// until this cancels the call. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"

namespace cairn::node {

class StreamWatchdog {
 public:
  // Checks deadlines every `tick` of `clock` time.
  explicit StreamWatchdog(Clock* clock, SteadyDuration tick = std::chrono::seconds(1));
  ~StreamWatchdog();
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  // Registers a stream: `expire` (which must not block; it cancels the
  // call) runs once if the stream's deadline passes. Returns the stream's id.
  uint64_t Watch(std::function<void()> expire);
  // Sets the deadline to now + `limit` (progress was made).
  void Arm(uint64_t id, SteadyDuration limit);
  // No deadline until the next Arm (the node, not the client, is working).
  void Disarm(uint64_t id);
  // Removes the stream. Once it returns `expire` neither runs nor is running
  // (unless Forget is called from inside `expire` itself).
  void Forget(uint64_t id);
  // Streams cancelled so far (status, tests).
  uint64_t expired() const;
  Clock* clock() const { return clock_; }

 private:
  void Run();
  struct Entry {
    std::function<void()> expire;
    SteadyTime deadline = SteadyTime::max();
  };
  Clock* const clock_;
  const SteadyDuration tick_;
  Cancellation stop_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> streams_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t firing_ ABSL_GUARDED_BY(mu_) = 0;  // the id whose expire() runs now
  std::thread::id firing_thread_ ABSL_GUARDED_BY(mu_);
  uint64_t expired_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace cairn::node
