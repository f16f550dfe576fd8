// The repository on simulated time (challenges, sessions, quotas, pending
// releases expire; no test sleeps) and with a metadata store whose reads
// fail: an error is returned, never taken as "empty".
#include "cairn/objects.h"
#include "cairn/repository.h"
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

// ---- Expiry on simulated time (no test here sleeps) ----

TEST_F(RepositoryTest, ChallengesExpireAfterFiveMinutesAndSessionsAfterAnHour) {
  const std::string name = "acme/m";
  // A challenge answered after its 300 s is refused.
  auto c = repo_->Challenge(name);
  ASSERT_TRUE(c.ok());
  clock_.AdvanceSeconds(301);
  cairn::v1::OpenSessionRequest r;
  r.set_name(name);
  r.set_challenge(c->challenge());
  auto* sig = r.add_signatures();
  sig->set_key_id(trust_.publisher->key_id());
  sig->set_sig(*trust_.publisher->Sign(Pae(kSessionPayloadType, c->challenge() + "\n" + name)));
  EXPECT_THAT(repo_->OpenSession(r), StatusIs(absl::StatusCode::kUnauthenticated));
  // A session works until its hour is up, then not.
  std::string session = Session(name, trust_.publisher.get());
  clock_.AdvanceSeconds(3599);
  EXPECT_OK(repo_->CheckSession(session));
  clock_.AdvanceSeconds(1);
  EXPECT_THAT(repo_->CheckSession(session), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(repo_->StageChunkList(session, ""), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(RepositoryTest, UploadQuotaResetsAtMidnightUtc) {
  RepositoryOptions o;
  o.upload_bytes_per_day = 1000;
  // 23:59:50 UTC.
  SimulatedClock clock((SystemNowUnix() / 86400) * 86400 + 86400 - 10);
  testing::TempDir d;
  auto repo = std::move(Repository::Open(d / "node", trust_.view, o, &clock)).value();
  repo_ = std::move(repo);
  std::string session = Session("acme/q", trust_.publisher.get());
  EXPECT_OK(repo_->ChargeUpload(session, 900));
  auto over = repo_->ChargeUpload(session, 200);
  EXPECT_THAT(over, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(std::string(over.message()), HasSubstr("resets at 00:00 UTC (in 10 s)"));
  EXPECT_EQ(*repo_->UploadedToday(trust_.publisher->key_id()), 900u);
  clock.AdvanceSeconds(10);  // 00:00:00 UTC: a new day
  EXPECT_EQ(*repo_->UploadedToday(trust_.publisher->key_id()), 0u);
  EXPECT_OK(repo_->ChargeUpload(session, 1000));
  EXPECT_THAT(repo_->ChargeUpload(session, 1), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST_F(RepositoryTest, APendingReleaseExpiresAfterItsLifetime) {
  RequireTwoSignatures();
  std::string session = Session("acme/p", trust_.publisher.get());
  std::string menv = Upload(session, "acme/p", "1", {{"a.bin", "abc"}}, trust_.publisher.get());
  ASSERT_OK_AND_ASSIGN(auto committed, repo_->Commit(session, menv, ""));
  ASSERT_TRUE(committed.pending());
  clock_.AdvanceSeconds(7 * 86400 - 1);
  EXPECT_OK(repo_->GetPending(committed.manifest_digest()));
  clock_.AdvanceSeconds(1);
  auto gone = repo_->GetPending(committed.manifest_digest());
  EXPECT_THAT(gone, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("expired"));
}

// ---- Read errors are returned, never taken as "empty" ----

class ReadErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    base_ = std::move(OpenRocksMetaStore(dir_ / "meta")).value();
    chunks_ = std::move(OpenPackChunkStore(dir_ / "chunks", {})).value();
  }
  absl::StatusOr<std::unique_ptr<Repository>> Create() {
    auto meta = std::make_unique<testing::FaultInjectingMetaStore>(base_.get());
    faulty_ = meta.get();
    return Repository::Create(std::move(meta), std::make_unique<ChunkStoreWrapper>(chunks_.get()),
                              trust_.view, RepositoryOptions{}, &clock_);
  }
  testing::TempDir dir_;
  TrustFixture trust_;
  SimulatedClock clock_{SystemNowUnix()};
  std::unique_ptr<MetaStore> base_;
  std::unique_ptr<ChunkStore> chunks_;
  testing::FaultInjectingMetaStore* faulty_ = nullptr;
};

TEST_F(ReadErrorTest, AFeedHeadThatCannotBeReadStopsTheStartInsteadOfRewritingSequenceOne) {
  ASSERT_OK(
      base_->Commit({{Table::kState, "feed_head", "7"}, {Table::kState, "feed_tail", "1"}}, true));
  ASSERT_OK(Create().status());  // fine while the disk reads
  auto meta = std::make_unique<testing::FaultInjectingMetaStore>(base_.get());
  meta->FailReads(Table::kState, "feed_head");
  auto repo =
      Repository::Create(std::move(meta), std::make_unique<ChunkStoreWrapper>(chunks_.get()),
                         trust_.view, RepositoryOptions{}, &clock_);
  EXPECT_THAT(repo, StatusIs(absl::StatusCode::kDataLoss));
  // A corrupt head is DataLoss, not 0.
  ASSERT_OK(base_->Commit({{Table::kState, "feed_head", "x7"}}, true));
  EXPECT_THAT(Create(), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(ReadErrorTest, CursorTagVersionHeldReleaseAndQuotaReadsPropagate) {
  ASSERT_OK(base_->Commit({{Table::kState, "cursor/up", "42"}}, true));
  ASSERT_OK_AND_ASSIGN(auto repo, Create());
  EXPECT_EQ(*repo->GetCursor("cursor/up"), 42u);
  faulty_->FailReads(Table::kState);
  EXPECT_THAT(repo->GetCursor("cursor/up"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(repo->UploadedToday("somekey"), StatusIs(absl::StatusCode::kDataLoss));
  faulty_->Heal();
  faulty_->FailReads(Table::kTags);
  EXPECT_THAT(repo->TagVersion("acme/m", "latest"), StatusIs(absl::StatusCode::kDataLoss));
  faulty_->Heal();
  faulty_->FailReads(Table::kEnvelopes);
  EXPECT_THAT(repo->HasRelease("sha256:00"), StatusIs(absl::StatusCode::kDataLoss));
  faulty_->Heal();
  EXPECT_EQ(*repo->TagVersion("acme/m", "latest"), 0u);
  EXPECT_FALSE(*repo->HasRelease("sha256:00"));
}

TEST_F(ReadErrorTest, AFailedQuotaReadRefusesTheUploadInsteadOfResettingTheDay) {
  RepositoryOptions o;
  o.upload_bytes_per_day = 1000;
  auto meta = std::make_unique<testing::FaultInjectingMetaStore>(base_.get());
  faulty_ = meta.get();
  ASSERT_OK_AND_ASSIGN(
      auto repo,
      Repository::Create(std::move(meta), std::make_unique<ChunkStoreWrapper>(chunks_.get()),
                         trust_.view, o, &clock_));
  // 900 bytes already used today, persisted by an earlier run.
  ASSERT_OK(base_->Commit(
      {{Table::kState, StrCat("quota/", trust_.publisher->key_id(), "/", clock_.NowUnix() / 86400),
        "900"}},
      true));
  auto c = repo->Challenge("acme/q");
  ASSERT_TRUE(c.ok());
  cairn::v1::OpenSessionRequest r;
  r.set_name("acme/q");
  r.set_challenge(c->challenge());
  auto* sig = r.add_signatures();
  sig->set_key_id(trust_.publisher->key_id());
  sig->set_sig(*trust_.publisher->Sign(Pae(kSessionPayloadType, c->challenge() + "\nacme/q")));
  ASSERT_OK_AND_ASSIGN(auto session, repo->OpenSession(r));
  faulty_->FailReads(Table::kState);
  EXPECT_THAT(repo->ChargeUpload(session.session_id(), 500), StatusIs(absl::StatusCode::kDataLoss));
  faulty_->Heal();
  EXPECT_THAT(repo->ChargeUpload(session.session_id(), 500),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

}  // namespace
}  // namespace cairn
