// The S3 chunk store against a real Ceph radosgw, run by tests/s3/store.sh
// (which starts one with deploy/ceph-local.sh and sets CAIRN_S3_*): the
// ChunkStore conformance suite every store passes, unchanged, then what only
// the S3 store has: several frontends on one bucket, damage in the bucket,
// refused credentials and an unreachable endpoint.
#include "cairn/s3_store.h"

#include <openssl/rand.h>

#include "cairn/hash.h"
#include "cairn/store.h"
#include "chunk_store_conformance.h"
#include "s3_client.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::string RandomName() {
  unsigned char b[6];
  RAND_bytes(b, sizeof(b));
  return "cairn-test-" + ToHex(b, sizeof(b));
}

bool HaveS3() { return std::getenv("CAIRN_S3_ENDPOINT") != nullptr; }

S3Options TestS3(const std::string& bucket) {
  S3Options o = S3OptionsFromEnvironment({});
  o.bucket = bucket;
  o.prefix = "chunks/";
  o.pack_bytes = 1 << 20;                           // several packs in a test
  o.index_dir = testing::FreshDir() + "/s3-index";  // each a new frontend
  return o;
}

}  // namespace

namespace testing {
// The suite's "directory" names the bucket: reopening it is a new frontend
// on the same bucket.
struct S3Factory {
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Open(const std::string& dir) {
    S3Options o = TestS3("cairn-" + DigestName(Sha256Of(dir)).substr(7, 20));
    o.index_dir = dir + "/s3-index";  // reopening: the same frontend again
    return OpenS3ChunkStore(o);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(S3, ChunkStoreConformance, S3Factory);
}  // namespace testing

namespace {

class S3StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveS3()) GTEST_SKIP() << "no S3 endpoint (run tests/s3/store.sh)";
  }
};

TEST_F(S3StoreTest, FrontendsOnOneBucketSeeWhatTheOthersFlushed) {
  const std::string bucket = RandomName();
  auto a = OpenS3ChunkStore(TestS3(bucket));
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string c1 = testing::RandomBytes(300000, 7), c2 = testing::RandomBytes(2000, 8);
  ASSERT_TRUE((*a)->Put(Sha256Of(c1), c1).ok());
  ASSERT_TRUE((*a)->Put(Sha256Of(c2), c2).ok());
  // Not flushed: a frontend starting now does not see them (no index object
  // names a pack that is not whole).
  auto early = OpenS3ChunkStore(TestS3(bucket));
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(*(*early)->Has(Sha256Of(c1)));
  ASSERT_TRUE((*a)->Flush().ok());
  auto b = OpenS3ChunkStore(TestS3(bucket));
  ASSERT_TRUE(b.ok());
  std::string got;
  ASSERT_TRUE((*b)->Get(Sha256Of(c1), &got).ok());
  EXPECT_TRUE(got == c1);
  // A chunk b already has through the bucket is not stored again by it.
  ASSERT_TRUE((*b)->Put(Sha256Of(c2), c2).ok());
  ASSERT_TRUE((*b)->Flush().ok());
  s3::Client raw(TestS3(bucket));
  auto packs = raw.List("chunks/packs/");
  ASSERT_TRUE(packs.ok());
  EXPECT_EQ(packs->size(), 1u) << "b wrote no pack of its own";
}

TEST_F(S3StoreTest, BytesDamagedInTheBucketAreNeverReturned) {
  const std::string bucket = RandomName();
  auto a = OpenS3ChunkStore(TestS3(bucket));
  ASSERT_TRUE(a.ok());
  const std::string c = testing::RandomBytes(100000, 9);
  ASSERT_TRUE((*a)->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE((*a)->Flush().ok());
  s3::Client raw(TestS3(bucket));
  auto packs = raw.List("chunks/packs/");
  ASSERT_TRUE(packs.ok() && packs->size() == 1);
  auto bytes = raw.Get((*packs)[0]);
  ASSERT_TRUE(bytes.ok());
  (*bytes)[50000] ^= 0x5a;
  ASSERT_TRUE(raw.Put((*packs)[0], *bytes).ok());
  std::string got;
  EXPECT_THAT((*a)->Get(Sha256Of(c), &got), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(S3StoreTest, RefusedCredentialsAndAnUnreachableEndpointAreNamed) {
  S3Options o = TestS3(RandomName());
  o.secret_key = "not-the-secret";
  auto refused = OpenS3ChunkStore(o);
  EXPECT_THAT(refused.status(), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(refused.status().message(), HasSubstr("CAIRN_S3_SECRET_KEY"));
  EXPECT_THAT(refused.status().message(), Not(HasSubstr("not-the-secret")));
  S3Options gone = TestS3(RandomName());
  gone.endpoint = "http://127.0.0.1:1";
  gone.max_attempts = 2;
  auto unreachable = OpenS3ChunkStore(gone);
  EXPECT_THAT(unreachable.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(unreachable.status().message(), HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace cairn
