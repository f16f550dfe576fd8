// What garbage collection needs from the pack store: chunks listed with their
// store time, removal that frees space at once, and compaction of packs that
// are mostly removed records, while reads go on.
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "cairn/crc32c.h"
#include "cairn/store.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

uint64_t DiskBytes(const std::string& packs) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(packs)) {
    struct stat st;
    if (::stat(e.path().c_str(), &st) == 0) total += uint64_t(st.st_blocks) * 512;
  }
  return total;
}

size_t PackFiles(const std::string& packs) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(packs)) ++n;
  return n;
}

class PackStoreGcTest : public ::testing::Test {
 protected:
  std::unique_ptr<ChunkStore> Open(bool punch_holes = true) {
    PackStoreOptions o;
    o.buffer_bytes = 256 << 10;
    o.pack_bytes = 1 << 20;
    o.punch_holes = punch_holes;
    o.clock = &clock_;
    return std::move(OpenPackChunkStore(dir_ / "s", o)).value();
  }
  // n chunks of 100 KB, synced.
  std::vector<std::string> Fill(ChunkStore* s, int n, int seed) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(testing::RandomBytes(100000, seed * 1000 + i));
      EXPECT_TRUE(s->Put(Sha256Of(out.back()), out.back()).ok());
    }
    EXPECT_TRUE(s->Sync().ok());
    return out;
  }
  testing::TempDir dir_;
  SimulatedClock clock_;
};

TEST_F(PackStoreGcTest, ListStoredCarriesEachChunksStoreTime) {
  auto s = Open();
  auto a = Fill(s.get(), 1, 1);
  const int64_t t0 = clock_.NowUnix();
  clock_.Advance(std::chrono::hours(30));
  auto b = Fill(s.get(), 1, 2);
  std::vector<StoredChunk> listed;
  ASSERT_TRUE(s->ListStored(nullptr, 10, &listed).ok());
  ASSERT_EQ(listed.size(), 2u);
  for (const StoredChunk& c : listed) {
    EXPECT_EQ(c.length, 100000u);
    EXPECT_EQ(c.stored_unix, c.digest == Sha256Of(a[0]) ? t0 : t0 + 30 * 3600);
  }
}

TEST_F(PackStoreGcTest, RemovedChunksAreGoneAndTheirSpaceIsFreed) {
  auto s = Open();
  auto chunks = Fill(s.get(), 40, 3);
  const uint64_t before = DiskBytes(dir_ / "s/packs");
  std::vector<Digest> doomed;
  for (int i = 0; i < 20; ++i) doomed.push_back(Sha256Of(chunks[i]));
  auto removed = s->Remove(doomed);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 20u * 100000);
  std::string out;
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(*s->Has(Sha256Of(chunks[i])), i >= 20);
    if (i < 20)
      EXPECT_THAT(s->Get(Sha256Of(chunks[i]), &out), StatusIs(absl::StatusCode::kNotFound));
  }
  // Removing again removes nothing.
  EXPECT_EQ(*s->Remove(doomed), 0u);
  // The holes gave back (nearly) all of it: partial blocks at record edges stay.
  const uint64_t after = DiskBytes(dir_ / "s/packs");
  EXPECT_LT(after, before - 19u * 100000) << before << " -> " << after;
  // After a reopen: still gone, the rest still whole, and a removed chunk
  // can be stored again.
  s.reset();
  s = Open();
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(*s->Has(Sha256Of(chunks[i])), i >= 20);
    if (i >= 20) ASSERT_TRUE(s->Check(Sha256Of(chunks[i])).ok());
  }
  ASSERT_TRUE(s->Put(Sha256Of(chunks[0]), chunks[0]).ok());
  ASSERT_TRUE(s->Get(Sha256Of(chunks[0]), &out).ok());
  EXPECT_EQ(out, chunks[0]);
}

TEST_F(PackStoreGcTest, RemoveSkipsChunksNotYetSynced) {
  auto s = Open();
  std::string c = testing::RandomBytes(1000, 4);
  ASSERT_TRUE(s->Put(Sha256Of(c), c).ok());
  EXPECT_EQ(*s->Remove({Sha256Of(c)}), 0u);
  EXPECT_TRUE(*s->Has(Sha256Of(c)));
}

