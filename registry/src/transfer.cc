#include "cairn/transfer.h"

#include <algorithm>

namespace cairn {

ChunkSink RateCapped(ChunkSink next, uint64_t bytes_per_second, Clock* clock,
                     Cancellation* cancel) {
  if (bytes_per_second == 0) return next;
  struct State {
    bool started = false;
    SteadyTime t0;
    uint64_t bytes = 0;
  };
  auto state = std::make_shared<State>();
  return [=, next = std::move(next)](const Digest& d, std::string_view b) -> absl::Status {
    if (!state->started) {
      state->started = true;
      state->t0 = clock->SteadyNow();
    }
    absl::Status st = next(d, b);
    if (!st.ok()) return st;
    state->bytes += b.size();
    // The stream's flow control then slows the sender to the same rate.
    const auto due =
        state->t0 + std::chrono::duration_cast<SteadyDuration>(std::chrono::duration<double>(
                        double(state->bytes) / double(bytes_per_second)));
    if (!clock->SleepUntil(due, cancel)) return absl::CancelledError("transfer cancelled");
    return absl::OkStatus();
  };
}

ChunkSink WithProgress(ChunkSink next, Clock* clock, SteadyDuration every,
                       std::function<void(uint64_t)> report) {
  struct State {
    SteadyTime last;
    uint64_t bytes = 0;
  };
  auto state = std::make_shared<State>();
  state->last = clock->SteadyNow();
  return [=, next = std::move(next)](const Digest& d, std::string_view b) -> absl::Status {
    absl::Status st = next(d, b);
    if (!st.ok()) return st;
    state->bytes += b.size();
    const SteadyTime now = clock->SteadyNow();
    if (now - state->last >= every) {
      state->last = now;
      report(state->bytes);
    }
    return absl::OkStatus();
  };
}

Backoff::Backoff(double initial_seconds, double max_seconds, uint64_t seed)
    : initial_(initial_seconds), max_(max_seconds), step_(initial_seconds), rng_(seed) {}

double Backoff::Next() {
  const double wait = step_ * std::uniform_real_distribution<double>(0.5, 1.5)(rng_);
  step_ = std::min(step_ * 2, max_);
  return wait;
}

}  // namespace cairn
