// The conformance suite every ChunkStore passes. A backend's test adds one
// line naming a factory type with
//   static absl::StatusOr<std::unique_ptr<ChunkStore>> Open(const std::string& dir);
// as in
//   INSTANTIATE_TYPED_TEST_SUITE_P(Pack, ChunkStoreConformance, PackFactory);
// Include this header from one test file per test executable.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "cairn/store.h"
#include "testing.h"

namespace cairn::testing {

template <typename F>
class ChunkStoreConformance : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = F::Open(dir_ / "store");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  TempDir dir_;
  std::unique_ptr<ChunkStore> store_;
};

TYPED_TEST_SUITE_P(ChunkStoreConformance);

TYPED_TEST_P(ChunkStoreConformance, PutGetHas) {
  std::string data = RandomBytes(100000, 1);
  Digest d = Sha256Of(data);
  EXPECT_FALSE(*this->store_->Has(d));
  ASSERT_TRUE(this->store_->Put(d, data).ok());
  EXPECT_TRUE(*this->store_->Has(d));
  std::string out;
  ASSERT_TRUE(this->store_->Get(d, &out).ok());
  EXPECT_EQ(out, data);
  // Idempotent.
  EXPECT_TRUE(this->store_->Put(d, data).ok());
}

TYPED_TEST_P(ChunkStoreConformance, PutRejectsDigestMismatch) {
  std::string data = RandomBytes(5000, 2);
  Digest wrong = Sha256Of("something else");
  EXPECT_THAT(this->store_->Put(wrong, data), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(*this->store_->Has(wrong));
}

TYPED_TEST_P(ChunkStoreConformance, GetMissingIsNotFound) {
  std::string out;
  EXPECT_THAT(this->store_->Get(Sha256Of("nope"), &out), StatusIs(absl::StatusCode::kNotFound));
}

TYPED_TEST_P(ChunkStoreConformance, ManyChunksSurviveSyncAndReopen) {
  std::vector<std::string> chunks;
  for (int i = 0; i < 200; ++i) chunks.push_back(RandomBytes(1000 + i * 97, 100 + i));
  for (auto& c : chunks) ASSERT_TRUE(this->store_->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(this->store_->Sync().ok());
  this->Reopen();
  for (auto& c : chunks) {
    std::string out;
    ASSERT_TRUE(this->store_->Get(Sha256Of(c), &out).ok());
    EXPECT_EQ(out, c);
  }
}

TYPED_TEST_P(ChunkStoreConformance, FlushedChunksSurviveAKilledProcess) {
  std::string a = RandomBytes(70000, 3), b = RandomBytes(70000, 4);
  this->store_.reset();  // the child owns the store
  pid_t pid = ::fork();
  if (pid == 0) {
    auto s = TypeParam::Open(this->dir_ / "store");
    if (!s.ok() || !(*s)->Put(Sha256Of(a), a).ok() || !(*s)->Flush().ok()) _exit(1);
    if (!(*s)->Put(Sha256Of(b), b).ok()) _exit(1);
    _exit(0);  // no destructors: a crash right after
  }
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_EQ(WEXITSTATUS(status), 0);
  this->Reopen();
  std::string out;
  ASSERT_TRUE(this->store_->Get(Sha256Of(a), &out).ok());
  EXPECT_EQ(out, a);
  // b may or may not have survived, but if present it must be whole.
  if (*this->store_->Has(Sha256Of(b))) {
    ASSERT_TRUE(this->store_->Get(Sha256Of(b), &out).ok());
    EXPECT_EQ(out, b);
  }
}

TYPED_TEST_P(ChunkStoreConformance, ConcurrentPutsAndGets) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 50; ++i) {
        std::string c = RandomBytes(3000, t * 1000 + i);
        EXPECT_TRUE(this->store_->Put(Sha256Of(c), c).ok());
        std::string out;
        EXPECT_TRUE(this->store_->Get(Sha256Of(c), &out).ok());
        EXPECT_EQ(out, c);
      }
    });
  }
  for (auto& th : threads) th.join();
}

REGISTER_TYPED_TEST_SUITE_P(ChunkStoreConformance, PutGetHas, PutRejectsDigestMismatch,
                            GetMissingIsNotFound, ManyChunksSurviveSyncAndReopen,
                            FlushedChunksSurviveAKilledProcess, ConcurrentPutsAndGets);

}  // namespace cairn::testing
