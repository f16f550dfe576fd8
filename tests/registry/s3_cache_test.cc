// The S3 store's read cache on local disk (registry/src/s3_cache.h): bounded
// by its limit whatever is inserted, re-hashed on every hit (a damaged file
// is a miss, never a wrong byte), and read back after a restart, up to the
// first damaged record.
#include "s3_cache.h"

#include <filesystem>
#include <fstream>

#include "cairn/hash.h"
#include "testing.h"

namespace cairn {
namespace {

uint64_t DiskBytes(const std::string& dir) {
  uint64_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.file_size();
  return n;
}

TEST(ChunkCacheTest, HitsAreExactAndTheLimitHolds) {
  testing::TempDir dir;
  const uint64_t limit = 8 << 20;  // segments of 1 MiB
  auto cache = ChunkCache::Open(dir.path() + "/c", limit);
  ASSERT_TRUE(cache.ok()) << cache.status();
  std::vector<std::string> chunks;
  for (int i = 0; i < 200; ++i) {
    chunks.push_back(testing::RandomBytes(100000, 500 + i));
    (*cache)->Insert(Sha256Of(chunks.back()), chunks.back());
    ASSERT_LE(DiskBytes(dir.path() + "/c"), limit + (1 << 20) + 200000) << "after " << i;
  }
  // The newest are there and exact; the oldest went with their segments.
  std::string got;
  for (int i = 190; i < 200; ++i) {
    ASSERT_TRUE((*cache)->Lookup(Sha256Of(chunks[i]), &got)) << i;
    EXPECT_TRUE(got == chunks[i]);
  }
  EXPECT_FALSE((*cache)->Lookup(Sha256Of(chunks[0]), &got));
  const auto st = (*cache)->stats();
  EXPECT_EQ(st.hits, 10u);
  EXPECT_EQ(st.misses, 1u);
  EXPECT_LE(st.bytes, limit + (1 << 20) + 200000);
}

TEST(ChunkCacheTest, DamageIsAMissAndARestartKeepsWhatIsIntact) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/c";
  const std::string a = testing::RandomBytes(50000, 1), b = testing::RandomBytes(60000, 2),
                    c = testing::RandomBytes(70000, 3);
  {
    auto cache = ChunkCache::Open(path, 64 << 20);
    ASSERT_TRUE(cache.ok());
    for (const auto* x : {&a, &b, &c}) (*cache)->Insert(Sha256Of(*x), *x);
  }
  std::string seg;
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    if (e.file_size() > 0) seg = e.path().string();
  }
  ASSERT_FALSE(seg.empty());
  {
    // One byte of a's bytes flipped; the file cut inside c's record.
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40 + 1000);
    f.put('\x7f' ^ a[1000]);
  }
  std::filesystem::resize_file(seg, 40 + 50000 + 40 + 60000 + 40 + 100);
  auto cache = ChunkCache::Open(path, 64 << 20);
  ASSERT_TRUE(cache.ok()) << cache.status();
  std::string got = "x";
  EXPECT_FALSE((*cache)->Lookup(Sha256Of(a), &got)) << "damaged bytes were handed out";
  EXPECT_TRUE(got.empty());
  ASSERT_TRUE((*cache)->Lookup(Sha256Of(b), &got));
  EXPECT_TRUE(got == b);
  EXPECT_FALSE((*cache)->Lookup(Sha256Of(c), &got));
  // What failed is inserted again and then served.
  (*cache)->Insert(Sha256Of(a), a);
  ASSERT_TRUE((*cache)->Lookup(Sha256Of(a), &got));
  EXPECT_TRUE(got == a);
}

TEST(ChunkCacheTest, AFileInThePlaceOfTheFolderIsRefused) {
  testing::TempDir dir;
  std::ofstream(dir.path() + "/f") << "x";
  auto cache = ChunkCache::Open(dir.path() + "/f", 1 << 20);
  EXPECT_THAT(cache.status(), testing::StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace cairn
