// One conformance suite for every ChunkStore, plus MetaStore and crash tests.
#include "cairn/store.h"

#include <sys/wait.h>
#include <unistd.h>

#include "fault_stores.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

struct PackFactory {
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Open(const std::string& dir) {
    PackStoreOptions o;
    o.buffer_bytes = 256 << 10;
    o.pack_bytes = 1 << 20;  // small packs: exercise rolling
    return OpenPackChunkStore(dir, o);
  }
};
struct BlobFactory {
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Open(const std::string& dir) {
    return OpenBlobChunkStore(dir);
  }
};

template <typename F>
class ChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = F::Open(dir_ / "store");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  testing::TempDir dir_;
  std::unique_ptr<ChunkStore> store_;
};

using Factories = ::testing::Types<PackFactory, BlobFactory>;
TYPED_TEST_SUITE(ChunkStoreTest, Factories);

TYPED_TEST(ChunkStoreTest, PutGetHas) {
  std::string data = testing::RandomBytes(100000, 1);
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

TYPED_TEST(ChunkStoreTest, PutRejectsDigestMismatch) {
  std::string data = testing::RandomBytes(5000, 2);
  Digest wrong = Sha256Of("something else");
  EXPECT_THAT(this->store_->Put(wrong, data), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(*this->store_->Has(wrong));
}

TYPED_TEST(ChunkStoreTest, GetMissingIsNotFound) {
  std::string out;
  EXPECT_THAT(this->store_->Get(Sha256Of("nope"), &out), StatusIs(absl::StatusCode::kNotFound));
}

TYPED_TEST(ChunkStoreTest, ManyChunksSurviveSyncAndReopen) {
  std::vector<std::string> chunks;
  for (int i = 0; i < 200; ++i) chunks.push_back(testing::RandomBytes(1000 + i * 97, 100 + i));
  for (auto& c : chunks) ASSERT_TRUE(this->store_->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(this->store_->Sync().ok());
  this->Reopen();
  for (auto& c : chunks) {
    std::string out;
    ASSERT_TRUE(this->store_->Get(Sha256Of(c), &out).ok());
    EXPECT_EQ(out, c);
  }
}

TYPED_TEST(ChunkStoreTest, FlushedChunksSurviveAKilledProcess) {
  std::string a = testing::RandomBytes(70000, 3), b = testing::RandomBytes(70000, 4);
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

TYPED_TEST(ChunkStoreTest, ConcurrentPutsAndGets) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 50; ++i) {
        std::string c = testing::RandomBytes(3000, t * 1000 + i);
        EXPECT_TRUE(this->store_->Put(Sha256Of(c), c).ok());
        std::string out;
        EXPECT_TRUE(this->store_->Get(Sha256Of(c), &out).ok());
        EXPECT_EQ(out, c);
      }
    });
  }
  for (auto& th : threads) th.join();
}

TEST(PackChunkStoreTest, SecondOpenOfSameDirectoryFails) {
  testing::TempDir dir;
  auto a = OpenPackChunkStore(dir / "s", {});
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(OpenPackChunkStore(dir / "s", {}), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(PackChunkStoreTest, CorruptPackBytesAreDataLossOnRead) {
  testing::TempDir dir;
  std::string c = testing::RandomBytes(50000, 9);
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    ASSERT_TRUE(s->Put(Sha256Of(c), c).ok());
    ASSERT_TRUE(s->Sync().ok());
  }
  // Flip a byte in the middle of the pack file.
  std::string pack = dir / "s/packs/pack-00000001.dat";
  std::string bytes = testing::ReadFile(pack);
  ASSERT_GT(bytes.size(), 30000u);
  bytes[30000] ^= 0xff;
  testing::WriteFile(pack, bytes);
  auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
  std::string out;
  EXPECT_THAT(s->Get(Sha256Of(c), &out), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(FaultInjectingChunkStoreTest, InjectsEnospcTornWritesAndCorruptReads) {
  testing::TempDir dir;
  auto base = std::move(OpenPackChunkStore(dir / "s", {})).value();
  testing::FaultInjectingChunkStore f(base.get());
  std::string c = testing::RandomBytes(10000, 5);
  Digest d = Sha256Of(c);
  f.FailPuts(1);
  EXPECT_THAT(f.Put(d, c), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(*f.Has(d));
  f.TearNextPut();
  EXPECT_THAT(f.Put(d, c), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(*f.Has(d));
  ASSERT_TRUE(f.Put(d, c).ok());
  f.CorruptReads(true);
  std::string out;
  ASSERT_TRUE(f.Get(d, &out).ok());
  EXPECT_NE(out, c);
}

TEST(MetaStoreTest, CommitIsAtomicAcrossTablesAndScanHonoursPrefix) {
  testing::TempDir dir;
  auto m = std::move(OpenRocksMetaStore(dir / "meta")).value();
  ASSERT_TRUE(m->Commit({{Table::kReleases,
                          std::string("a/b\0"
                                      "1",
                                      5),
                          "d1"},
                         {Table::kReleases,
                          std::string("a/c\0"
                                      "1",
                                      5),
                          "d2"},
                         {Table::kObjects, "d1", "bytes"}},
                        true)
                  .ok());
  EXPECT_EQ(*m->Get(Table::kObjects, "d1"), "bytes");
  EXPECT_THAT(m->Get(Table::kTags, "d1"), StatusIs(absl::StatusCode::kNotFound));
  std::vector<std::string> keys;
  ASSERT_TRUE(m->Scan(Table::kReleases, "a/b", [&](std::string_view k, std::string_view) {
                 keys.emplace_back(k);
                 return true;
               }).ok());
  EXPECT_EQ(keys.size(), 1u);
  ASSERT_TRUE(m->Commit({{Table::kObjects, "d1", std::nullopt}}, false).ok());
  EXPECT_THAT(m->Get(Table::kObjects, "d1"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(OpenRocksMetaStore(dir / "meta"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace cairn
