// Garbage collection on a bucket several frontends share (s3_store_gc.cc),
// against a real radosgw: a collector condemns packs, every registered
// frontend answers what it still counts on, and only then is anything
// deleted. A chunk another frontend needs, one a client re-uploads while a
// round is open, and every live chunk of a condemned pack stay readable
// from every frontend.
#include <openssl/rand.h>

#include <algorithm>

#include "cairn/hash.h"
#include "cairn/s3_store.h"
#include "s3_client.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Chunks(int n, uint64_t seed);

class S3GcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("CAIRN_S3_ENDPOINT") == nullptr) {
      GTEST_SKIP() << "no S3 endpoint (run tests/s3/store.sh)";
    }
    unsigned char b[6];
    RAND_bytes(b, sizeof(b));
    bucket_ = "cairn-gc-" + ToHex(b, sizeof(b));
  }

  S3Options Options(bool collector) const {
    S3Options o = S3OptionsFromEnvironment({});
    o.bucket = bucket_;
    o.prefix = "m/";
    o.pack_bytes = 1 << 20;
    o.index_dir = testing::FreshDir() + "/s3-index";  // each a new frontend
    o.collector = collector;
    return o;
  }
  std::unique_ptr<ChunkStore> Open(bool collector) {
    auto s = OpenS3ChunkStore(Options(collector));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Stores `chunks` in one pack of `store`.
  static void StorePack(ChunkStore* store, const std::vector<std::string>& chunks) {
    for (const std::string& c : chunks) ASSERT_TRUE(store->Put(Sha256Of(c), c).ok());
    ASSERT_TRUE(store->Flush().ok());
  }
  size_t Packs() {
    s3::Client raw(Options(false));
    auto keys = raw.List("m/packs/");
    EXPECT_TRUE(keys.ok()) << keys.status();
    return keys.ok() ? keys->size() : 0;
  }
  // An answer naming, of the candidates, those in `keep`; the candidates
  // asked about go to *asked.
  static NeededChunks Needing(std::vector<std::string> keep, std::vector<Digest>* asked = nullptr) {
    return [keep, asked](const std::vector<Digest>& candidates) {
      if (asked != nullptr) *asked = candidates;
      std::vector<Digest> need;
      for (const std::string& k : keep) {
        if (std::count(candidates.begin(), candidates.end(), Sha256Of(k)) > 0) {
          need.push_back(Sha256Of(k));
        }
      }
      return absl::StatusOr<std::vector<Digest>>(need);
    };
  }
  static bool Reads(ChunkStore* store, const std::string& chunk) {
    std::string got;
    return store->Get(Sha256Of(chunk), &got).ok() && got == chunk;
  }

  // A collector a and frontends b and c; `n` chunks stored by b in one
  // pack, which a and c have read.
  struct Three {
    std::unique_ptr<ChunkStore> a, b, c;
    std::vector<std::string> k;
    std::vector<Digest> all;
  };
  void OpenThree(int n, uint64_t seed, Three* t) {
    t->a = Open(true);
    t->b = Open(false);
    t->c = Open(false);
    ASSERT_NE(t->a, nullptr);
    ASSERT_NE(t->b, nullptr);
    ASSERT_NE(t->c, nullptr);
    t->k = Chunks(n, seed);
    StorePack(t->b.get(), t->k);
    for (ChunkStore* s : {t->a.get(), t->c.get()}) {
      ASSERT_TRUE(s->AnswerCollection(Needing({})).ok());
    }
    for (const auto& x : t->k) t->all.push_back(Sha256Of(x));
  }

  std::string bucket_;
};

std::vector<std::string> Chunks(int n, uint64_t seed) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(testing::RandomBytes(150000 + 1000 * i, seed + i));
  return out;
}

