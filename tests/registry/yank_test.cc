// Yank records: a publisher-signed word that no tag may lead to a release;
// by digest or version it still resolves, with the record. Applied by
// commits, by followers from the feed and by bundle imports, newest version
// first; withdrawn by a later record.
#include "cairn/bundle.h"
#include "cairn/objects.h"
#include "cairn/replication.h"
#include "cairn/status.h"
#include "cairn/verify.h"
#include "repository_fixture.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::RepositoryTest;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

class YankTest : public RepositoryTest {
 protected:
  // Publishes acme/m `version` tagged latest (tag version `tag_version`).
  std::string Publish(const std::string& version, uint64_t tag_version = 1) {
    std::string s = Session("acme/m", trust_.publisher.get());
    std::string env = Upload(s, "acme/m", version, {{"w.bin", testing::RandomBytes(250000, 7)}},
                             trust_.publisher.get());
    auto c = repo_->Commit(
        s, env, Tag("acme/m", "latest", DigestOf(env), tag_version, trust_.publisher.get()));
    EXPECT_TRUE(c.ok()) << c.status();
    envelopes_[DigestOf(env)] = env;
    return DigestOf(env);
  }

  std::string Yank(const std::string& digest, uint64_t version, bool yanked,
                   const std::string& reason, const SigningKey* key = nullptr,
                   const std::string& name = "acme/m") {
    cairn::v1::YankRecord y;
    y.set_name(name);
    y.set_manifest_digest(digest);
    y.set_version(version);
    y.set_yanked(yanked);
    y.set_reason(reason);
    y.set_created_unix(now_);
    return SerializeCanonical(*SignEnvelope(kYankPayloadType, SerializeCanonical(y),
                                            {key ? key : trust_.publisher.get()}));
  }

  absl::StatusOr<cairn::v1::CommitResponse> CommitYank(const std::string& digest,
                                                       const std::string& yank) {
    std::string s = Session("acme/m", trust_.publisher.get());
    return repo_->Commit(s, envelopes_[digest], "", "", yank);
  }

  std::map<std::string, std::string> envelopes_;
};

TEST_F(YankTest, NoTagLeadsToAYankedReleaseButItsDigestAndVersionDo) {
  const std::string d = Publish("1.0");
  const uint64_t head = repo_->FeedHead();
  auto c = CommitYank(d, Yank(d, 1, true, "tokenizer.json is truncated"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->already_present());

  // By tag: refused, saying why and how to get it anyway.
  auto by_tag = repo_->Resolve("acme/m:latest");
  EXPECT_THAT(by_tag, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(by_tag.status().message(), HasSubstr("tokenizer.json is truncated"));
  EXPECT_THAT(by_tag.status().message(), HasSubstr("acme/m@" + d));
  // By digest and by version: answered, with the signed record.
  for (const std::string& ref : {"acme/m@" + d, std::string("acme/m@1.0")}) {
    auto r = repo_->Resolve(ref);
    ASSERT_TRUE(r.ok()) << ref << ": " << r.status();
    auto y = VerifyYankEnvelope(trust_.view, r->yank_envelope());
    ASSERT_TRUE(y.ok()) << y.status();
    EXPECT_TRUE(y->yanked());
    EXPECT_EQ(y->reason(), "tokenizer.json is truncated");
  }
  // Listed as yanked; the feed carries the record to followers.
  auto list = repo_->List("acme/m");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->entries(0).releases_size(), 1);
  EXPECT_TRUE(list->entries(0).releases(0).yanked());
  EXPECT_EQ(list->entries(0).releases(0).yank_reason(), "tokenizer.json is truncated");
  auto feed = repo_->Feed(head, 100);
  ASSERT_TRUE(feed.ok());
  ASSERT_EQ(feed->events_size(), 1);
  EXPECT_FALSE(feed->events(0).yank_envelope().empty());
  EXPECT_TRUE(feed->events(0).tag_envelope().empty());
  // The release's own, earlier event carries the yank too: a follower that
  // starts now does not fetch what was yanked before it came.
  auto from_start = repo_->Feed(0, 100);
  ASSERT_TRUE(from_start.ok());
  ASSERT_EQ(from_start->events_size(), 2);
  EXPECT_FALSE(from_start->events(0).tag_envelope().empty());
  EXPECT_FALSE(from_start->events(0).yank_envelope().empty());

  // The same record again changes nothing; an older or equal one is refused.
  ASSERT_TRUE(CommitYank(d, Yank(d, 1, true, "tokenizer.json is truncated")).ok());
  EXPECT_EQ(repo_->FeedHead(), head + 1);
  EXPECT_THAT(CommitYank(d, Yank(d, 1, false, "oops")), StatusIs(absl::StatusCode::kAlreadyExists));

  // Withdrawn by version 2: the tag leads to it again.
  ASSERT_TRUE(CommitYank(d, Yank(d, 2, false, "fixed upstream")).ok());
  auto again = repo_->Resolve("acme/m:latest");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->manifest_digest(), d);
  EXPECT_FALSE(repo_->List("acme/m")->entries(0).releases(0).yanked());
}

