#include "cairn/repository.h"

#include "cairn/objects.h"
#include "cairn/strings.h"
#include "fault_stores.h"
#include "repository_fixture.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::FailingMetaStore;
using ::cairn::testing::RepositoryTest;
using ::cairn::testing::StatusIs;
using ::cairn::testing::TrustFixture;
using ::testing::HasSubstr;

TEST_F(RepositoryTest, CommitThenResolveByTagAndDigest) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env = Upload(s, "acme/m", "1", {{"w.bin", testing::RandomBytes(250000, 1)}},
                           trust_.publisher.get());
  std::string d = DigestOf(env);
  auto c = repo_->Commit(s, env, Tag("acme/m", "latest", d, 1, trust_.publisher.get()));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->manifest_digest(), d);
  auto r = repo_->Resolve("acme/m");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->manifest_digest(), d);
  EXPECT_EQ(r->manifest_envelope(), env);
  r = repo_->Resolve("acme/m@" + d);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->tag_envelope().empty());
  r = repo_->Resolve("acme/m@1");  // by version
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->manifest_digest(), d);
  EXPECT_TRUE(r->tag_envelope().empty());
  EXPECT_THAT(repo_->Resolve("acme/m@2"), StatusIs(absl::StatusCode::kNotFound));
  auto list = repo_->List("acme/");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->entries_size(), 1);
  EXPECT_EQ(list->entries(0).releases(0).bytes(), 250000u);
}

