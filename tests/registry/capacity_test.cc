// Capacity: a node over max_bytes or a namespace's limit evicts mirrored
// releases that are not pinned, least recently requested first; releases
// published here and pinned ones stay; when nothing more may go the fetch is
// refused before any byte, naming why; an evicted release comes back whole.
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "repository_fixture.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::RepositoryTest;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

class CapacityTest : public RepositoryTest {
 protected:
  RepositoryOptions Options() override {
    RepositoryOptions o;
    o.capacity.max_bytes = 1000000;
    o.capacity.pins = {"acme/pinned", "acme/m@9"};
    return o;
  }
  struct Rel {
    std::string env, digest, data;
    cairn::v1::Manifest manifest;
  };
  // A 300 kB release of `name`; `mirrored`: as a replicator commits it.
  // `imported`: committed as a bundle import does (no room made first).
  Rel Put(const std::string& name, const std::string& version, int seed, bool mirrored = true,
          bool imported = false) {
    Rel r;
    r.data = testing::RandomBytes(300000, seed);
    std::string s = Session(name, trust_.publisher.get());
    r.env = Upload(s, name, version, {{"w.bin", r.data}}, trust_.publisher.get());
    auto c = imported ? repo_->CommitReplicated(r.env, "", "", "", 0) : repo_->Commit(s, r.env, "");
    EXPECT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(repo_->chunks()->Sync().ok());
    r.digest = DigestOf(r.env);
    cairn::v1::Envelope e;
    e.ParseFromString(r.env);
    r.manifest.ParseFromString(e.payload());
    if (mirrored) EXPECT_TRUE(repo_->MarkMirrored(r.digest).ok());
    clock_.Advance(std::chrono::seconds(10));
    return r;
  }
  bool Held(const Rel& r) { return repo_->Resolve(r.manifest.name() + "@" + r.digest).ok(); }
  bool Whole(const Rel& r) {
    for (size_t off = 0; off < r.data.size(); off += 100000) {
      if (!*chunks_base_->Has(Sha256Of(r.data.substr(off, 100000)))) return false;
    }
    return true;
  }
};

TEST_F(CapacityTest, TheLeastRecentlyRequestedMirroredReleaseMakesRoom) {
  Rel a = Put("acme/m", "1", 1), b = Put("acme/m", "2", 2), c = Put("acme/m", "3", 3);
  repo_->NoteRequested(a.digest);  // a is now the most recent; b the least
  // Published here: a publish makes room too (1.2 MB would pass 1 MB), and b
  // is the least recently requested.
  Rel d = Put("acme/n", "1", 4, false);
  cairn::v1::Manifest next;
  next.set_name("acme/m");
  next.set_version("4");
  ASSERT_TRUE(repo_->MakeRoom(next, DigestName(Sha256Of("next")), 100000).ok());
  // 900 kB + 100 kB fits now.
  EXPECT_FALSE(Held(b));
  EXPECT_TRUE(Held(a));
  EXPECT_TRUE(Held(c));
  EXPECT_TRUE(Held(d));
  EXPECT_TRUE(*repo_->IsEvicted(b.digest));
  EXPECT_FALSE(*repo_->IsEvicted(a.digest));
  cairn::v1::CapacityStatus st = repo_->CapacityStatus();
  EXPECT_EQ(st.releases_evicted(), 1u);
  EXPECT_EQ(st.bytes_evicted(), 300000u);
  EXPECT_EQ(st.held_bytes(), 900000u);
  EXPECT_EQ(st.evictable_bytes(), 600000u);  // a and c; d was published here
  EXPECT_THAT(st.last_evicted(), HasSubstr("acme/m 2"));
  // Its chunks go at the next garbage collection.
  clock_.Advance(std::chrono::hours(2));
  GcOptions o;
  o.grace_seconds = 0;
  ASSERT_TRUE(repo_->CollectGarbage(o).ok());
  EXPECT_FALSE(Whole(b));
  EXPECT_TRUE(Whole(a));

  // Fetched again (on demand): whole, and no longer marked evicted.
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env = Upload(s, "acme/m", "2", {{"w.bin", b.data}}, trust_.publisher.get());
  ASSERT_EQ(DigestOf(env), b.digest);
  ASSERT_TRUE(repo_->CommitReplicated(env, "", "", "", 0).ok());
  EXPECT_TRUE(Held(b));
  EXPECT_FALSE(*repo_->IsEvicted(b.digest));
}

TEST_F(CapacityTest, PublishedAndPinnedReleasesStayAndTheFetchIsRefusedSayingWhy) {
  Rel own = Put("acme/own", "1", 1, false);
  Rel pinned = Put("acme/pinned", "1", 2);
  Rel by_version = Put("acme/m", "9", 3);
  cairn::v1::Manifest next;
  next.set_name("acme/x");
  next.set_version("1");
  auto st = repo_->MakeRoom(next, DigestName(Sha256Of("x")), 200000);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(st.message(), HasSubstr("acme/x 1"));
  EXPECT_THAT(st.message(), HasSubstr("max_bytes 1000000"));
  EXPECT_TRUE(Held(own) && Held(pinned) && Held(by_version));
  EXPECT_EQ(repo_->CapacityStatus().releases_evicted(), 0u);
  EXPECT_THAT(repo_->CapacityStatus().last_refused(), HasSubstr("acme/x 1"));
  // Larger than the cap itself: it never fits.
  EXPECT_THAT(repo_->MakeRoom(next, DigestName(Sha256Of("x")), 1000001),
              StatusIs(absl::StatusCode::kOutOfRange));
  // What fits needs no room.
  EXPECT_TRUE(repo_->MakeRoom(next, DigestName(Sha256Of("x")), 100000).ok());
  // A release already held needs none either.
  EXPECT_TRUE(repo_->MakeRoom(own.manifest, own.digest, 300000).ok());
}

class NamespaceCapacityTest : public CapacityTest {
 protected:
  RepositoryOptions Options() override {
    RepositoryOptions o;
    o.capacity.namespace_bytes["acme"] = 700000;
    return o;
  }
};

TEST_F(NamespaceCapacityTest, ANamespaceOverItsLimitEvictsItsOwnAndEnforceCatchesUp) {
  Rel a = Put("acme/m", "1", 1), b = Put("acme/m", "2", 2);
  cairn::v1::Manifest next;
  next.set_name("acme/m");
  next.set_version("3");
  ASSERT_TRUE(repo_->MakeRoom(next, DigestName(Sha256Of("3")), 300000).ok());
  EXPECT_FALSE(Held(a));  // the older one
  EXPECT_TRUE(Held(b));
  // A publish makes room too: b and c (imported: a bundle is the operator's
  // own, uncapped) hold 600 kB; 300 kB more passes 700 kB, so the least
  // recent mirrored release (b) goes.
  Rel c = Put("acme/m", "4", 4, true, /*imported=*/true);
  Rel p = Put("acme/m", "own", 6, false);
  EXPECT_FALSE(Held(b));
  EXPECT_TRUE(Held(c) && Held(p));
  // Over the limit without a fetch (imports; a lowered limit): Enforce
  // evicts mirrored ones, oldest first, until it holds: c, then e; p and d
  // were published here and stay.
  Rel e = Put("acme/m", "5", 5, true, true), d = Put("acme/m", "6", 7, false, true);
  auto n = repo_->EnforceCapacity();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
  EXPECT_FALSE(Held(c));
  EXPECT_FALSE(Held(e));
  EXPECT_TRUE(Held(p) && Held(d));
  EXPECT_EQ(*repo_->EnforceCapacity(), 0u);
}

}  // namespace
}  // namespace cairn
