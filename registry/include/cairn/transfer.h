// Policies around a chunk transfer, as decorators over a chunk sink: a rate
// cap, progress reports, and the retry backoff between attempts. The
// replicator composes them; none of them knows where chunks come from.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string_view>

#include "absl/status/status.h"
#include "cairn/clock.h"
#include "cairn/hash.h"

namespace cairn {

// Receives fetched chunks in order. An error stops the transfer.
using ChunkSink = std::function<absl::Status(const Digest&, std::string_view)>;

// Holds the average rate from the first chunk on to `bytes_per_second`: after
// each chunk, waits on `clock` until the bytes so far fit. The wait ends early
// with Cancelled when `cancel` (may be null) fires. 0: no cap.
ChunkSink RateCapped(ChunkSink next, uint64_t bytes_per_second, Clock* clock, Cancellation* cancel);

// Calls `report(bytes_so_far)` after a chunk when `every` has passed since the
// last report (and once before the first chunk, from the caller).
ChunkSink WithProgress(ChunkSink next, Clock* clock, SteadyDuration every,
                       std::function<void(uint64_t)> report);

// Exponential backoff with jitter: 1 s, 2 s, 4 s ... up to `max_seconds`, each
// drawn from [0.5, 1.5) of the step. Not thread-safe.
class Backoff {
 public:
  explicit Backoff(double initial_seconds = 1, double max_seconds = 60,
                   uint64_t seed = std::random_device{}());
  // The wait before the next attempt; doubles the step.
  double Next();
  // The step Next() will use (before jitter).
  double step() const { return step_; }
  void Reset() { step_ = initial_; }

 private:
  const double initial_, max_;
  double step_;
  std::mt19937_64 rng_;
};

}  // namespace cairn
