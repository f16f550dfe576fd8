// The node's garbage collection schedule on simulated time: a pass an
// interval after the node's first start, the next an interval after it
// ended, and the schedule kept across a restart.
#include "gc_loop.h"

#include "cairn/repository.h"
#include "testing.h"

namespace cairn::node {
namespace {

using ::cairn::testing::TempDir;
using ::cairn::testing::TrustFixture;

class GcLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    Open();
  }
  void Open() {
    repo_.reset();
    RepositoryOptions o;
    o.pack.clock = &clock_;
    repo_ = std::move(Repository::Open(dir_.path(), trust_.view, o, &clock_)).value();
  }
  // An orphan chunk (no release names it), stored now.
  void Orphan(int seed) {
    std::string c = testing::RandomBytes(1000, seed);
    ASSERT_TRUE(repo_->chunks_for_reads()->Put(Sha256Of(c), c).ok());
    ASSERT_TRUE(repo_->chunks()->Sync().ok());
  }
  // Advances time in steps until `loop` ended `passes` passes.
  void RunUntil(GcLoop* loop, uint64_t passes, std::chrono::seconds step) {
    for (int i = 0; i < 1000 && loop->Status().passes() < passes; ++i) {
      ASSERT_TRUE(clock_.AwaitSleepers(1));
      clock_.Advance(step);
    }
    while (loop->Status().passes() < passes || loop->Status().running()) {
      ASSERT_TRUE(clock_.AwaitSleepers(1));  // the loop sleeps again once the pass ended
    }
  }

  TempDir dir_;
  TrustFixture trust_;
  SimulatedClock clock_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(GcLoopTest, PassesComeAnIntervalApartAndTheScheduleSurvivesARestart) {
  GcLoopOptions o;
  o.interval_seconds = 24 * 3600;
  o.gc.grace_seconds = 3600;
  const int64_t start = clock_.NowUnix();
  int64_t ended = 0;
  Orphan(1);
  {
    GcLoop loop(repo_.get(), o);
    loop.Start();
    // Nothing for the first 23 hours.
    for (int h = 0; h < 23; ++h) {
      ASSERT_TRUE(clock_.AwaitSleepers(1));
      clock_.Advance(std::chrono::hours(1));
    }
    EXPECT_EQ(loop.Status().passes(), 0u);
    RunUntil(&loop, 1, std::chrono::hours(1));
    const auto st = loop.Status();
    EXPECT_EQ(st.chunks_removed(), 1u);
    EXPECT_GE(st.last_pass_unix(), start + 24 * 3600);
    EXPECT_LE(st.last_pass_unix(), start + 25 * 3600);
    ended = st.last_pass_unix();
    loop.Stop();
  }
  // A restart 20 hours later: the next pass is still due 24 hours after the
  // last one ended, not 24 hours after this start.
  clock_.Advance(std::chrono::hours(20));
  Open();
  GcLoop loop(repo_.get(), o);
  EXPECT_EQ(loop.Status().last_pass_unix(), ended);
  loop.Start();
  RunUntil(&loop, 1, std::chrono::hours(1));
  EXPECT_GE(loop.Status().last_pass_unix(), ended + 24 * 3600);
  EXPECT_LE(loop.Status().last_pass_unix(), ended + 26 * 3600);
}

TEST_F(GcLoopTest, ADryPassChangesNothingAndIsNotRecorded) {
  GcLoopOptions o;
  o.gc.grace_seconds = 0;
  Orphan(2);
  GcLoop loop(repo_.get(), o);
  auto r = loop.RunPass(/*dry_run=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->chunks_removed, 1u);
  EXPECT_EQ(loop.Status().passes(), 0u);
  r = loop.RunPass(/*dry_run=*/false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->chunks_removed, 1u);
  EXPECT_EQ(loop.Status().passes(), 1u);
  EXPECT_EQ(loop.Status().chunks_removed_total(), 1u);
}

}  // namespace
}  // namespace cairn::node
