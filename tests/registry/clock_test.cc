#include "cairn/clock.h"

#include <gtest/gtest.h>

#include <thread>

#include "cairn/transfer.h"
#include "testing.h"

namespace cairn {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(SimulatedClockTest, SleepersWakeOnlyWhenTimeIsAdvancedPastTheirDeadline) {
  SimulatedClock clock(1000);
  const SteadyTime t0 = clock.SteadyNow();
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    EXPECT_TRUE(clock.SleepUntil(t0 + seconds(10), nullptr));
    woke = true;
  });
  ASSERT_TRUE(clock.AwaitSleepers(1));
  clock.Advance(seconds(9));
  EXPECT_EQ(clock.sleepers(), 1);  // still asleep at t0 + 9 s
  EXPECT_FALSE(woke);
  clock.Advance(seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(clock.NowUnix(), 1010);
}

TEST(SimulatedClockTest, CancellationEndsASleepAtOnce) {
  SimulatedClock clock;
  Cancellation cancel;
  std::thread sleeper(
      [&] { EXPECT_FALSE(clock.SleepUntil(clock.SteadyNow() + std::chrono::hours(1), &cancel)); });
  ASSERT_TRUE(clock.AwaitSleepers(1));
  cancel.Cancel();
  sleeper.join();
  EXPECT_FALSE(clock.SleepFor(seconds(1), &cancel));  // cancelled stays cancelled
}

TEST(RealClockTest, CancellationEndsASleepWellBeforeItsDeadline) {
  Cancellation cancel;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread canceller([&] { cancel.Cancel(); });
  EXPECT_FALSE(Clock::Real()->SleepFor(seconds(30), &cancel));
  canceller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(5));
}

TEST(CancellationTest, CallbacksRunOnceAndNotAfterRemoval) {
  Cancellation c;
  int a = 0, b = 0;
  c.AddCallback([&] { ++a; });
  int id = c.AddCallback([&] { ++b; });
  c.RemoveCallback(id);
  c.Cancel();
  c.Cancel();
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 0);
  int late = 0;
  c.AddCallback([&] { ++late; });  // already cancelled: runs at once
  EXPECT_EQ(late, 1);
}

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
