// One behaviour for every ChunkStore: pack files, BlobDB, and the S3 store
// on a real Ceph radosgw (tests/s3/store.sh starts one and sets
// CAIRN_S3_*; without it the S3 cases are skipped, and that script fails
// when the cluster cannot start). Then what only the S3 store has: several
// frontends on one bucket, damage in the bucket, refused credentials.
#include <openssl/rand.h>

#include <functional>
#include <map>

#include "cairn/hash.h"
#include "cairn/s3_store.h"
#include "cairn/store.h"
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
  o.pack_bytes = 1 << 20;  // several packs in a test
  return o;
}

// Opens (or reopens) the store of one kind at one place.
using Opener = std::function<absl::StatusOr<std::unique_ptr<ChunkStore>>()>;

class ConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string kind = GetParam();
    if (kind == "pack") {
      open_ = [d = dir_ / "pack"] { return OpenPackChunkStore(d, {}); };
    } else if (kind == "blob") {
      open_ = [d = dir_ / "blob"] { return OpenBlobChunkStore(d); };
    } else {
      if (!HaveS3()) GTEST_SKIP() << "no S3 endpoint (run tests/s3/store.sh)";
      open_ = [b = RandomName()] { return OpenS3ChunkStore(TestS3(b)); };
    }
    auto s = open_();
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  void Reopen() {
    store_.reset();
    auto s = open_();
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  testing::TempDir dir_;
  Opener open_;
  std::unique_ptr<ChunkStore> store_;
};

TEST_P(ConformanceTest, StoredChunksComeBackExactAndSurviveAReopen) {
  std::map<Digest, std::string> chunks;
  for (int i = 0; i < 60; ++i) {
    std::string c = testing::RandomBytes(1000 + i * 997, 100 + i);  // 1 KB to 60 KB
    chunks[Sha256Of(c)] = c;
  }
  for (const auto& [d, c] : chunks) ASSERT_TRUE(store_->Put(d, c).ok());
  for (const auto& [d, c] : chunks) {
    std::string got;
    ASSERT_TRUE(store_->Get(d, &got).ok());
    EXPECT_TRUE(got == c);
    EXPECT_TRUE(*store_->Has(d));
  }
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  for (const auto& [d, c] : chunks) {
    std::string got;
    ASSERT_TRUE(store_->Get(d, &got).ok()) << DigestName(d);
    EXPECT_TRUE(got == c);
  }
  // Listing: every digest once, in byte order, page by page (where the
  // store can list at all).
  std::vector<Digest> all, page;
  if (absl::IsUnimplemented(store_->List(nullptr, 1, &page))) return;
  const Digest* after = nullptr;
  do {
    ASSERT_TRUE(store_->List(after, 7, &page).ok());
    all.insert(all.end(), page.begin(), page.end());
    if (!page.empty()) after = &all.back();
  } while (page.size() == 7);
  std::vector<Digest> want;
  for (const auto& [d, c] : chunks) want.push_back(d);
  EXPECT_EQ(all, want);
}

TEST_P(ConformanceTest, WrongBytesAreRefusedAndAbsentChunksAreNotFound) {
  const std::string c = testing::RandomBytes(5000, 1);
  const Digest other = Sha256Of("something else");
  EXPECT_THAT(store_->Put(other, c), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(*store_->Has(other));
  std::string got;
  EXPECT_THAT(store_->Get(other, &got), StatusIs(absl::StatusCode::kNotFound));
  // Storing a chunk twice is one chunk.
  ASSERT_TRUE(store_->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(store_->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(store_->Flush().ok());
  std::vector<Digest> all;
  absl::Status listed = store_->List(nullptr, 100, &all);
  if (!absl::IsUnimplemented(listed)) {
    ASSERT_TRUE(listed.ok()) << listed;
    EXPECT_EQ(all, std::vector<Digest>{Sha256Of(c)});
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, ConformanceTest, ::testing::Values("pack", "blob", "s3"),
                         [](const auto& info) { return info.param; });

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
