#include "cairn/hash.h"

#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(DigestName(Sha256Of("")),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(DigestName(Sha256Of("abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  std::string data = testing::RandomBytes(1 << 20, 7);
  Sha256 h;
  for (size_t i = 0; i < data.size(); i += 4099) h.Update(std::string_view(data).substr(i, 4099));
  EXPECT_EQ(h.Finish(), Sha256Of(data));
  // Finish resets.
  h.Update("abc");
  EXPECT_EQ(h.Finish(), Sha256Of("abc"));
}

TEST(DigestNameTest, RoundTrips) {
  Digest d = Sha256Of("x");
  auto parsed = ParseDigestName(DigestName(d));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, d);
}

TEST(DigestNameTest, RejectsMalformed) {
  EXPECT_THAT(ParseDigestName("sha256:abc"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseDigestName("md5:" + std::string(64, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseDigestName("sha256:" + std::string(64, 'A')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DigestFromBytes("short"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST(ParallelSha256Test, EqualsSerialHashAndReusesBuffers) {
  std::string data = testing::RandomBytes(9 << 20, 11);
  ParallelSha256 p;
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    std::string b = p.TakeBuffer();
    b.assign(data, off, 1 << 20);
    p.Update(std::move(b));
  }
  EXPECT_EQ(p.Finish(), Sha256Of(data));
  // Finish resets: a second stream hashes independently.
  p.Update("abc");
  EXPECT_EQ(p.Finish(), Sha256Of("abc"));
  EXPECT_EQ(p.Finish(), Sha256Of(""));
}

}  // namespace
}  // namespace cairn