TEST_F(YankTest, OnlyADelegatedKeyYanksAndOnlyAHeldRelease) {
  const std::string d = Publish("1.0");
  auto stranger = std::move(SigningKey::Generate()).value();
  EXPECT_THAT(CommitYank(d, Yank(d, 1, true, "mine now", stranger.get())),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // A record naming another release or another name.
  const std::string other = DigestName(Sha256Of("another manifest"));
  EXPECT_THAT(CommitYank(d, Yank(other, 1, true, "x")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Not with a tag in the same commit.
  std::string s = Session("acme/m", trust_.publisher.get());
  EXPECT_THAT(repo_->Commit(s, envelopes_[d], Tag("acme/m", "latest", d, 2, trust_.publisher.get()),
                            "", Yank(d, 1, true, "x")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A release the node does not hold cannot be yanked through a publish.
  std::string s2 = Session("acme/m", trust_.publisher.get());
  std::string env2 = Upload(s2, "acme/m", "2.0", {{"x.bin", testing::RandomBytes(1000, 3)}},
                            trust_.publisher.get());
  EXPECT_THAT(repo_->Commit(s2, env2, "", "", Yank(DigestOf(env2), 1, true, "x")),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(repo_->Resolve("acme/m@2.0"), StatusIs(absl::StatusCode::kNotFound));
  // Nothing of it was applied.
  EXPECT_TRUE(repo_->Resolve("acme/m:latest").ok());
}

TEST_F(YankTest, ATagCannotBeMovedOntoAYankedRelease) {
  const std::string d1 = Publish("1.0");
  const std::string d2 = Publish("2.0", 2);
  ASSERT_TRUE(CommitYank(d1, Yank(d1, 1, true, "bad weights")).ok());
  std::string s = Session("acme/m", trust_.publisher.get());
  auto c = repo_->Commit(s, envelopes_[d1], Tag("acme/m", "latest", d1, 3, trust_.publisher.get()));
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(c.status().message(), HasSubstr("bad weights"));
  EXPECT_EQ(repo_->Resolve("acme/m:latest")->manifest_digest(), d2);
}

TEST_F(YankTest, RecordsAreCheckedBeforeTheyAreSigned) {
  cairn::v1::YankRecord y;
  y.set_name("acme/m");
  y.set_manifest_digest(DigestName(Sha256Of("m")));
  y.set_version(1);
  y.set_reason("line one\nline two");
  EXPECT_THAT(ParseYankRecord(SerializeCanonical(y)), StatusIs(absl::StatusCode::kInvalidArgument));
  for (const char* bad : {"8-bit CSI \xc2\x9b[2J", "line\xe2\x80\xa8separator",
                          "right-to-left \xe2\x80\xae override", "del\x7f", ""}) {
    y.set_yanked(true);
    y.set_reason(bad);
    EXPECT_THAT(ParseYankRecord(SerializeCanonical(y)),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  y.set_reason("caf\xc3\xa9: \xe6\xa8\xa1\xe5\x9e\x8b is broken");  // printable UTF-8
  EXPECT_TRUE(ParseYankRecord(SerializeCanonical(y)).ok());
  y.set_reason(std::string(kMaxYankReasonBytes + 1, 'x'));
  EXPECT_THAT(ParseYankRecord(SerializeCanonical(y)), StatusIs(absl::StatusCode::kInvalidArgument));
  y.set_reason("ok");
  y.set_version(0);
  EXPECT_THAT(ParseYankRecord(SerializeCanonical(y)), StatusIs(absl::StatusCode::kInvalidArgument));
  y.set_version(1);
  EXPECT_TRUE(ParseYankRecord(SerializeCanonical(y)).ok());
  // Signed as a tag, it is not a yank.
  auto env = SignEnvelope(kTagPayloadType, SerializeCanonical(y), {trust_.publisher.get()});
  EXPECT_THAT(VerifyYankEnvelope(trust_.view, SerializeCanonical(*env)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// A follower: the release arrives by bundle (carrying a yank made before
// the export), the withdrawal and a new yank arrive as feed events, a stale
// record is dropped, and the newest version wins.
TEST_F(YankTest, FollowersApplyTheNewestRecordFromBundlesAndTheFeed) {
  const std::string d = Publish("1.0");
  ASSERT_TRUE(CommitYank(d, Yank(d, 1, true, "first")).ok());
  auto dst = std::move(Repository::Open(dir_ / "dst", trust_.view, {}, &clock_)).value();
  {
    auto w = VolumeWriter::Create(dir_ / "m.cairn", VolumeWriter::kNoSplit, NewBundleId());
    ASSERT_TRUE(w.ok());
    auto src = RepositorySource(repo_.get());
    ExportOptions o;
    o.refs = {"acme/m@" + d};
    ASSERT_TRUE(ExportBundle(*src, o, w->get()).ok());
    auto in = VolumeReader::Open({dir_ / "m.cairn"});
    ASSERT_TRUE(in.ok());
    auto r = ImportBundle(dst.get(), in->get());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->releases_size(), 1);
    ASSERT_GE(r->releases(0).notes_size(), 1);
    EXPECT_THAT(r->releases(0).notes(0), HasSubstr("yanked by its publisher: first"));
  }
  auto y = dst->Resolve("acme/m@" + d);
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(DecodeYankEnvelope(y->yank_envelope())->reason(), "first");

  const uint64_t head = repo_->FeedHead();
  ASSERT_TRUE(CommitYank(d, Yank(d, 2, false, "withdrawn")).ok());
  const std::string v3 = Yank(d, 3, true, "third");
  ASSERT_TRUE(CommitYank(d, v3).ok());
  auto feed = repo_->Feed(head, 100);
  ASSERT_TRUE(feed.ok());
  ASSERT_EQ(feed->events_size(), 2);
  // Applied out of order: v3 first, then v2 is stale and dropped.
  for (int i : {1, 0}) {
    const auto& ev = feed->events(i);
    auto c =
        dst->CommitReplicated(ev.manifest_envelope(), ev.tag_envelope(), ev.yank_envelope(), "", 0);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->yank_not_newer(), i == 0);
  }
  auto now = dst->Resolve("acme/m@" + d);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->yank_envelope(), v3);
  EXPECT_THAT(dst->Resolve("acme/m:latest"), StatusIs(absl::StatusCode::kNotFound));
}

// Anti-entropy carries yank records the feed missed: a follower whose
// cursor is past the yank event learns it from the upstream's summary; a
// record of the same version that says something else is a conflict,
// counted once, and the follower keeps its own.
TEST_F(YankTest, AntiEntropyBringsYanksTheFeedMissedAndCountsConflicts) {
  const std::string d = Publish("1.0");
  auto dst = std::move(Repository::Open(dir_ / "dst", trust_.view, {}, &clock_)).value();
  Replicator rep(dst.get(), RepositorySource(repo_.get()));
  ASSERT_TRUE(rep.SyncOnce().ok());
  ASSERT_TRUE(dst->Resolve("acme/m:latest").ok());
  const std::string v1 = Yank(d, 1, true, "bad tokenizer");
  ASSERT_TRUE(CommitYank(d, v1).ok());
  // The yank event is lost to the follower: its cursor already passed it.
  auto id = RepositorySource(repo_.get())->NodeId();
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(dst->SetCursor("cursor/" + *id, repo_->FeedHead()).ok());
  ASSERT_TRUE(rep.SyncOnce().ok());
  ASSERT_TRUE(dst->Resolve("acme/m:latest").ok()) << "the feed did not bring it";
  auto fixed = rep.Reconcile();
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(*fixed, 1);
  EXPECT_THAT(dst->Resolve("acme/m:latest"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(dst->Resolve("acme/m@" + d)->yank_envelope(), v1);
  EXPECT_EQ(*rep.Reconcile(), 0) << "in step: nothing more to fetch";

  // Version 2 signed twice, differently: each side holds its own.
  const std::string theirs = Yank(d, 2, false, "withdrawn: tokenizer was fine");
  const std::string ours = Yank(d, 2, true, "still bad");
  ASSERT_TRUE(CommitYank(d, theirs).ok());
  ASSERT_TRUE(dst->CommitReplicated(envelopes_[d], "", ours, "", 0).ok());
  ASSERT_TRUE(rep.Reconcile().ok());
  EXPECT_EQ(rep.stats().yank_conflicts, 1u);
  EXPECT_THAT(rep.stats().last_conflict, HasSubstr("differs from the one held"));
  EXPECT_EQ(dst->Resolve("acme/m@" + d)->yank_envelope(), ours);
  ASSERT_TRUE(rep.Reconcile().ok());
  EXPECT_EQ(rep.stats().yank_conflicts, 1u) << "counted once";
  // A newer record settles it everywhere.
  const std::string v3 = Yank(d, 3, false, "withdrawn for good");
  ASSERT_TRUE(CommitYank(d, v3).ok());
  ASSERT_TRUE(rep.Reconcile().ok());
  EXPECT_EQ(dst->Resolve("acme/m@" + d)->yank_envelope(), v3);
  EXPECT_EQ(dst->Resolve("acme/m:latest")->manifest_digest(), d);
}

// Dropping by policy: with a yanked retention, a pass past it drops the
// release (its chunks go as garbage), keeps its tag and yank records, and
// marks it evicted so a follower's feed does not bring it back; un-yanked
// before the period is over, it stays. The default keeps yanked releases.
TEST_F(YankTest, YankedReleasesAreDroppedOnlyWhenAPolicySaysSo) {
  const std::string d1 = Publish("1.0");
  const std::string d2 = Publish("2.0", 2);
  ASSERT_TRUE(CommitYank(d1, Yank(d1, 1, true, "bad")).ok());
  ASSERT_TRUE(CommitYank(d2, Yank(d2, 1, true, "bad too")).ok());
  GcOptions keep;
  keep.grace_seconds = 0;
  auto r = repo_->CollectGarbage(keep);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->yanked_dropped, 0u);
  GcOptions drop = keep;
  drop.yanked_retention_seconds = 86400;
  EXPECT_EQ(repo_->CollectGarbage(drop)->yanked_dropped, 0u);  // first seen now
  ASSERT_TRUE(CommitYank(d2, Yank(d2, 2, false, "fine after all")).ok());
  clock_.Advance(std::chrono::hours(25));
  r = repo_->CollectGarbage(drop);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->yanked_dropped, 1u);
  EXPECT_THAT(repo_->Resolve("acme/m@" + d1), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(*repo_->IsEvicted(d1));
  EXPECT_TRUE(repo_->Resolve("acme/m@" + d2).ok());  // un-yanked in time
  EXPECT_FALSE(*repo_->IsEvicted(d2));
  EXPECT_EQ(repo_->List("acme/m")->entries(0).releases_size(), 1);
}

}  // namespace
}  // namespace cairn
