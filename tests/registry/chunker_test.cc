#include "cairn/chunker.h"

#include <fcntl.h>
#include <unistd.h>

#include "testing.h"

namespace cairn {
namespace {

std::vector<ChunkInfo> ChunkString(const std::string& data, const ChunkerParams& p,
                                   testing::TempDir& dir, Digest* whole = nullptr) {
  std::string path = dir / "f";
  testing::WriteFile(path, data);
  int fd = ::open(path.c_str(), O_RDONLY);
  std::vector<ChunkInfo> out;
  Digest d;
  uint64_t size = 0;
  absl::Status st = ChunkFd(
      fd, p,
      [&](const ChunkInfo& c, std::string_view bytes) {
        EXPECT_EQ(Sha256Of(bytes), c.digest);
        out.push_back(c);
        return absl::OkStatus();
      },
      &d, &size);
  ::close(fd);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(size, data.size());
  EXPECT_EQ(d, Sha256Of(data));
  if (whole) *whole = d;
  return out;
}

TEST(ChunkerTest, ChunksCoverFileWithinBounds) {
  testing::TempDir dir;
  ChunkerParams p;
  p.tensor_boundaries = false;
  std::string data = testing::RandomBytes(9 << 20, 1);
  auto chunks = ChunkString(data, p, dir);
  uint64_t off = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].offset, off);
    EXPECT_LE(chunks[i].length, p.max_size);
    if (i + 1 < chunks.size()) {
      EXPECT_GE(chunks[i].length, p.min_size);
    }
    off += chunks[i].length;
  }
  EXPECT_EQ(off, data.size());
  // Average within a factor of two of the target.
  double avg = double(data.size()) / chunks.size();
  EXPECT_GT(avg, p.avg_size / 2.0);
  EXPECT_LT(avg, p.avg_size * 2.0);
}

TEST(ChunkerTest, DeterministicAndShiftResistant) {
  testing::TempDir dir;
  ChunkerParams p;
  p.tensor_boundaries = false;
  std::string data = testing::RandomBytes(4 << 20, 2);
  auto a = ChunkString(data, p, dir);
  auto b = ChunkString(data, p, dir);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].digest, b[i].digest);
  // Insert bytes near the start: all but the first few chunks survive.
  std::string shifted = data.substr(0, 1000) + "inserted bytes" + data.substr(1000);
  auto c = ChunkString(shifted, p, dir);
  std::set<Digest> before;
  for (auto& x : a) before.insert(x.digest);
  size_t same = 0;
  for (auto& x : c) same += before.count(x.digest);
  EXPECT_GE(same, a.size() - 3);
}

TEST(ChunkerTest, SmallAndEmptyFiles) {
  testing::TempDir dir;
  ChunkerParams p;
  EXPECT_TRUE(ChunkString("", p, dir).empty());
  auto one = ChunkString("tiny", p, dir);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].length, 4u);
}

TEST(ChunkerTest, CutsAtSafetensorsTensorBoundaries) {
  testing::TempDir dir;
  std::string file = testing::MakeSafetensors({1 << 20, 300000, 2 << 20}, 3);
  auto bounds = SafetensorsBoundaries(file, file.size());
  ASSERT_EQ(bounds.size(), 4u);  // header end + 3 tensor ends (starts coincide)
  ChunkerParams p;
  auto chunks = ChunkString(file, p, dir);
  std::set<uint64_t> cuts;
  for (auto& c : chunks) cuts.insert(c.offset + c.length);
  for (uint64_t b : bounds) {
    if (b > p.min_size) {
      EXPECT_TRUE(cuts.count(b)) << "no cut at tensor boundary " << b;
    }
  }
}

TEST(ChunkerTest, InPlaceTensorEditChangesFewChunks) {
  testing::TempDir dir;
  std::vector<size_t> sizes(40, 512 << 10);
  std::string base = testing::MakeSafetensors(sizes, 4);
  std::string derived = base;
  uint64_t changed = testing::MutateTensors(&derived, 0.10, 5);
  ChunkerParams p;
  auto a = ChunkString(base, p, dir);
  auto b = ChunkString(derived, p, dir);
  std::set<Digest> have;
  for (auto& c : a) have.insert(c.digest);
  uint64_t new_bytes = 0;
  for (auto& c : b) {
    if (!have.count(c.digest)) new_bytes += c.length;
  }
  // With boundary cuts, only the changed tensors' bytes are new.
  EXPECT_LE(new_bytes, changed * 102 / 100 + 4096);
}

TEST(SafetensorsBoundariesTest, HostileHeadersFallBackToNothing) {
  EXPECT_TRUE(SafetensorsBoundaries("", 0).empty());
  std::string huge_len(8, '\xff');
  EXPECT_TRUE(SafetensorsBoundaries(huge_len + "{}", 100).empty());
  std::string n = std::string("\x05\0\0\0\0\0\0\0", 8);
  EXPECT_TRUE(SafetensorsBoundaries(n + "{\"a\":", 100).empty());
  std::string hdr = R"({"t":{"data_offsets":[0,99999999]}})";
  uint64_t len = hdr.size();
  std::string f(reinterpret_cast<char*>(&len), 8);
  f += hdr;
  auto b = SafetensorsBoundaries(f, f.size() + 10);
  for (uint64_t x : b) EXPECT_LE(x, f.size() + 10);  // out-of-file offsets dropped
}

}  // namespace
}  // namespace cairn