TEST_F(S3GcTest, ARoundDeletesOnlyWhatNoFrontendCountsOn) {
  auto a = Open(/*collector=*/true);
  auto b = Open(/*collector=*/false);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const auto garbage = Chunks(4, 100);  // pack 1: nobody's
  const auto mixed = Chunks(4, 200);    // pack 2: [0] is a's, the rest garbage
  const auto b_only = Chunks(4, 300);   // pack 3: [0] only b counts on
  StorePack(a.get(), garbage);
  StorePack(a.get(), mixed);
  StorePack(b.get(), b_only);
  ASSERT_EQ(Packs(), 3u);
  // The collector reads b's index object, then nominates all but its own
  // live chunk (what its pass's mark and sweep would find).
  ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
  std::vector<StoredChunk> stored;
  ASSERT_TRUE(a->ListStored(nullptr, 100, &stored).ok());
  ASSERT_EQ(stored.size(), 12u);
  std::vector<Digest> doomed;
  for (const StoredChunk& c : stored) {
    if (c.digest != Sha256Of(mixed[0])) doomed.push_back(c.digest);
  }
  ASSERT_TRUE(a->Remove(doomed).ok());
  auto r = a->Compact(0.9, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 1 opened: 3 pack(s) condemned"));
  EXPECT_EQ(r->bytes_moved, mixed[0].size()) << "the live chunk was not copied out";
  EXPECT_EQ(Packs(), 4u);

  // b reads the round (the copy is the live chunk's place now) and answers;
  // everything still reads.
  std::vector<Digest> asked;
  ASSERT_TRUE(b->AnswerCollection(Needing({b_only[0]}, &asked)).ok());
  EXPECT_EQ(asked.size(), 11u) << "asked about the chunks of condemned packs but the copied one";
  EXPECT_TRUE(*b->Has(Sha256Of(mixed[0])));
  EXPECT_TRUE(Reads(b.get(), garbage[0]));

  // Nothing goes before every registered frontend answered: a's own answer
  // is missing.
  r = a->Compact(0.9, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 1 waits for the answer of frontend(s)"));
  EXPECT_EQ(Packs(), 4u);
  ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
  r = a->Compact(0.9, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 1 ended: 2 condemned pack(s) deleted, 1 kept"));
  EXPECT_GT(r->bytes_freed, 8 * 150000u);
  EXPECT_EQ(Packs(), 2u);
  ASSERT_TRUE(b->AnswerCollection(Needing({})).ok());  // b reads the end
  for (ChunkStore* s : {a.get(), b.get()}) {
    EXPECT_TRUE(Reads(s, mixed[0]));
    EXPECT_TRUE(Reads(s, b_only[0]));
    EXPECT_FALSE(*s->Has(Sha256Of(garbage[0])));
    EXPECT_FALSE(Reads(s, garbage[1]));
  }
  EXPECT_TRUE(*b->Has(Sha256Of(b_only[0]))) << "kept: counts as held again";

  // The next round copies the rescued chunk out of its pack, and the pack
  // goes; b reads the copy.
  ASSERT_TRUE(a->Remove({Sha256Of(b_only[0]), Sha256Of(b_only[1]), Sha256Of(b_only[2]),
                         Sha256Of(b_only[3])})
                  .ok());
  r = a->Compact(0.9, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 2 opened: 1 pack(s) condemned"));
  EXPECT_EQ(r->bytes_moved, b_only[0].size());
  asked.clear();
  ASSERT_TRUE(b->AnswerCollection(Needing({b_only[0]}, &asked)).ok());
  EXPECT_EQ(asked.size(), 3u) << "b did not take the copy as the chunk's place";
  ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
  r = a->Compact(0.9, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 2 ended: 1 condemned pack(s) deleted, 0 kept"));
  EXPECT_EQ(Packs(), 2u);  // mixed[0]'s copy and b_only[0]'s
  ASSERT_TRUE(b->AnswerCollection(Needing({})).ok());
  EXPECT_TRUE(Reads(b.get(), b_only[0]));
  EXPECT_TRUE(*b->Has(Sha256Of(b_only[0])));
  EXPECT_FALSE(Reads(b.get(), b_only[1]));
  // A frontend started now sees exactly what is left.
  auto c = Open(false);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(Reads(c.get(), b_only[0]));
  EXPECT_TRUE(Reads(c.get(), mixed[0]));
  EXPECT_FALSE(*c->Has(Sha256Of(mixed[1])));
}

TEST_F(S3GcTest, AChunkStoredAgainOrAFrontendStartedDuringARoundIsSafe) {
  auto a = Open(true);
  auto b = Open(false);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const auto chunks = Chunks(3, 400);
  StorePack(a.get(), chunks);
  ASSERT_TRUE(b->AnswerCollection(Needing({})).ok());
  ASSERT_TRUE(*b->Has(Sha256Of(chunks[0])));
  std::vector<Digest> all;
  for (const auto& c : chunks) all.push_back(Sha256Of(c));
  ASSERT_TRUE(a->Remove(all).ok());
  ASSERT_TRUE(a->Compact(0.5, nullptr).ok());
  // b answers (it counts on nothing), then a client asks it for chunks[0]
  // (a publish, a replication, a scrub): its only place is condemned, so b
  // copies it within the bucket before it says yes.
  ASSERT_TRUE(b->AnswerCollection(Needing({})).ok());
  EXPECT_TRUE(*b->HasIntact(Sha256Of(chunks[0])));
  ASSERT_TRUE(b->Flush().ok());
  EXPECT_EQ(Packs(), 2u) << "no copy of the condemned chunk was stored";
  // A frontend that starts now must answer too before anything goes.
  auto c = Open(false);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
  auto r = a->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("waits for the answer"));
  ASSERT_TRUE(c->AnswerCollection(Needing({chunks[1]})).ok());
  r = a->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 1 ended: 0 condemned pack(s) deleted, 1 kept"));
  EXPECT_TRUE(Reads(c.get(), chunks[1]));
  // The next round copies c's chunk out and deletes the first pack; the
  // copy b stored (the chunk's place now, everywhere) stays, b counting on
  // it, although the first pack held the same chunk.
  ASSERT_TRUE(a->Remove(all).ok());
  r = a->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 2 opened: 2 pack(s) condemned"));
  ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
  ASSERT_TRUE(b->AnswerCollection(Needing({chunks[0]})).ok());
  ASSERT_TRUE(c->AnswerCollection(Needing({})).ok());
  r = a->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 2 ended: 1 condemned pack(s) deleted, 1 kept"));
  ASSERT_TRUE(b->AnswerCollection(Needing({})).ok());
  EXPECT_TRUE(Reads(b.get(), chunks[0]));
  EXPECT_TRUE(Reads(b.get(), chunks[1])) << "rescued in round 1: copied out in round 2";
  EXPECT_FALSE(Reads(b.get(), chunks[2]));
}

// Two copies of a chunk, the first deleted by a round: a frontend must not
// take the deleted copy's place for the chunk's when the second copy is
// condemned by the next round (it then failed to read its own release).
TEST_F(S3GcTest, APlaceInADeletedPackIsNeverTakenAgain) {
  Three t;
  ASSERT_NO_FATAL_FAILURE(OpenThree(2, 700, &t));
  auto& [a, b, c, k, all] = t;
  auto round = [&](const std::string& want) {
    ASSERT_TRUE(a->Remove(all).ok());
    auto r = a->Compact(0.5, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_THAT(r->shared, HasSubstr("opened")) << r->shared;
    // c answers (it counts on nothing), then is asked for the chunks (a
    // publish of the same bytes): it copies them within the bucket. b
    // counts on them.
    ASSERT_TRUE(c->AnswerCollection(Needing({})).ok());
    for (const Digest& d : all) ASSERT_TRUE(*c->Has(d));
    ASSERT_TRUE(c->Flush().ok());
    ASSERT_TRUE(b->AnswerCollection(Needing({k[0], k[1]})).ok());
    ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
    r = a->Compact(0.5, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_THAT(r->shared, HasSubstr(want));
    ASSERT_TRUE(b->AnswerCollection(Needing({})).ok());
    for (const auto& x : k) EXPECT_TRUE(Reads(b.get(), x)) << "b lost its chunk after " << want;
    for (const Digest& d : all) EXPECT_TRUE(*b->Has(d));
  };
  round("1 condemned pack(s) deleted, 0 kept");  // b reads c's copy
  round("1 condemned pack(s) deleted, 0 kept");  // and again: never the deleted place
  EXPECT_EQ(Packs(), 1u);
}

// One pass ends a round (deleting the first copy) and opens the next
// (condemning the second), and a frontend reads both in one look: it must
// forget the deleted pack before it looks for another place for the chunk
// (it took the deleted one, answered that it needed nothing, and lost its
// release: found by a hostile review).
TEST_F(S3GcTest, ARoundThatEndsAsTheNextBeginsLosesNoPlace) {
  Three t;
  ASSERT_NO_FATAL_FAILURE(OpenThree(3, 800, &t));
  auto& [a, b, c, k, all] = t;
  ASSERT_TRUE(a->Remove(all).ok());
  auto r = a->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(r->shared, HasSubstr("round 1 opened"));
  // c copies the chunks (asked for them), b then takes c's copy.
  ASSERT_TRUE(c->AnswerCollection(Needing({})).ok());
  for (const Digest& d : all) ASSERT_TRUE(*c->Has(d));
  ASSERT_TRUE(c->Flush().ok());
  ASSERT_TRUE(b->AnswerCollection(Needing(k)).ok());
  ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
  ASSERT_TRUE(a->Remove(all).ok());
  r = a->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(r->shared, HasSubstr("round 1 ended: 1 condemned pack(s) deleted"));
  ASSERT_THAT(r->shared, HasSubstr("round 2 opened: 1 pack(s) condemned"));
  std::vector<Digest> asked;
  ASSERT_TRUE(b->AnswerCollection(Needing(k, &asked)).ok());
  EXPECT_EQ(asked.size(), 3u) << "b does not read the chunks from the condemned copy";
  ASSERT_TRUE(c->AnswerCollection(Needing({})).ok());
  ASSERT_TRUE(a->AnswerCollection(Needing({})).ok());
  r = a->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 2 ended: 0 condemned pack(s) deleted, 1 kept"));
  for (const auto& x : k) EXPECT_TRUE(Reads(b.get(), x));
  for (const Digest& d : all) EXPECT_TRUE(*b->Has(d));
}

TEST_F(S3GcTest, APackDeletedBehindTheFrontendsBackCostsOneFailedRead) {
  auto a = Open(false);
  ASSERT_NE(a, nullptr);
  const auto chunks = Chunks(3, 600);
  StorePack(a.get(), chunks);
  s3::Client raw(Options(false));
  auto keys = raw.List("m/packs/");
  ASSERT_TRUE(keys.ok() && keys->size() == 1u);
  auto bytes = raw.Get(keys->front());
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(raw.Delete(keys->front()).ok());
  std::string got;
  EXPECT_THAT(a->Get(Sha256Of(chunks[0]), &got), StatusIs(absl::StatusCode::kNotFound));
  // Its other chunks no longer count as held, without a read each: a
  // publish stores them again.
  EXPECT_FALSE(*a->Has(Sha256Of(chunks[1])));
  EXPECT_FALSE(*a->Has(Sha256Of(chunks[2])));
  // The pack put back is found again.
  ASSERT_TRUE(raw.Put(keys->front(), *bytes).ok());
  EXPECT_TRUE(Reads(a.get(), chunks[2]));
  EXPECT_TRUE(*a->Has(Sha256Of(chunks[2])));
}

TEST_F(S3GcTest, OnlyTheCollectorCollectsAndAPlantedRoundDeletesNothing) {
  auto b = Open(false);
  ASSERT_NE(b, nullptr);
  const auto chunks = Chunks(2, 500);
  StorePack(b.get(), chunks);
  std::vector<StoredChunk> stored;
  ASSERT_TRUE(b->ListStored(nullptr, 10, &stored).ok());
  EXPECT_TRUE(stored.empty());
  EXPECT_THAT(b->Remove({Sha256Of(chunks[0])}), StatusIs(absl::StatusCode::kFailedPrecondition));
  auto r = b->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->shared, HasSubstr("collected by its collector frontend"));

  // Someone with write access plants a round naming a pack and junk: it is
  // never answered, so it never ends and nothing is deleted.
  s3::Client raw(Options(false));
  auto keys = raw.List("m/packs/");
  ASSERT_TRUE(keys.ok() && keys->size() == 1u);
  const std::string pack = keys->front().substr(keys->front().rfind('/') + 1);
  ASSERT_TRUE(raw.Put("m/gc/rounds/0000000000000007/condemned", pack + "\nnot-an-id\n").ok());
  std::vector<std::string> notices;
  S3Options o = Options(true);
  o.log = [&](const std::string& line) { notices.push_back(line); };
  auto a = OpenS3ChunkStore(o);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->AnswerCollection(Needing({})).ok());
  ASSERT_TRUE(b->AnswerCollection(Needing({})).ok());
  EXPECT_TRUE(*b->Has(Sha256Of(chunks[0]))) << "a planted list condemned a pack";
  ASSERT_FALSE(notices.empty());
  EXPECT_THAT(notices[0], HasSubstr("ignored: a line is not a pack id"));
  r = (*a)->Compact(0.5, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->shared, HasSubstr("round 7 in the bucket was not opened by this collector"));

  // A well-formed planted round naming the live pack, with an empty answer
  // planted in every frontend's name: a frontend writes its own answer over
  // the planted one, and the collector ends only rounds it opened itself.
  ASSERT_TRUE(raw.Put("m/gc/rounds/0000000000000009/condemned", pack + "\n").ok());
  auto frontends = raw.List("m/gc/frontends/");
  ASSERT_TRUE(frontends.ok() && frontends->size() == 2u);
  for (const std::string& f : *frontends) {
    const std::string id = f.substr(f.rfind('/') + 1);
    ASSERT_TRUE(raw.Put("m/gc/rounds/0000000000000009/answer-" + id, "").ok());
  }
  ASSERT_TRUE(b->AnswerCollection(Needing({chunks[0], chunks[1]})).ok());
  ASSERT_TRUE((*a)->AnswerCollection(Needing({})).ok());
  for (int pass = 0; pass < 2; ++pass) {
    r = (*a)->Compact(0.5, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_THAT(r->shared, Not(HasSubstr("round 9 ended"))) << r->shared;
  }
  EXPECT_EQ(Packs(), 1u) << "a planted round deleted a live pack";
  for (const auto& x : chunks) EXPECT_TRUE(Reads(b.get(), x));
  int answered = 0;
  for (const std::string& f : *frontends) {
    auto body = raw.Get("m/gc/rounds/0000000000000009/answer-" + f.substr(f.rfind('/') + 1));
    if (body.ok() && body->size() == 2 * 40) ++answered;
  }
  EXPECT_EQ(answered, 1) << "b did not write its own answer over the planted one";
}

}  // namespace
}  // namespace cairn