TEST_F(RepositoryTest, UnknownNameTagOrDigestIsNotFound) {
  EXPECT_THAT(repo_->Resolve("acme/none"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo_->Resolve("acme/none:v9"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo_->Resolve("acme/none@" + DigestName(Sha256Of("x"))),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo_->Resolve("not a ref"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RepositoryTest, SessionNeedsADelegatedKeyForTheNamespace) {
  auto stranger = std::move(SigningKey::Generate()).value();
  auto c = repo_->Challenge("acme/m");
  cairn::v1::OpenSessionRequest r;
  r.set_name("acme/m");
  r.set_challenge(c->challenge());
  auto* s = r.add_signatures();
  s->set_key_id(stranger->key_id());
  s->set_sig(*stranger->Sign(Pae(kSessionPayloadType, c->challenge() + "\nacme/m")));
  EXPECT_THAT(repo_->OpenSession(r), StatusIs(absl::StatusCode::kPermissionDenied));
  // Another namespace with the real publisher key.
  auto c2 = repo_->Challenge("other/m");
  r.set_name("other/m");
  r.set_challenge(c2->challenge());
  s->set_key_id(trust_.publisher->key_id());
  s->set_sig(*trust_.publisher->Sign(Pae(kSessionPayloadType, c2->challenge() + "\nother/m")));
  EXPECT_THAT(repo_->OpenSession(r), StatusIs(absl::StatusCode::kPermissionDenied));
  // A challenge is single-use: once answered by a delegated key.
  auto c3 = repo_->Challenge("acme/m");
  r.set_name("acme/m");
  r.set_challenge(c3->challenge());
  s->set_sig(*trust_.publisher->Sign(Pae(kSessionPayloadType, c3->challenge() + "\nacme/m")));
  EXPECT_TRUE(repo_->OpenSession(r).ok());
  EXPECT_THAT(repo_->OpenSession(r), StatusIs(absl::StatusCode::kUnauthenticated));
  // Nor can a challenge be moved to another name, or forged.
  r.set_name("acme/n");
  s->set_sig(*trust_.publisher->Sign(Pae(kSessionPayloadType, c3->challenge() + "\nacme/n")));
  EXPECT_THAT(repo_->OpenSession(r), StatusIs(absl::StatusCode::kUnauthenticated));
  std::string forged = c3->challenge();
  forged.back() = forged.back() == '0' ? '1' : '0';
  r.set_name("acme/m");
  r.set_challenge(forged);
  s->set_sig(*trust_.publisher->Sign(Pae(kSessionPayloadType, forged + "\nacme/m")));
  EXPECT_THAT(repo_->OpenSession(r), StatusIs(absl::StatusCode::kUnauthenticated));
  // No session, no staging.
  EXPECT_THAT(repo_->StageChunkList("bogus", ""), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(RepositoryTest, RefusesReleaseSignedByUndelegatedKey) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env = Upload(s, "acme/m", "1", {{"a", "hello"}}, trust_.root.get());
  auto c = repo_->Commit(s, env, "");
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(trust_.root->key_id()));
  EXPECT_THAT(repo_->Resolve("acme/m@" + DigestOf(env)), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RepositoryTest, RefusesReleaseOutsideTheSessionName) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env = Upload(s, "acme/other", "1", {{"a", "hello"}}, trust_.publisher.get());
  EXPECT_THAT(repo_->Commit(s, env, ""), StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(RepositoryTest, RefusesMissingChunks) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env = Upload(s, "acme/m", "1", {{"a", testing::RandomBytes(1000, 3)}},
                           trust_.publisher.get(), /*upload_chunks=*/false);
  auto c = repo_->Commit(s, env, "");
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("not uploaded"));
}

TEST_F(RepositoryTest, ReleasesAreImmutable) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env1 = Upload(s, "acme/m", "1", {{"a", "one"}}, trust_.publisher.get());
  ASSERT_TRUE(repo_->Commit(s, env1, "").ok());
  // A commit ends its session.
  EXPECT_THAT(repo_->Commit(s, env1, ""), StatusIs(absl::StatusCode::kUnauthenticated));
  s = Session("acme/m", trust_.publisher.get());
  // Same content again: fine, idempotent.
  auto again = repo_->Commit(s, env1, "");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_present());
  s = Session("acme/m", trust_.publisher.get());
  std::string env2 = Upload(s, "acme/m", "1", {{"a", "two"}}, trust_.publisher.get());
  auto c = repo_->Commit(s, env2, "");
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("immutable"));
}

// A chunk list naming `chunk` `n` times.
cairn::v1::ChunkList Repeated(const std::string& chunk, int n) {
  cairn::v1::ChunkList cl;
  for (int i = 0; i < n; ++i) {
    auto* c = cl.add_chunks();
    c->set_digest(std::string(DigestBytes(Sha256Of(chunk))));
    c->set_length(static_cast<uint32_t>(chunk.size()));
  }
  return cl;
}

// Issue 12 B: a release whose N files all name one 8 MiB chunk list (a 1-byte
// chunk 220,752 times) made the commit parse the list and copy it per file:
// +23.6 MB a file, bad_alloc at N=90 under a 2.5 GB cap, and a follower
// replaying the event crashed in a loop. Each distinct list now costs one
// parse and one copy.
TEST_F(RepositoryTest, FilesSharingOneHugeChunkListAreCheckedOnce) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan's quarantine keeps freed memory resident";
#endif
  std::string s = Session("acme/m", trust_.publisher.get());
  const std::string one = "x";
  ASSERT_TRUE(repo_->chunks()->Put(Sha256Of(one), one).ok());
  const std::string clb = SerializeCanonical(Repeated(one, 200000));
  ASSERT_GT(clb.size(), 7u << 20);
  ASSERT_TRUE(repo_->StageChunkList(s, clb).ok());
  cairn::v1::Manifest m;
  m.set_name("acme/m");
  m.set_version("1");
  for (int i = 0; i < 150; ++i) {
    auto* f = m.add_files();
    f->set_path("f" + std::to_string(1000 + i));
    f->set_size(200000);
    f->set_sha256(DigestName(Sha256Of(std::string(200000, 'x'))));
    f->set_root(DigestName(Sha256Of(clb)));
  }
  CanonicalizeManifest(&m);
  std::string env = SerializeCanonical(
      *SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {trust_.publisher.get()}));
  const size_t before = testing::ResidentBytes();
  auto c = repo_->Commit(s, env, "");
  ASSERT_TRUE(c.ok()) << c.status();
  const size_t grown = testing::ResidentBytes() - std::min(before, testing::ResidentBytes());
  // 150 copies of the list alone would be 1.1 GiB.
  EXPECT_LT(grown, size_t{200} << 20) << (grown >> 20) << " MiB for one 7.6 MB list";
  EXPECT_TRUE(repo_->Resolve("acme/m@" + c->manifest_digest()).ok());
}

