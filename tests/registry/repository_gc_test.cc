// Garbage collection of a repository: what it removes and when, what it must
// never remove (a release's chunks, a pending release's, a chunk a publisher
// was just told is held), and a race against concurrent commits.
#include <atomic>
#include <thread>

#include "cairn/repository.h"
#include "repository_fixture.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::RepositoryTest;

class RepositoryGcTest : public RepositoryTest {
 protected:
  // Chunks stored straight into the pack store, as an abandoned upload
  // leaves them: no release names them and no client was told of them.
  std::vector<std::string> Orphans(int n, int seed) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(testing::RandomBytes(100000, seed * 1000 + i));
      EXPECT_TRUE(chunks_base_->Put(Sha256Of(out.back()), out.back()).ok());
    }
    EXPECT_TRUE(chunks_base_->Sync().ok());
    return out;
  }
  std::string Publish(const std::string& version, const std::string& data) {
    std::string s = Session("acme/m", trust_.publisher.get());
    std::string env = Upload(s, "acme/m", version, {{"w.bin", data}}, trust_.publisher.get());
    auto c = repo_->Commit(s, env, "");
    EXPECT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(repo_->chunks()->Sync().ok());
    return env;
  }
  // Every chunk of release acme/m@version is held.
  bool Whole(const std::string& data) {
    for (size_t off = 0; off < data.size(); off += 100000) {
      if (!*chunks_base_->Has(Sha256Of(data.substr(off, 100000)))) return false;
    }
    return true;
  }
  void Advance(std::chrono::seconds s) { clock_.Advance(s); }
  GcReport Gc(GcOptions o = {}) {
    auto r = repo_->CollectGarbage(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : GcReport{};
  }
};

TEST_F(RepositoryGcTest, GarbageGoesOnlyOnceItsGracePeriodIsOver) {
  const std::string data = testing::RandomBytes(350000, 1);
  Publish("1", data);
  auto orphans = Orphans(5, 2);
  GcReport r = Gc();
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.chunks, 9u);
  EXPECT_EQ(r.chunks_removed, 0u);
  EXPECT_EQ(r.chunks_in_grace, 5u);
  Advance(std::chrono::hours(25));
  r = Gc();
  EXPECT_EQ(r.chunks_removed, 5u);
  EXPECT_EQ(r.bytes_removed, 500000u);
  for (const auto& o : orphans) EXPECT_FALSE(*chunks_base_->Has(Sha256Of(o)));
  // The release is untouched, however old.
  EXPECT_TRUE(Whole(data));
  EXPECT_TRUE(repo_->Resolve("acme/m@" + DigestOf(Publish("2", data))).ok());
  EXPECT_EQ(Gc().chunks_removed, 0u);
}

TEST_F(RepositoryGcTest, ADryRunCountsButRemovesNothing) {
  auto orphans = Orphans(3, 3);
  Advance(std::chrono::hours(25));
  GcOptions o;
  o.dry_run = true;
  GcReport r = Gc(o);
  EXPECT_EQ(r.chunks_removed, 3u);
  EXPECT_EQ(r.bytes_removed, 300000u);
  for (const auto& c : orphans) EXPECT_TRUE(*chunks_base_->Has(Sha256Of(c)));
}

TEST_F(RepositoryGcTest, AChunkAClientWasToldIsHeldStaysForASessionLifetime) {
  auto orphans = Orphans(2, 4);
  Advance(std::chrono::hours(25));
  // A publisher's missing-chunks query: the node says it holds chunk 0, so
  // the publisher will not upload it and its commit will name it.
  ASSERT_TRUE(*repo_->chunks()->Has(Sha256Of(orphans[0])));
  GcReport r = Gc();
  EXPECT_EQ(r.chunks_removed, 1u);
  EXPECT_EQ(r.chunks_touched, 1u);
  EXPECT_TRUE(*chunks_base_->Has(Sha256Of(orphans[0])));
  EXPECT_FALSE(*chunks_base_->Has(Sha256Of(orphans[1])));
  // Two session lifetimes later, with no commit naming it, it goes.
  Advance(std::chrono::hours(2));
  EXPECT_EQ(Gc().chunks_removed, 1u);
  EXPECT_FALSE(*chunks_base_->Has(Sha256Of(orphans[0])));
}

