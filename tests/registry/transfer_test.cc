// The transfer decorators on simulated time: the rate cap and backoff.
#include "cairn/transfer.h"

#include <gtest/gtest.h>

#include <thread>

#include "cairn/clock.h"
#include "testing.h"

namespace cairn {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// The rate cap on simulated time: after each chunk the transfer waits until
// the bytes so far fit the cap, exactly.
TEST(RateCappedTest, HoldsTheAverageRateExactlyOnSimulatedTime) {
  SimulatedClock clock;
  const SteadyTime t0 = clock.SteadyNow();
  std::vector<double> at;  // seconds since t0 at which each chunk was stored
  ChunkSink store = [&](const Digest&, std::string_view) {
    at.push_back(std::chrono::duration<double>(clock.SteadyNow() - t0).count());
    return absl::OkStatus();
  };
  ChunkSink capped = RateCapped(store, /*bytes_per_second=*/100000, &clock, nullptr);
  const std::string chunk(50000, 'x');
  std::thread transfer([&] {
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(capped(Digest{}, chunk).ok());
  });
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(clock.AwaitSleepers(1));
    clock.Advance(milliseconds(500));  // 50 kB at 100 kB/s
  }
  transfer.join();
  ASSERT_EQ(at.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(at[i], 0.5 * i);
  EXPECT_EQ(clock.SteadyNow() - t0, seconds(2));  // 200 kB at 100 kB/s
}

TEST(RateCappedTest, ACancelledTransferStopsInsteadOfWaitingOutTheCap) {
  SimulatedClock clock;
  Cancellation cancel;
  ChunkSink capped = RateCapped([](const Digest&, std::string_view) { return absl::OkStatus(); },
                                1000, &clock, &cancel);
  std::thread canceller([&] {
    clock.AwaitSleepers(1);
    cancel.Cancel();
  });
  // 1 MB at 1 kB/s would wait 1000 s of (simulated) time.
  EXPECT_TRUE(absl::IsCancelled(capped(Digest{}, std::string(1000000, 'x'))));
  canceller.join();
}

TEST(BackoffTest, DoublesWithJitterUpToTheMaximumAndResets) {
  Backoff b(1, 8, /*seed=*/42);
  double expect_step = 1;
  for (int i = 0; i < 6; ++i) {
    EXPECT_DOUBLE_EQ(b.step(), expect_step);
    double w = b.Next();
    EXPECT_GE(w, 0.5 * expect_step);
    EXPECT_LT(w, 1.5 * expect_step);
    expect_step = std::min(expect_step * 2, 8.0);
  }
  b.Reset();
  EXPECT_DOUBLE_EQ(b.step(), 1);
}

}  // namespace
}  // namespace cairn
