#include "cairn/clock.h"

#include <gtest/gtest.h>

#include <thread>

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

}  // namespace
}  // namespace cairn