TEST_F(RepositoryGcTest, APendingReleaseKeepsItsChunksUntilItExpires) {
  RequireTwoSignatures();
  const std::string data = testing::RandomBytes(200000, 5);
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env = Upload(s, "acme/m", "1", {{"w.bin", data}}, trust_.publisher.get());
  auto c = repo_->Commit(s, env, "");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->pending());
  ASSERT_TRUE(repo_->chunks()->Sync().ok());
  Advance(std::chrono::hours(25));
  GcReport r = Gc();
  EXPECT_EQ(r.chunks_removed, 0u);
  EXPECT_TRUE(Whole(data));
  // Past its lifetime (7 days) it is dropped; its staged list is kept for
  // the staging retention, then goes with its chunks.
  Advance(std::chrono::hours(24 * 7));
  r = Gc();
  EXPECT_EQ(r.pending_dropped, 1u);
  EXPECT_EQ(r.chunks_removed, 0u);
  Advance(std::chrono::hours(24 * 7 + 1));
  r = Gc();
  EXPECT_EQ(r.staged_dropped, 1u);
  EXPECT_EQ(r.chunks_removed, 2u);
  EXPECT_FALSE(Whole(data));
}

// Commits racing GC passes that have no grace period at all, so only the
// mark and the guard stand between a publisher's chunks and the sweep: half
// the releases upload their chunks (Put) before staging and committing, half
// find them already held (Has; stored, untouched, a moment before) and upload
// nothing. Junk stored meanwhile shows the sweep is busy. Every commit must
// find every chunk. (With the guard's touch check removed, commits fail.)
TEST_F(RepositoryGcTest, ConcurrentCommitsNeverLoseAChunkToTheSweep) {
  constexpr int kReleases = 60;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> passes{0}, removed{0};
  std::thread gc([&] {
    GcOptions o;
    o.grace_seconds = 0;
    while (!done) {
      auto r = repo_->CollectGarbage(o);
      ASSERT_TRUE(r.ok()) << r.status();
      removed += r->chunks_removed;
      ++passes;
    }
  });
  std::vector<std::string> data;
  int committed = 0;
  for (int i = 0; i < kReleases; ++i) {
    Orphans(2, 5000 + i);  // junk for the sweep
    data.push_back(testing::RandomBytes(300000, 100 + i));
    std::string s = Session("acme/m", trust_.publisher.get());
    const bool held = i % 2 == 1;
    if (held) {
      for (size_t off = 0; off < data[i].size(); off += 100000) {
        std::string c = data[i].substr(off, 100000);
        ASSERT_TRUE(chunks_base_->Put(Sha256Of(c), c).ok());
      }
      ASSERT_TRUE(chunks_base_->Sync().ok());
      // The missing-chunks query; what is not held any more is uploaded.
      for (size_t off = 0; off < data[i].size(); off += 100000) {
        std::string c = data[i].substr(off, 100000);
        if (!*repo_->chunks()->Has(Sha256Of(c)))
          ASSERT_TRUE(repo_->chunks()->Put(Sha256Of(c), c).ok());
      }
    }
    std::string env = Upload(s, "acme/m", StrCat("v", i), {{"w.bin", data[i]}},
                             trust_.publisher.get(), /*upload_chunks=*/!held);
    ASSERT_TRUE(repo_->chunks()->Sync().ok());
    auto c = repo_->Commit(s, env, "");
    EXPECT_TRUE(c.ok()) << i << ": " << c.status();
    committed += c.ok();
  }
  const uint64_t at_end = passes;
  while (passes < at_end + 2) std::this_thread::yield();
  done = true;
  gc.join();
  EXPECT_EQ(committed, kReleases);
  EXPECT_GT(removed.load(), 0u);
  // And once the touches are long forgotten, the releases keep their chunks.
  Advance(std::chrono::hours(3));
  GcOptions o;
  o.grace_seconds = 0;
  EXPECT_EQ(Gc(o).chunks_removed, 0u);
  for (const auto& d : data) EXPECT_TRUE(Whole(d));
}

