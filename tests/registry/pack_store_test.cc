// The pack store: the conformance suite, and what is its own (one opener at a
// time, corrupt pack bytes). Also the fault-injecting wrapper tests use.
#include <filesystem>

#include "cairn/store.h"
#include "chunk_store_conformance.h"
#include "fault_stores.h"
#include "testing.h"

namespace cairn::testing {

struct PackFactory {
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Open(const std::string& dir) {
    PackStoreOptions o;
    o.buffer_bytes = 256 << 10;
    o.pack_bytes = 1 << 20;  // small packs: exercise rolling
    return OpenPackChunkStore(dir, o);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Pack, ChunkStoreConformance, PackFactory);

}  // namespace cairn::testing

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

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
  // Issue 12 #9, #10: a chunk found bad is no longer held, so the next Put
  // (a re-publish, a replication, a fetch) stores a good copy.
  EXPECT_FALSE(*s->Has(Sha256Of(c)));
  ASSERT_TRUE(s->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(s->Get(Sha256Of(c), &out).ok());
  EXPECT_EQ(out, c);
}

// Issue 12 #23: every open (each pull, on the client cache) left an empty
// pack behind: 5 pulls, 2 -> 7 files.
TEST(PackChunkStoreTest, OpeningWithoutWritingLeavesNoNewPackFile) {
  testing::TempDir dir;
  auto count = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir / "s/packs")) n += e.exists();
    return n;
  };
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    ASSERT_TRUE(s->Put(Sha256Of("abc"), "abc", PutMode::kVerify).ok());
    ASSERT_TRUE(s->Sync().ok());
  }
  size_t after_write = count();
  for (int i = 0; i < 5; ++i) {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    std::string got;
    ASSERT_TRUE(s->Get(Sha256Of("abc"), &got).ok());
  }
  EXPECT_EQ(count(), after_write);
  // An empty pack left by a crash is reused, not added to.
  testing::WriteFile(dir / "s/packs/pack-00000009.dat", "");
  { auto s = std::move(OpenPackChunkStore(dir / "s", {})).value(); }
  EXPECT_EQ(count(), after_write);
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

}  // namespace
}  // namespace cairn
