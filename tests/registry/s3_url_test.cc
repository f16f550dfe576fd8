// s3://BUCKET/PREFIX addresses (cairn-node serve --chunks): checked before
// anything reaches the network.
#include "cairn/s3_store.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

TEST(S3UrlTest, BucketsAndPrefixesAreChecked) {
  S3Options o;
  ASSERT_TRUE(ParseS3Url("s3://models/cairn", &o).ok());
  EXPECT_EQ(o.bucket, "models");
  EXPECT_EQ(o.prefix, "cairn/");
  ASSERT_TRUE(ParseS3Url("s3://models", &o).ok());
  EXPECT_EQ(o.prefix, "");
  for (const char* bad : {"models/x", "s3://Mo", "s3://a_b/x", "s3://ok-name/../x", "s3://m"}) {
    EXPECT_THAT(ParseS3Url(bad, &o), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

}  // namespace
}  // namespace cairn