TEST_F(PackStoreGcTest, CompactionRewritesMostlyDeadPacksAndKeepsEveryLiveChunk) {
  auto s = Open(/*punch_holes=*/false);
  auto chunks = Fill(s.get(), 60, 5);  // about 6 packs of 1 MiB
  const size_t files_before = PackFiles(dir_ / "s/packs");
  ASSERT_GE(files_before, 5u);
  // Three chunks in four removed: no pack keeps half of its bytes live.
  std::vector<Digest> doomed;
  for (int i = 0; i < 60; ++i) {
    if (i % 4 != 0) doomed.push_back(Sha256Of(chunks[i]));
  }
  ASSERT_TRUE(s->Remove(doomed).ok());
  const uint64_t disk_before = DiskBytes(dir_ / "s/packs");
  // Reads go on while it runs.
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    std::string out;
    while (!done) {
      for (int i = 0; i < 60; i += 4) {
        if (!s->Get(Sha256Of(chunks[i]), &out).ok() || out != chunks[i]) ++bad;
      }
    }
  });
  auto r = s->Compact(0.5, nullptr);
  done = true;
  reader.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GE(r->packs_rewritten, files_before - 2);
  EXPECT_EQ(r->bytes_moved % 100000, 0u);
  EXPECT_GT(r->bytes_freed, 0u);
  const uint64_t disk_after = DiskBytes(dir_ / "s/packs");
  EXPECT_LT(disk_after, disk_before / 2) << disk_before << " -> " << disk_after;
  EXPECT_EQ(r->files, PackFiles(dir_ / "s/packs"));
  EXPECT_LT(r->files, files_before);
  // It converges: the pack that was being appended to when it began may be
  // rewritten next time (moved chunks filled it), then nothing is.
  EXPECT_LE(s->Compact(0.5, nullptr)->packs_rewritten, 1u);
  EXPECT_EQ(s->Compact(0.5, nullptr)->packs_rewritten, 0u);
  s.reset();
  s = Open(false);
  for (int i = 0; i < 60; ++i) {
    EXPECT_EQ(*s->Has(Sha256Of(chunks[i])), i % 4 == 0) << i;
    if (i % 4 == 0) ASSERT_TRUE(s->Check(Sha256Of(chunks[i])).ok()) << i;
    // Moved chunks keep their CRC-32C (the gateway checks reads with it).
    if (i % 4 == 0) {
      auto e = s->Locate(Sha256Of(chunks[i]));
      ASSERT_TRUE(e.ok()) << e.status();
      EXPECT_TRUE(e->has_crc32c);
      EXPECT_EQ(e->crc32c, Crc32c(chunks[i])) << i;
    }
  }
}

TEST_F(PackStoreGcTest, CompactionLeavesPacksThatAreMostlyLive) {
  auto s = Open(false);
  auto chunks = Fill(s.get(), 30, 6);
  ASSERT_TRUE(s->Remove({Sha256Of(chunks[0])}).ok());
  auto r = s->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->packs_rewritten, 0u);
  EXPECT_EQ(r->live_bytes, 29u * (100000 + 40));
}

TEST_F(PackStoreGcTest, CompactionDropsARottenChunkInsteadOfCarryingItOver) {
  auto s = Open(false);
  auto chunks = Fill(s.get(), 30, 7);
  std::vector<Digest> doomed;
  for (int i = 1; i < 10; ++i) doomed.push_back(Sha256Of(chunks[i]));
  ASSERT_TRUE(s->Remove(doomed).ok());
  s.reset();
  // Chunk 0 sits at the start of the first pack: flip one of its bytes.
  std::string pack = dir_ / "s/packs/pack-00000001.dat";
  std::string bytes = testing::ReadFile(pack);
  bytes[100] ^= 1;
  testing::WriteFile(pack, bytes);
  s = Open(false);
  auto r = s->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->packs_rewritten, 1u);
  EXPECT_FALSE(*s->Has(Sha256Of(chunks[0])));
}

}  // namespace
}  // namespace cairn
