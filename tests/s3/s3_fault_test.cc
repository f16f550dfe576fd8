// The S3 chunk store with faults injected between it and a real radosgw
// (tests/s3/fault_proxy.h): 503 answers, dropped connections, answers cut
// short, flipped bytes and a stalled store. No wrong byte is ever returned,
// nothing becomes visible to another frontend half-written, nothing
// buffered is lost, memory stays bounded, and errors say what failed.
#include <malloc.h>
#include <openssl/rand.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "cairn/hash.h"
#include "cairn/s3_store.h"
#include "fault_proxy.h"
#include "s3_client.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::FaultProxy;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;
using Fault = FaultProxy::Fault;

class S3FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* endpoint = std::getenv("CAIRN_S3_ENDPOINT");
    if (endpoint == nullptr) GTEST_SKIP() << "no S3 endpoint (run tests/s3/store.sh)";
    auto p = FaultProxy::Start(endpoint);
    ASSERT_TRUE(p.ok()) << p.status();
    proxy_ = std::move(*p);
    unsigned char b[6];
    RAND_bytes(b, sizeof(b));
    bucket_ = "cairn-fault-" + ToHex(b, sizeof(b));
  }

  // Options through the proxy (direct = false) or straight to radosgw.
  S3Options Options(bool direct = false) const {
    S3Options o = S3OptionsFromEnvironment({});
    if (!direct) o.endpoint = proxy_->endpoint();
    o.bucket = bucket_;
    o.prefix = "chunks/";
    o.pack_bytes = 1 << 20;
    o.max_attempts = 4;
    o.index_dir = testing::FreshDir() + "/s3-index";  // each a new frontend
    return o;
  }

  std::unique_ptr<ChunkStore> Open(const S3Options& o) {
    auto s = OpenS3ChunkStore(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::unique_ptr<FaultProxy> proxy_;
  std::string bucket_;
};

TEST_F(S3FaultTest, TransientFaultsAreRetriedAndReadsStayExact) {
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  std::vector<std::string> chunks;
  for (int i = 0; i < 4; ++i) chunks.push_back(testing::RandomBytes(200000, 100 + i));
  proxy_->Set({Fault::kUnavailable, "PUT", "/packs/", 2});
  for (const auto& c : chunks) ASSERT_TRUE(store->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_EQ(proxy_->faults(), 2);
  // Fresh frontends (nothing in memory, no read cache) read through each
  // fault in turn, and every read is the stored bytes.
  int i = 0;
  for (Fault f : {Fault::kDrop, Fault::kCut, Fault::kFlip, Fault::kUnavailable}) {
    auto reader = Open(Options());
    ASSERT_NE(reader, nullptr);
    const int before = proxy_->faults();
    proxy_->Set({f, "GET", "/packs/", 1});
    std::string got;
    ASSERT_TRUE(reader->Get(Sha256Of(chunks[i]), &got).ok()) << static_cast<int>(f);
    EXPECT_TRUE(got == chunks[i]);
    EXPECT_EQ(proxy_->faults(), before + 1) << "the fault was not injected";
    ++i;
  }
}

TEST_F(S3FaultTest, AFailedIndexWriteLeavesNothingVisibleAndLosesNothing) {
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  const std::string c = testing::RandomBytes(300000, 7);
  // The pack goes in; its index object never does.
  proxy_->Set({Fault::kUnavailable, "PUT", "/index/"});
  ASSERT_TRUE(store->Put(Sha256Of(c), c).ok());
  const absl::Status st = store->Flush();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(st.message(), HasSubstr("could not be written to the object store"));
  EXPECT_THAT(st.message(), HasSubstr("503"));
  // Another frontend finds no chunk of the pack (no index object names it).
  auto other = Open(Options(/*direct=*/true));
  ASSERT_NE(other, nullptr);
  EXPECT_FALSE(*other->Has(Sha256Of(c)));
  // This one still holds the chunk, and writes it once the store recovers.
  std::string got;
  ASSERT_TRUE(store->Get(Sha256Of(c), &got).ok());
  EXPECT_TRUE(got == c);
  proxy_->Clear();
  ASSERT_TRUE(store->Flush().ok());
  auto later = Open(Options(/*direct=*/true));
  ASSERT_NE(later, nullptr);
  ASSERT_TRUE(later->Get(Sha256Of(c), &got).ok());
  EXPECT_TRUE(got == c);
}

TEST_F(S3FaultTest, FlippedBytesAreNeverReturned) {
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  const std::string c = testing::RandomBytes(150000, 9);
  ASSERT_TRUE(store->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(store->Flush().ok());
  auto reader = Open(Options());
  ASSERT_NE(reader, nullptr);
  proxy_->Set({Fault::kFlip, "GET", "/packs/"});
  std::string got = "left over";
  const absl::Status st = reader->Get(Sha256Of(c), &got);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(st.message(), HasSubstr("does not match its digest"));
  EXPECT_TRUE(got.empty()) << "bytes that failed their digest were handed out";
  proxy_->Clear();
  ASSERT_TRUE(reader->Get(Sha256Of(c), &got).ok());
  EXPECT_TRUE(got == c);
}

TEST_F(S3FaultTest, AStalledStoreFailsWithinItsBound) {
  S3Options o = Options();
  o.timeout_seconds = 1;
  o.max_attempts = 2;
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  const std::string c = testing::RandomBytes(100000, 11);
  ASSERT_TRUE(store->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(store->Flush().ok());
  S3Options r = o;
  r.index_dir = testing::FreshDir() + "/s3-index";  // another frontend
  auto reader = Open(r);
  ASSERT_NE(reader, nullptr);
  proxy_->Set({Fault::kDelay, "GET", "/packs/", -1, 5000});
  const auto start = std::chrono::steady_clock::now();
  std::string got;
  const absl::Status st = reader->Get(Sha256Of(c), &got);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(st.message(), HasSubstr("2 attempts"));
  EXPECT_LT(took, 4.0) << "two attempts of 1 s and a backoff took " << took << " s";
  proxy_->Clear();
}

TEST_F(S3FaultTest, MemoryStaysBoundedWhileTheStoreRefusesWrites) {
  S3Options o = Options();
  o.max_attempts = 1;
  o.parallel_uploads = 1;
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  proxy_->Set({Fault::kUnavailable, "PUT", "/packs/"});
  // 1 MiB packs, one uploader: at most two sealed packs and the buffer
  // wait; the Put after them is refused, and says why.
  absl::Status refused;
  std::vector<std::string> kept;
  for (int i = 0; i < 40 && refused.ok(); ++i) {
    const std::string c = testing::RandomBytes(200000, 1000 + i);
    refused = store->Put(Sha256Of(c), c);
    if (refused.ok()) kept.push_back(c);
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(refused.message(), HasSubstr("the object store takes no writes"));
  EXPECT_LE(kept.size(), 17u) << "more than three packs' worth held in memory";
  proxy_->Clear();
  ASSERT_TRUE(store->Flush().ok());
  auto other = Open(Options(/*direct=*/true));
  ASSERT_NE(other, nullptr);
  std::string got;
  for (const auto& c : kept) {
    ASSERT_TRUE(other->Get(Sha256Of(c), &got).ok());
    EXPECT_TRUE(got == c);
  }
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

// Chunks read in the order they were stored cost one ranged GET per window
// of the pack (tests/s3 packs are 1 MiB), not one per chunk.
TEST_F(S3FaultTest, SequentialReadsTakeOneRequestPerWindow) {
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  std::vector<std::string> chunks;
  for (int i = 0; i < 64; ++i) {
    chunks.push_back(testing::RandomBytes(65536, 2000 + i));
    ASSERT_TRUE(store->Put(Sha256Of(chunks.back()), chunks.back()).ok());
  }
  ASSERT_TRUE(store->Flush().ok());
  auto reader = Open(Options());
  ASSERT_NE(reader, nullptr);
  const int before = proxy_->requests();
  std::string got;
  for (const auto& c : chunks) {
    ASSERT_TRUE(reader->Get(Sha256Of(c), &got).ok());
    ASSERT_TRUE(got == c);
  }
  EXPECT_LE(proxy_->requests() - before, 8) << "64 chunks in 4-5 packs";
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

// What someone who can write to the bucket can plant: an index object
// naming chunks at a pack of garbage (sorting first, so it is read first),
// and an index object too large to be one. Neither stands in for a chunk, hides
// a good copy, or stops a frontend.
TEST_F(S3FaultTest, PlantedIndexObjectsNeitherStandInForChunksNorHideGoodCopies) {
  const std::string good = testing::RandomBytes(100000, 31),
                    absent = testing::RandomBytes(90000, 32);
  auto a = Open(Options(/*direct=*/true));
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->Put(Sha256Of(good), good).ok());
  ASSERT_TRUE(a->Flush().ok());
  // Index entries for both chunks at a pack of random bytes.
  s3::Client raw(Options(/*direct=*/true));
  std::string index, pack = testing::RandomBytes(300000, 33);
  uint64_t offset = 40;
  for (const auto* c : {&good, &absent}) {
    const Digest d = Sha256Of(*c);
    index.append(reinterpret_cast<const char*>(d.data()), d.size());
    const uint32_t len = static_cast<uint32_t>(c->size());
    index.append(reinterpret_cast<const char*>(&offset), 8);
    index.append(reinterpret_cast<const char*>(&len), 4);
    offset += 40 + len;
  }
  ASSERT_TRUE(raw.Put("chunks/packs/0000000000000001", pack).ok());
  ASSERT_TRUE(raw.Put("chunks/index/0000000000000001", index).ok());
  ASSERT_TRUE(raw.Put("chunks/index/0000000000000002", std::string(17 << 20, 'x')).ok());

  std::vector<std::string> notices;
  S3Options o = Options(/*direct=*/true);
  o.log = [&](const std::string& line) { notices.push_back(line); };
  auto b = OpenS3ChunkStore(o);
  ASSERT_TRUE(b.ok()) << "a planted index object stopped the frontend: " << b.status();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_THAT(notices[0], HasSubstr("0000000000000002 skipped"));
  // The index says "held"; a publish asks HasIntact, which reads it back.
  EXPECT_TRUE(*(*b)->Has(Sha256Of(absent)));
  EXPECT_FALSE(*(*b)->HasIntact(Sha256Of(absent))) << "a planted entry counted as a stored chunk";
  ASSERT_TRUE((*b)->Put(Sha256Of(absent), absent).ok());
  ASSERT_TRUE((*b)->Flush().ok());
  // A frontend started now meets the planted places first, and reads the
  // good copies behind them.
  auto c = Open(Options(/*direct=*/true));
  ASSERT_NE(c, nullptr);
  std::string got;
  for (const auto* x : {&good, &absent}) {
    ASSERT_TRUE(c->Get(Sha256Of(*x), &got).ok());
    EXPECT_TRUE(got == *x);
    EXPECT_TRUE(*c->HasIntact(Sha256Of(*x)));
  }
}

}  // namespace
}  // namespace cairn

// The chunk index on local disk: a restart reads only what is new in the
// bucket, notices what left it, and a huge index costs disk, not memory.
namespace cairn {
namespace {

TEST_F(S3FaultTest, ARestartedFrontendReadsNoIndexObjectItReadBefore) {
  const S3Options a_opts = Options();  // one frontend: the same index folder each start
  const std::string c1 = testing::RandomBytes(200000, 41);
  {
    auto a = Open(a_opts);
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(a->Put(Sha256Of(c1), c1).ok());
    ASSERT_TRUE(a->Flush().ok());
  }
  // Every read of an index object now fails: a new frontend cannot start...
  proxy_->Set({Fault::kUnavailable, "GET", "/chunks/index/"});
  auto fresh = OpenS3ChunkStore(Options());
  EXPECT_FALSE(fresh.ok()) << "the fault did not reach a frontend that reads the index";
  // ...and `a`, restarted, needs none: its index is on its disk.
  auto a = Open(a_opts);
  ASSERT_NE(a, nullptr);
  std::string got;
  ASSERT_TRUE(a->Get(Sha256Of(c1), &got).ok());
  EXPECT_TRUE(got == c1);
  EXPECT_TRUE(*a->HasIntact(Sha256Of(c1)));
}

TEST_F(S3FaultTest, ChunksWhoseObjectsLeftTheBucketAreNotHeldAfterARestart) {
  S3Options o = Options(/*direct=*/true);
  const std::string c1 = testing::RandomBytes(200000, 43);
  {
    auto a = Open(o);
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(a->Put(Sha256Of(c1), c1).ok());
    ASSERT_TRUE(a->Flush().ok());
  }
  // The bucket loses them while the frontend is stopped (a lifecycle rule,
  // an operator's clean-up).
  s3::Client raw(o);
  for (const char* dir : {"chunks/index/", "chunks/packs/"}) {
    auto keys = raw.List(dir);
    ASSERT_TRUE(keys.ok() && !keys->empty());
    for (const auto& k : *keys) ASSERT_TRUE(raw.Delete(k).ok()) << k;
  }
  std::vector<std::string> notices;
  o.log = [&](const std::string& line) { notices.push_back(line); };
  auto a = Open(o);
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(*a->Has(Sha256Of(c1))) << "a publish would count on bytes stored nowhere";
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_THAT(notices[0], HasSubstr("gone from the bucket"));
}

TEST_F(S3FaultTest, APlantedIndexOfAMillionEntriesCostsBoundedMemory) {
  // 16 index objects of 65,536 entries each, naming chunks stored nowhere.
  // Held in memory (before the index went to disk) at ~150 bytes a chunk,
  // that was 150 MB more; on disk the growth is the index's bounded buffers
  // (two 16 MiB memtables, a 32 MiB block cache: 68 MiB measured for one
  // million entries, and 64 MiB of heap in use for three million against 58
  // for one).
  s3::Client raw(Options(/*direct=*/true));
  ASSERT_TRUE(raw.CreateBucket().ok());
  const std::string digests = testing::RandomBytes(32 << 20, 44);
  std::string index;
  for (uint64_t k = 0; k < 16; ++k) {
    index.clear();
    for (uint64_t i = 0; i < 65536; ++i) {
      index.append(digests, (k * 65536 + i) * 32, 32);
      const uint64_t offset = 40 + i * 1040;
      const uint32_t length = 1000;
      index.append(reinterpret_cast<const char*>(&offset), 8);
      index.append(reinterpret_cast<const char*>(&length), 4);
    }
    char name[17];
    std::snprintf(name, sizeof(name), "%016llx", static_cast<unsigned long long>(k + 16));
    ASSERT_TRUE(raw.Put(std::string("chunks/index/") + name, index).ok());
  }
  index = std::string();
  ::malloc_trim(0);
  const size_t before = testing::ResidentBytes();
  auto b = Open(Options(/*direct=*/true));
  ASSERT_NE(b, nullptr);
  // What the frontend holds, not what the allocator kept of the index
  // objects it read and freed.
  ::malloc_trim(0);
  const size_t after = testing::ResidentBytes();
  const size_t grew = after > before ? after - before : 0;
  (void)grew;
#if !defined(__SANITIZE_ADDRESS__)  // ASan's quarantine keeps freed memory resident
  EXPECT_LT(grew, size_t{100} << 20) << "resident memory grew by " << (grew >> 20) << " MiB";
#endif
  Digest last;
  std::memcpy(last.data(), digests.data() + digests.size() - 32, 32);
  EXPECT_TRUE(*b->Has(last)) << "the last entry was not indexed";
}

}  // namespace
}  // namespace cairn

// What a hostile or careless bucket can do to one chunk's places, and
// listings past one page.
namespace cairn {
namespace {

// An index object at `name` naming `d` at `count` places in a pack of
// random bytes (also planted).
void PlantCopies(s3::Client& raw, const std::string& name, const Digest& d, uint32_t length,
                 int count) {
  std::string index;
  for (int i = 0; i < count; ++i) {
    const uint64_t offset = 40 + static_cast<uint64_t>(i) * (40 + length);
    index.append(reinterpret_cast<const char*>(d.data()), d.size());
    index.append(reinterpret_cast<const char*>(&offset), 8);
    index.append(reinterpret_cast<const char*>(&length), 4);
  }
  ASSERT_TRUE(raw.Put("chunks/packs/" + name, testing::RandomBytes(300000, 45)).ok());
  ASSERT_TRUE(raw.Put("chunks/index/" + name, index).ok());
}

TEST_F(S3FaultTest, AChunkNamedAThousandTimesCostsAFewReadsAndItsRealPlaceIsTriedAgain) {
  const std::string c = testing::RandomBytes(70000, 46);
  const Digest d = Sha256Of(c);
  {
    auto a = Open(Options(/*direct=*/true));
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(a->Put(d, c).ok());
    ASSERT_TRUE(a->Flush().ok());
  }
  s3::Client raw(Options(/*direct=*/true));
  auto packs = raw.List("chunks/packs/");
  ASSERT_TRUE(packs.ok() && packs->size() == 1u);
  const std::string real = (*packs)[0];
  auto bytes = raw.Get(real);
  ASSERT_TRUE(bytes.ok());
  // Listed after the real one ("ffff..."): a thousand more places for d.
  PlantCopies(raw, "ffffffffffffffff", d, static_cast<uint32_t>(c.size()), 1000);
  ASSERT_TRUE(raw.Delete(real).ok());  // the real pack is gone for a while

  const S3Options o = Options();  // through the proxy, which counts requests
  auto b = Open(o);
  ASSERT_NE(b, nullptr);
  std::string got;
  const int before = proxy_->requests();
  EXPECT_FALSE(b->Get(d, &got).ok());
  EXPECT_LT(proxy_->requests() - before, 40) << "one chunk's read tried every planted place";
  // The real pack comes back: the next read finds it, and so does a restart.
  ASSERT_TRUE(raw.Put(real, *bytes).ok());
  ASSERT_TRUE(b->Get(d, &got).ok());
  EXPECT_TRUE(got == c);
  b.reset();
  auto again = Open(o);
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->Get(d, &got).ok());
  EXPECT_TRUE(got == c);
}

TEST_F(S3FaultTest, ListingsPastOnePageAreSignedAndWhole) {
  // More than 1,000 keys: the second page's request carries a continuation
  // token, which must be signed in sorted order.
  s3::Client raw(Options(/*direct=*/true));
  ASSERT_TRUE(raw.CreateBucket().ok());
  for (int i = 0; i < 1005; ++i) ASSERT_TRUE(raw.Put("many/" + std::to_string(i), "x").ok());
  auto keys = raw.List("many/");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 1005u);
}

TEST_F(S3FaultTest, UppercaseIndexNamesAreNotOurs) {
  const std::string c = testing::RandomBytes(70000, 47);
  {
    auto a = Open(Options(/*direct=*/true));
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(a->Put(Sha256Of(c), c).ok());
    ASSERT_TRUE(a->Flush().ok());
  }
  s3::Client raw(Options(/*direct=*/true));
  auto index = raw.List("chunks/index/");
  ASSERT_TRUE(index.ok() && index->size() == 1u);
  std::string upper = (*index)[0].substr((*index)[0].rfind('/') + 1);
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  // The same number in capitals, listed first, naming the chunk at a bad place.
  PlantCopies(raw, upper, Sha256Of(c), static_cast<uint32_t>(c.size()), 1);
  std::vector<std::string> notices;
  S3Options o = Options(/*direct=*/true);
  o.log = [&](const std::string& line) { notices.push_back(line); };
  auto b = OpenS3ChunkStore(o);
  ASSERT_TRUE(b.ok());
  std::string got;
  ASSERT_TRUE((*b)->Get(Sha256Of(c), &got).ok()) << "the real index object was hidden";
  EXPECT_TRUE(got == c);
  EXPECT_TRUE(notices.empty()) << notices[0];
}

}  // namespace
}  // namespace cairn