// A release whose signer was revoked is withheld; past the retention period
// a pass drops it (manifest, lineage edge, feed event no longer offered) and
// its chunks and chunk lists go, except what a release still served shares.
TEST_F(RepositoryGcTest, ReleasesWithheldPastTheRetentionPeriodAreDropped) {
  auto second = std::move(SigningKey::Generate()).value();
  cairn::v1::TrustRoot root = trust_.view.root();
  root.set_version(root.version() + 1);
  *root.add_keys() = second->ToProto();
  root.mutable_delegations(0)->add_key_ids(second->key_id());
  CanonicalizeTrustRoot(&root);
  auto v2 = SignEnvelope(kTrustRootPayloadType, SerializeCanonical(root), {trust_.root.get()});
  ASSERT_TRUE(repo_->AdoptTrustChain({SerializeCanonical(*v2)}).ok());

  const std::string shared = testing::RandomBytes(200000, 5);
  const std::string own = testing::RandomBytes(300000, 6);
  // 1 is signed by the key about to be revoked; 2 (by the second key) shares
  // one file with it.
  std::string s1 = Session("acme/m", trust_.publisher.get());
  std::string env1 =
      Upload(s1, "acme/m", "1", {{"a.bin", shared}, {"b.bin", own}}, trust_.publisher.get());
  ASSERT_TRUE(repo_->Commit(s1, env1, "").ok());
  std::string s2 = Session("acme/m", second.get());
  std::string env2 = Upload(s2, "acme/m", "2", {{"a.bin", shared}}, second.get());
  ASSERT_TRUE(repo_->Commit(s2, env2, "").ok());
  ASSERT_TRUE(repo_->chunks()->Sync().ok());
  const std::string d1 = DigestOf(env1);

  root.set_version(root.version() + 1);
  root.add_revoked_key_ids(trust_.publisher->key_id());
  auto* ids = root.mutable_delegations(0)->mutable_key_ids();
  ids->erase(std::remove(ids->begin(), ids->end(), trust_.publisher->key_id()), ids->end());
  CanonicalizeTrustRoot(&root);
  auto v3 = SignEnvelope(kTrustRootPayloadType, SerializeCanonical(root), {trust_.root.get()});
  ASSERT_TRUE(repo_->AdoptTrustChain({SerializeCanonical(*v3)}).ok());
  ASSERT_FALSE(repo_->WithheldReason(d1).empty());

  GcOptions o;
  o.grace_seconds = 0;
  o.withheld_retention_seconds = 10 * 86400;
  // The first pass finds it withheld and keeps it; so does one 9 days later.
  EXPECT_EQ(Gc(o).withheld_dropped, 0u);
  Advance(std::chrono::hours(9 * 24));
  EXPECT_EQ(Gc(o).withheld_dropped, 0u);
  EXPECT_TRUE(repo_->Resolve("acme/m@" + d1, /*include_withheld=*/true).ok());
  EXPECT_TRUE(Whole(own));
  // A dry run past the period counts it and drops nothing.
  Advance(std::chrono::hours(2 * 24));
  o.dry_run = true;
  EXPECT_EQ(Gc(o).withheld_dropped, 1u);
  EXPECT_TRUE(repo_->Resolve("acme/m@" + d1, /*include_withheld=*/true).ok());
  o.dry_run = false;
  Advance(std::chrono::hours(1));  // past the session lifetime of the touches
  Advance(std::chrono::hours(1));
  GcReport r = Gc(o);
  EXPECT_EQ(r.withheld_dropped, 1u);
  EXPECT_EQ(r.lists_dropped, 1u);  // b.bin's; a.bin's is 2's too
  EXPECT_EQ(r.chunks_removed, 3u);
  EXPECT_THAT(repo_->Resolve("acme/m@" + d1, /*include_withheld=*/true),
              testing::StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(Whole(own));
  EXPECT_TRUE(Whole(shared));
  auto two = repo_->Resolve("acme/m@2");
  ASSERT_TRUE(two.ok()) << two.status();
  auto list = repo_->List("acme/m", /*include_withheld=*/true);
  ASSERT_EQ(list->entries(0).releases_size(), 1);
  // The feed no longer offers it (a follower could not fetch it from here).
  auto feed = repo_->Feed(0, 100);
  ASSERT_TRUE(feed.ok());
  for (const auto& ev : feed->events()) EXPECT_NE(ev.manifest_digest(), d1);
  // Nothing more goes in the next pass.
  EXPECT_EQ(Gc(o).withheld_dropped, 0u);
}

}  // namespace
}  // namespace cairn