TEST_F(RepositoryTest, ACommitHoldsOneChunkListAtATime) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan's quarantine keeps freed memory resident";
#endif
  // 24 distinct 7.6 MB lists (180 MB): the old commit put every list into
  // one write batch (lists, batch and memtable: three copies at its peak).
  std::string s = Session("acme/m", trust_.publisher.get());
  const std::string one = "x";
  ASSERT_TRUE(repo_->chunks()->Put(Sha256Of(one), one).ok());
  cairn::v1::Manifest m;
  m.set_name("acme/m");
  m.set_version("1");
  cairn::v1::ChunkList cl = Repeated(one, 200001);  // [0]: the head, distinct per list
  for (int i = 0; i < 24; ++i) {
    const std::string head = "head" + std::to_string(i);
    ASSERT_TRUE(repo_->chunks()->Put(Sha256Of(head), head).ok());
    cl.mutable_chunks(0)->set_digest(std::string(DigestBytes(Sha256Of(head))));
    cl.mutable_chunks(0)->set_length(static_cast<uint32_t>(head.size()));
    const std::string clb = SerializeCanonical(cl);
    auto staged = repo_->StageChunkList(s, clb);
    ASSERT_TRUE(staged.ok()) << staged.status();
    auto* f = m.add_files();
    f->set_path("f" + std::to_string(1000 + i));
    f->set_size(200000 + head.size());
    f->set_sha256(DigestName(Sha256Of(head + std::string(200000, 'x'))));
    f->set_root(*staged);
  }
  CanonicalizeManifest(&m);
  std::string env = SerializeCanonical(
      *SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {trust_.publisher.get()}));
  const size_t before = testing::ResidentBytes();
  testing::ResetPeakResident();
  auto c = repo_->Commit(s, env, "");
  ASSERT_TRUE(c.ok()) << c.status();
  const size_t peak = testing::PeakResidentBytes();
  const size_t grown = peak - std::min(before, peak);
  // Old code: 478 MiB; now about 170 (one list, one 16 MiB batch, memtables).
  EXPECT_LT(grown, size_t{300} << 20) << (grown >> 20) << " MiB at the peak for 180 MB of lists";
  ASSERT_TRUE(repo_->Resolve("acme/m@" + c->manifest_digest()).ok());
  EXPECT_TRUE(repo_->GetObject(m.files(7).root()).ok());
}

TEST_F(RepositoryTest, AReleaseThatRepeatsItsBytesTooOftenIsRefused) {
  // Old code admitted a list naming one chunk N times, or N files naming one
  // list: every node and client then writes N copies. Now a release may
  // expand to at most kMaxExpansion times its distinct bytes plus 1 GiB.
  std::string s = Session("acme/m", trust_.publisher.get());
  const std::string mib = testing::RandomBytes(1 << 20, 7);
  ASSERT_TRUE(repo_->chunks()->Put(Sha256Of(mib), mib).ok());
  auto commit = [&](const std::string& version, int repeats, int files) {
    const std::string clb = SerializeCanonical(Repeated(mib, repeats));
    auto staged = repo_->StageChunkList(s, clb);
    EXPECT_TRUE(staged.ok()) << staged.status();
    cairn::v1::Manifest m;
    m.set_name("acme/m");
    m.set_version(version);
    for (int i = 0; i < files; ++i) {
      auto* f = m.add_files();
      f->set_path("f" + std::to_string(10 + i));
      f->set_size((uint64_t{1} << 20) * repeats);
      f->set_sha256(DigestName(Sha256Of("not checked at commit")));
      f->set_root(*staged);
    }
    CanonicalizeManifest(&m);
    return repo_->Commit(
        s,
        SerializeCanonical(
            *SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {trust_.publisher.get()})),
        "");
  };
  // 1 MiB repeated 1000 times: within 64 x 1 MiB + 1 GiB.
  EXPECT_TRUE(commit("1", 1000, 1).ok());
  s = Session("acme/m", trust_.publisher.get());
  auto one_list = commit("2", 1100, 1);
  EXPECT_THAT(one_list, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(one_list.status().message()), HasSubstr("repeated"));
  auto copies = commit("3", 600, 2);  // two files naming one 600 MiB list
  EXPECT_THAT(copies, StatusIs(absl::StatusCode::kInvalidArgument));
  // Files naming one list must agree on its size.
  cairn::v1::Manifest m;
  m.set_name("acme/m");
  m.set_version("4");
  for (int i = 0; i < 2; ++i) {
    auto* f = m.add_files();
    f->set_path("f" + std::to_string(i));
    f->set_size(1 + i);
    f->set_sha256(DigestName(Sha256Of("x")));
    f->set_root(DigestName(Sha256Of("list")));
  }
  absl::Status st = ValidateManifest(m);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(st.message()), HasSubstr("two sizes"));
}

