// The node's scrub on simulated time: the rate cap, a damaged chunk found and
// dropped, a pass that resumes where a restart cut it, a pass asked for now.
// Releases and repair from upstream are tested end to end (tests/gateway/scrub.sh).
#include "scrub.h"

#include <fcntl.h>
#include <unistd.h>

#include "cairn/repository.h"
#include "testing.h"

namespace cairn::node {
namespace {

using ::cairn::testing::TempDir;
using ::cairn::testing::TrustFixture;

class ScrubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    Open();
  }

  void Open() {
    RepositoryOptions o;
    o.pack.verify_on_read = false;  // only the scrub hashes what it reads
    repo_ = std::move(Repository::Open(dir_.path(), trust_.view, o, &clock_)).value();
  }

  // `n` chunks of `size` bytes; the first one's bytes are then flipped on disk.
  void PutChunks(int n, size_t size, bool damage_first) {
    for (int i = 0; i < n; ++i) {
      std::string c = testing::RandomBytes(size, 1000 + i);
      Digest d = Sha256Of(c);
      if (i == 0) first_ = d;
      ASSERT_TRUE(repo_->chunks()->Put(d, c).ok());
    }
    ASSERT_TRUE(repo_->chunks()->Sync().ok());
    if (!damage_first) return;
    const std::string pack = dir_ / "chunks/packs/pack-00000001.dat";
    int fd = ::open(pack.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char b = 0;
    ASSERT_EQ(::pread(fd, &b, 1, 40 + 100), 1);  // inside the first record's bytes
    b ^= 0x5a;
    ASSERT_EQ(::pwrite(fd, &b, 1, 40 + 100), 1);
    ::close(fd);
  }

  TempDir dir_;
  TrustFixture trust_;
  SimulatedClock clock_;
  std::unique_ptr<Repository> repo_;
  Digest first_{};
};

TEST_F(ScrubTest, APassHoldsItsRateCapAndDropsTheChunkThatFailsItsHash) {
  PutChunks(40, 64 << 10, /*damage_first=*/true);
  ScrubOptions o;
  o.bytes_per_second = 1 << 20;
  Scrubber s(repo_.get(), o);
  s.Start();  // never scrubbed: a pass starts at once
  double elapsed = 0;
  while (s.passes() == 0) {
    ASSERT_TRUE(clock_.AwaitSleepers(1)) << "the scrub neither slept nor finished";
    const auto st = s.Status();
    if (s.passes() > 0) break;
    // Never ahead of the cap by more than the chunk just read.
    EXPECT_LE(st.bytes_checked(), o.bytes_per_second * elapsed + (64 << 10)) << elapsed;
    clock_.AdvanceSeconds(0.1);
    elapsed += 0.1;
  }
  const auto st = s.Status();
  EXPECT_EQ(st.chunks_checked(), 40u);
  EXPECT_EQ(st.chunks_bad(), 1u);
  EXPECT_EQ(st.bytes_checked(), 39u * (64 << 10));
  // ... and not slower than the cap by more than 10 %.
  const double ideal = static_cast<double>(st.bytes_checked()) / o.bytes_per_second;
  EXPECT_GE(elapsed, ideal - 0.1);
  EXPECT_LE(elapsed, ideal * 1.1 + 0.1);
  EXPECT_GT(st.last_full_pass_unix(), 0);
  EXPECT_FALSE(st.running());
  // The bad chunk is no longer held: never served, stored again by the next Put.
  EXPECT_FALSE(*repo_->chunks()->Has(first_));
  s.Stop();
}

TEST_F(ScrubTest, APassCutByAStopResumesWhereItWasAndTheNextWaitsForItsInterval) {
  PutChunks(200, 4 << 10, /*damage_first=*/false);
  ScrubOptions o;
  o.bytes_per_second = 100 << 10;  // 8 s of simulated time for the pass
  o.interval_seconds = 86400;
  {
    Scrubber s(repo_.get(), o);
    s.Start();
    while (s.Status().chunks_checked() < 140) {
      ASSERT_TRUE(clock_.AwaitSleepers(1));
      clock_.AdvanceSeconds(0.5);
    }
    ASSERT_TRUE(clock_.AwaitSleepers(1));
    s.Stop();
    EXPECT_EQ(s.passes(), 0u);
  }
  repo_.reset();
  Open();  // a restart
  Scrubber s(repo_.get(), o);
  s.Start();
  while (s.passes() == 0) {
    ASSERT_TRUE(clock_.AwaitSleepers(1));
    if (s.passes() > 0) break;
    clock_.AdvanceSeconds(0.5);
  }
  // The place is kept every 64 chunks (as the first 63 bits of the last
  // digest): 200 - 128 are left, plus the one the place names.
  EXPECT_LE(s.Status().chunks_checked(), 73u);
  EXPECT_GT(s.Status().chunks_checked(), 0u);
  // The next pass waits for the interval ...
  const uint64_t resumed = s.Status().chunks_checked();
  ASSERT_TRUE(clock_.AwaitSleepers(1));
  clock_.AdvanceSeconds(3600);
  ASSERT_TRUE(clock_.AwaitSleepers(1));
  EXPECT_EQ(s.Status().chunks_checked(), resumed);
  EXPECT_EQ(s.passes(), 1u);
  EXPECT_FALSE(s.Status().running());
  // ... unless one is asked for now: a whole pass, from the first chunk.
  const uint64_t before = s.Status().chunks_checked();
  s.RunNow();
  while (s.passes() == 1) {
    ASSERT_TRUE(clock_.AwaitSleepers(1));
    if (s.passes() > 1) break;
    clock_.AdvanceSeconds(0.5);
  }
  EXPECT_EQ(s.Status().chunks_checked() - before, 200u);
  s.Stop();
}

TEST_F(ScrubTest, WithoutARateOnlyThePassesAskedForRun) {
  PutChunks(10, 4 << 10, /*damage_first=*/true);
  ScrubOptions o;
  o.bytes_per_second = 0;
  Scrubber s(repo_.get(), o);
  s.Start();
  ASSERT_TRUE(clock_.AwaitSleepers(1));
  clock_.AdvanceSeconds(30 * 86400);
  ASSERT_TRUE(clock_.AwaitSleepers(1));
  EXPECT_EQ(s.passes(), 0u);
  s.RunNow();  // unpaced
  ASSERT_TRUE(testing::WaitUntil([&] { return s.passes() == 1; }));
  EXPECT_EQ(s.Status().chunks_checked(), 10u);
  EXPECT_EQ(s.Status().chunks_bad(), 1u);
  s.Stop();
}

}  // namespace
}  // namespace cairn::node