TEST_F(RepositoryTest, TagVersionsMustIncrease) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env1 = Upload(s, "acme/m", "1", {{"a", "one"}}, trust_.publisher.get());
  ASSERT_TRUE(
      repo_->Commit(s, env1, Tag("acme/m", "latest", DigestOf(env1), 5, trust_.publisher.get()))
          .ok());
  // A commit ends its session, and what else it staged goes with it.
  s = Session("acme/m", trust_.publisher.get());
  std::string env2 = Upload(s, "acme/m", "2", {{"a", "two"}}, trust_.publisher.get());
  EXPECT_THAT(
      repo_->Commit(s, env2, Tag("acme/m", "latest", DigestOf(env2), 5, trust_.publisher.get())),
      StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(
      repo_->Commit(s, env2, Tag("acme/m", "latest", DigestOf(env2), 4, trust_.publisher.get())),
      StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(repo_->Resolve("acme/m")->manifest_digest(), DigestOf(env1));
  ASSERT_TRUE(
      repo_->Commit(s, env2, Tag("acme/m", "latest", DigestOf(env2), 6, trust_.publisher.get()))
          .ok());
  EXPECT_EQ(repo_->Resolve("acme/m")->manifest_digest(), DigestOf(env2));
}

TEST_F(RepositoryTest, RefusesExpiredAndMismatchedTags) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env = Upload(s, "acme/m", "1", {{"a", "one"}}, trust_.publisher.get());
  EXPECT_THAT(
      repo_->Commit(s, env, Tag("acme/m", "latest", DigestOf(env), 1, trust_.publisher.get(), -1)),
      StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(
      repo_->Commit(s, env,
                    Tag("acme/m", "latest", DigestName(Sha256Of("x")), 1, trust_.publisher.get())),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RepositoryTest, RefusesHostilePathEvenWhenSigned) {
  std::string s = Session("acme/m", trust_.publisher.get());
  cairn::v1::Manifest m;
  m.set_name("acme/m");
  m.set_version("1");
  auto* f = m.add_files();
  f->set_path("../../etc/cron.d/x");
  f->set_size(0);
  f->set_sha256(DigestName(Sha256Of("")));
  f->set_root(DigestName(Sha256Of("")));
  std::string env = SerializeCanonical(
      *SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {trust_.publisher.get()}));
  EXPECT_THAT(repo_->Commit(s, env, ""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RepositoryTest, FailedCommitLeavesNothingVisible) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string env =
      Upload(s, "acme/m", "1", {{"a", testing::RandomBytes(300000, 8)}}, trust_.publisher.get());
  std::string d = DigestOf(env);
  meta_->fail_next = true;
  EXPECT_FALSE(repo_->Commit(s, env, Tag("acme/m", "latest", d, 1, trust_.publisher.get())).ok());
  EXPECT_THAT(repo_->Resolve("acme/m"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo_->Resolve("acme/m@" + d), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(repo_->List("")->entries_size(), 0);
  // And the retry succeeds.
  ASSERT_TRUE(repo_->Commit(s, env, Tag("acme/m", "latest", d, 1, trust_.publisher.get())).ok());
}

TEST_F(RepositoryTest, LineageListsSignedParentsAndKnownChildren) {
  std::string s = Session("acme/base", trust_.publisher.get());
  std::string base = Upload(s, "acme/base", "1", {{"a", "base"}}, trust_.publisher.get());
  ASSERT_TRUE(repo_->Commit(s, base, "").ok());
  std::string s2 = Session("acme/ft", trust_.publisher.get());
  cairn::v1::Manifest m;
  cairn::v1::Envelope e;
  e.ParseFromString(Upload(s2, "acme/ft", "1", {{"a", "ft"}}, trust_.publisher.get()));
  m.ParseFromString(e.payload());
  auto* p = m.add_parents();
  p->set_name("acme/base");
  p->set_manifest_digest(DigestOf(base));
  p->set_relation(cairn::v1::RELATION_FINETUNE);
  std::string ft = SerializeCanonical(
      *SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {trust_.publisher.get()}));
  ASSERT_TRUE(repo_->Commit(s2, ft, "").ok());
  auto l = repo_->Lineage("acme/base@" + DigestOf(base));
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->children_size(), 1);
  EXPECT_EQ(l->children(0).name(), "acme/ft");
  EXPECT_EQ(l->children(0).relation(), cairn::v1::RELATION_FINETUNE);
}

TEST_F(RepositoryTest, SecondOpenOfDataDirectoryIsRefused) {
  testing::TempDir d;
  auto a = Repository::Open(d / "node", trust_.view);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = Repository::Open(d / "node", trust_.view);
  EXPECT_THAT(b, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("in use by another cairn-node"));
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST_F(RepositoryTest, FeedRecordsEachChangeOnceInOrderAndResumesFromACursor) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string e1 = Upload(s, "acme/m", "1", {{"a", "one"}}, trust_.publisher.get());
  // Each commit ends its session: a new one for the next.
  auto fresh = [&] { return Session("acme/m", trust_.publisher.get()); };
  ASSERT_TRUE(
      repo_->Commit(s, e1, Tag("acme/m", "latest", DigestOf(e1), 1, trust_.publisher.get())).ok());
  ASSERT_TRUE(repo_->Commit(fresh(), e1, "").ok());  // idempotent: no event
  s = fresh();
  std::string e2 = Upload(s, "acme/m", "2", {{"a", "two"}}, trust_.publisher.get());
  ASSERT_TRUE(repo_->Commit(s, e2, "").ok());
  ASSERT_TRUE(
      repo_->Commit(fresh(), e2, Tag("acme/m", "latest", DigestOf(e2), 2, trust_.publisher.get()))
          .ok());
  auto f = repo_->Feed(0, 0);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->snapshot());
  EXPECT_EQ(f->head(), 3u);
  ASSERT_EQ(f->events_size(), 3);
  EXPECT_EQ(f->events(0).seq(), 1u);
  EXPECT_EQ(f->events(0).manifest_digest(), DigestOf(e1));
  EXPECT_FALSE(f->events(0).tag_envelope().empty());
  EXPECT_EQ(f->events(1).manifest_digest(), DigestOf(e2));
  EXPECT_TRUE(f->events(1).tag_envelope().empty());
  EXPECT_EQ(f->events(2).manifest_digest(), DigestOf(e2));  // the tag moved
  EXPECT_FALSE(f->events(2).tag_envelope().empty());
  // Each event carries the signed manifest exactly as committed.
  EXPECT_EQ(f->events(0).manifest_envelope(), e1);
  // Resume from a cursor, and page.
  auto tail = repo_->Feed(2, 0);
  ASSERT_EQ(tail->events_size(), 1);
  EXPECT_EQ(tail->events(0).seq(), 3u);
  EXPECT_EQ(repo_->Feed(0, 2)->events_size(), 2);
  EXPECT_EQ(repo_->Feed(3, 0)->events_size(), 0);
  EXPECT_THAT(repo_->Feed(9, 0), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(RepositoryTest, FailedCommitAddsNoFeedEvent) {
  std::string s = Session("acme/m", trust_.publisher.get());
  std::string e1 = Upload(s, "acme/m", "1", {{"a", "one"}}, trust_.publisher.get());
  meta_->fail_next = true;
  EXPECT_FALSE(repo_->Commit(s, e1, "").ok());
  EXPECT_EQ(repo_->Feed(0, 0)->head(), 0u);
  ASSERT_TRUE(repo_->Commit(s, e1, "").ok());
  EXPECT_EQ(repo_->Feed(0, 0)->head(), 1u);
}

TEST(RepositoryFeedTest, StaleCursorGetsASnapshotAndTheFeedSurvivesRestart) {
  testing::TempDir dir;
  auto trust = TrustFixture::Make("acme");
  RepositoryOptions opts;
  opts.feed_retain = 2;
  opts.region = "af-east";
  std::string node_id;
  std::vector<std::string> envs;
  {
    auto repo = std::move(Repository::Open(dir / "node", trust.view, opts)).value();
    node_id = repo->node_id();
    for (int v = 1; v <= 4; ++v) {
      // A session per commit: a commit ends its session.
      auto c = repo->Challenge("acme/m");
      cairn::v1::OpenSessionRequest r;
      r.set_name("acme/m");
      r.set_challenge(c->challenge());
      auto* sig = r.add_signatures();
      sig->set_key_id(trust.publisher->key_id());
      sig->set_sig(*trust.publisher->Sign(Pae(kSessionPayloadType, c->challenge() + "\nacme/m")));
      std::string s = repo->OpenSession(r)->session_id();
      std::string data = "v" + std::to_string(v);
      Digest d = Sha256Of(data);
      ASSERT_TRUE(repo->chunks()->Put(d, data).ok());
      cairn::v1::ChunkList cl;
      cl.add_chunks()->set_digest(std::string(DigestBytes(d)));
      cl.mutable_chunks(0)->set_length(data.size());
      std::string clb = SerializeCanonical(cl);
      ASSERT_TRUE(repo->StageChunkList(s, clb).ok());
      cairn::v1::Manifest m;
      m.set_name("acme/m");
      m.set_version(std::to_string(v));
      auto* f = m.add_files();
      f->set_path("w");
      f->set_size(data.size());
      f->set_sha256(DigestName(d));
      f->set_root(DigestName(Sha256Of(clb)));
      envs.push_back(SerializeCanonical(
          *SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {trust.publisher.get()})));
      ASSERT_TRUE(repo->Commit(s, envs.back(), "").ok());
    }
    auto info = repo->NodeInfo();
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->region(), "af-east");
    EXPECT_EQ(info->feed_head(), 4u);
    EXPECT_EQ(info->releases(), 4u);
    ASSERT_EQ(info->namespaces_size(), 1);
    EXPECT_GT(info->free_bytes(), 0u);
  }
  auto repo = std::move(Repository::Open(dir / "node", trust.view, opts)).value();
  EXPECT_EQ(repo->node_id(), node_id);  // kept across restarts
  // Events 1 and 2 were dropped (retain 2): a follower at 3 gets the tail...
  auto tail = repo->Feed(2, 0);
  ASSERT_TRUE(tail.ok());
  EXPECT_FALSE(tail->snapshot());
  EXPECT_EQ(tail->events_size(), 2);
  // ...a follower at 0 or 1 gets every current release, and continues at head.
  auto snap = repo->Feed(1, 0);
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->snapshot());
  EXPECT_EQ(snap->head(), 4u);
  EXPECT_EQ(snap->events_size(), 4);
}

}  // namespace
}  // namespace cairn
