// Federation beyond one upstream: tag and time-window policies, peers asked
// for chunks, and a real cairn-node process killed mid-replication.
#include "replication_loop.h"

#include <signal.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "cairn/objects.h"
#include "cairn/replication.h"
#include "cairn/repository.h"
#include "cairn/transport/grpc_upstream.h"
#include "client.h"
#include "federation_fixture.h"
#include "hostile_node.h"
#include "server.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::cairn::testing::TrustFixture;

using ::cairn::testing::CountingChunkStore;
using ::cairn::testing::FederationTest;
using ::cairn::testing::Node;

TEST_F(FederationTest, TagPolicyFetchesOnlyReleasesAFollowedTagNames) {
  auto a = Start("a"), b = Start("b");
  Publish(*a, Model("m", 1 << 20, 1), "acme/m", "latest");
  Publish(*a, Model("n", 1 << 20, 2), "acme/n", "beta");
  Publish(*a, Model("o", 1 << 20, 3), "acme/o", "");
  ReplicationPolicy p;
  p.tags = {"latest", "stable"};
  Replicator rep(b->repo.get(), std::make_unique<GrpcUpstream>(a->address(), 10), {}, p);
  ASSERT_TRUE(rep.SyncOnce().ok()) << rep.stats().last_error;
  EXPECT_TRUE(b->repo->Resolve("acme/m:latest").ok());
  EXPECT_THAT(b->repo->Resolve("acme/n"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(b->repo->Resolve("acme/o"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(rep.stats().events_outside_policy, 2u);
  EXPECT_LT(rep.stats().bytes_fetched, 2u << 20);  // one 1 MiB release, never the others
  // Anti-entropy follows the same rule.
  EXPECT_EQ(*rep.Reconcile(), 0);
  EXPECT_THAT(b->repo->Resolve("acme/n"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(FederationTest, EqualTagVersionsNamingDifferentReleasesAreKeptAndCountedAsConflicts) {
  // A signing error: tag acme/m:latest version 1 names one release on a and
  // another on b. b keeps its own, still takes a's release, and says so.
  auto a = Start("a"), b = Start("b");
  auto on_a = Publish(*a, Model("m1", 1 << 20, 11), "acme/m");
  client::PublishResult on_b;
  {
    auto conn = std::move(Connection::Open(b->address(), 10)).value();
    client::PublishOptions o;
    o.dir = Model("m2", 1 << 20, 12);
    o.name = "acme/m";
    o.version = "2";
    o.tag = "latest";
    o.tag_version = 1;
    o.key_paths = {dir_ / "keys/publisher.key"};
    on_b = *client::Publish(*conn, o);
  }
  ASSERT_NE(on_a.manifest, on_b.manifest);
  Replicator rep(b->repo.get(), std::make_unique<GrpcUpstream>(a->address(), 10));
  ASSERT_TRUE(rep.SyncOnce().ok()) << rep.stats().last_error;
  EXPECT_EQ(rep.stats().tag_conflicts, 1u);
  EXPECT_THAT(rep.stats().last_conflict, ::testing::HasSubstr("acme/m:latest version 1"));
  EXPECT_THAT(rep.stats().last_conflict, ::testing::HasSubstr(on_a.manifest));
  EXPECT_EQ(b->repo->Resolve("acme/m:latest")->manifest_digest(), on_b.manifest);
  EXPECT_TRUE(*b->repo->HasRelease(on_a.manifest));  // the release itself still lands
}

TEST_F(FederationTest, RevocationTravelsDownTheChainAndWithholdsWhatTheRevokedKeySigned) {
  // a <- b <- c. Two publisher keys for acme; one is revoked after its
  // release reached b, but before c caught up.
  auto a = Start("a"), b = Start("b"), c = Start("c");
  auto second = std::move(SigningKey::Generate()).value();
  ASSERT_TRUE(second->Save(dir_ / "keys/second.key").ok());
  cairn::v1::TrustRoot r = trust_.view.root();
  r.set_version(2);
  AddKey(&r, *second);
  r.mutable_delegations(0)->add_key_ids(second->key_id());
  const std::string v2 = *SignTrustRoot(r, {trust_.root.get()});
  r.set_version(3);
  r.add_revoked_key_ids(trust_.publisher->key_id());
  auto* keys = r.mutable_delegations(0)->mutable_key_ids();
  keys->erase(std::remove(keys->begin(), keys->end(), trust_.publisher->key_id()), keys->end());
  const std::string v3 = *SignTrustRoot(r, {trust_.root.get()});

  ASSERT_EQ(*a->repo->AdoptTrustChain({v2}), 1);
  auto revoked = Publish(*a, Model("m", 1 << 20, 21), "acme/m");
  client::PublishResult kept;
  {
    auto conn = std::move(Connection::Open(a->address(), 10)).value();
    client::PublishOptions o;
    o.dir = Model("n", 1 << 20, 22);
    o.name = "acme/n";
    o.version = "1";
    o.key_paths = {dir_ / "keys/second.key"};
    kept = *client::Publish(*conn, o);
  }
  Replicator ab(b->repo.get(), std::make_unique<GrpcUpstream>(a->address(), 10));
  ASSERT_TRUE(ab.SyncOnce().ok()) << ab.stats().last_error;
  EXPECT_EQ(b->repo->trust().root().version(), 2u);  // fetched from its upstream
  EXPECT_EQ(ab.stats().trust_updates, 1u);
  ASSERT_TRUE(b->repo->Resolve("acme/m").ok());

  // The revocation is offered to a only; b and c learn it by following.
  ASSERT_EQ(*a->repo->AdoptTrustChain({trust_.envelope, v2, v3}), 1);
  auto refused = a->repo->Resolve("acme/m");
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("withheld"));
  EXPECT_EQ(a->repo->NodeInfo()->releases_withheld(), 1u);
  EXPECT_EQ(a->repo->NodeInfo()->tags_withheld(), 1u);
  EXPECT_TRUE(*a->repo->HasRelease(revoked.manifest));  // kept on disk

  ASSERT_TRUE(ab.SyncOnce().ok()) << ab.stats().last_error;
  EXPECT_EQ(b->repo->trust().root().version(), 3u);
  EXPECT_THAT(b->repo->Resolve("acme/m"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(b->repo->Resolve("acme/n").ok());

  Replicator bc(c->repo.get(), std::make_unique<GrpcUpstream>(b->address(), 10));
  ASSERT_TRUE(bc.SyncOnce().ok()) << bc.stats().last_error;
  EXPECT_EQ(c->repo->trust().root().version(), 3u);  // walked v1 -> v2 -> v3
  EXPECT_TRUE(c->repo->Resolve("acme/n").ok());
  EXPECT_THAT(c->repo->Resolve("acme/m"), StatusIs(absl::StatusCode::kNotFound));  // never sent
  EXPECT_FALSE(*c->repo->HasRelease(revoked.manifest));
  EXPECT_EQ(bc.stats().cursor, b->repo->NodeInfo()->feed_head());  // moved past it
  EXPECT_EQ(bc.stats().events_refused, 0u);

  // A new release signed by the revoked key is refused, naming the key.
  auto conn = std::move(Connection::Open(a->address(), 10)).value();
  client::PublishOptions o;
  o.dir = dir_ / "m";
  o.name = "acme/m";
  o.version = "2";
  o.key_paths = {dir_ / "keys/publisher.key"};
  auto again = client::Publish(*conn, o);
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(again.status().message()),
              ::testing::HasSubstr(trust_.publisher->key_id()));
  // An offer that does not chain from the node's root changes nothing.
  auto stranger = TrustFixture::Make("acme");
  cairn::v1::TrustRoot sr = stranger.view.root();
  sr.set_version(4);
  EXPECT_FALSE(a->repo->AdoptTrustChain({*SignTrustRoot(sr, {stranger.root.get()})}).ok());
  EXPECT_EQ(a->repo->trust().root().version(), 3u);
}

TEST_F(FederationTest, ANodeRestartedOnItsOldTrustFileKeepsTheNewerRootsItStored) {
  cairn::v1::TrustRoot r = trust_.view.root();
  r.set_version(2);
  r.add_revoked_key_ids(trust_.publisher->key_id());
  r.mutable_delegations(0)->clear_key_ids();
  auto second = std::move(SigningKey::Generate()).value();
  AddKey(&r, *second);
  r.mutable_delegations(0)->add_key_ids(second->key_id());
  const std::string v2 = *SignTrustRoot(r, {trust_.root.get()});
  {
    auto repo = std::move(Repository::Open(dir_ / "node", trust_.view)).value();
    ASSERT_EQ(*repo->AdoptTrustChain({v2}), 1);
  }
  auto repo = std::move(Repository::Open(dir_ / "node", trust_.view)).value();
  EXPECT_EQ(repo->trust().root().version(), 2u);
  EXPECT_THAT(repo->trust_note(), ::testing::HasSubstr("using v2"));
  EXPECT_EQ(repo->TrustChainAfter(1)->size(), 1u);
  // Issue 12 #5: a v1 the node never stored (another lineage, or the same
  // version with other bytes) used to make it start over from the file,
  // back at v1. It never goes back: the start is refused, nothing changes.
  repo.reset();
  auto other = TrustFixture::Make("acme");
  auto refused = Repository::Open(dir_ / "node", other.view);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("never goes back to an older trust root"));
  repo = std::move(Repository::Open(dir_ / "node", trust_.view)).value();
  EXPECT_EQ(repo->trust().root().version(), 2u);
  // The same v2 with one more signature in the file: the stored chain
  // follows from it.
  repo.reset();
  const std::string v2_cosigned = *SignTrustRoot(r, {trust_.root.get(), second.get()});
  auto file_v2 = std::move(TrustRootView::FromEnvelopeBytes(v2_cosigned, kIgnoreExpiry)).value();
  repo = std::move(Repository::Open(dir_ / "node", file_v2)).value();
  EXPECT_EQ(repo->trust().root().version(), 2u);
  // A newer file moves the node forward, whatever it held.
  repo.reset();
  cairn::v1::TrustRoot o3 = other.view.root();
  o3.set_version(3);
  auto file_v3 = std::move(TrustRootView::FromEnvelopeBytes(*SignTrustRoot(o3, {other.root.get()}),
                                                            kIgnoreExpiry))
                     .value();
  repo = std::move(Repository::Open(dir_ / "node", file_v3)).value();
  EXPECT_EQ(repo->trust().root().version(), 3u);
}

TEST_F(FederationTest, ALongPolledFeedAnswersOnTheNextCommitAndOnShutdown) {
  auto a = Start("a");
  auto stub = cairn::v1::Federation::NewStub(NewChannel(a->address(), {}));
  auto poll = [&](uint64_t after, uint32_t wait_ms, cairn::v1::FeedResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    cairn::v1::FeedRequest req;
    req.set_after(after);
    req.set_wait_ms(wait_ms);
    return stub->Feed(&ctx, req, out);
  };
  // Nothing new: held for about wait_ms, then answered empty.
  cairn::v1::FeedResponse empty;
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(poll(0, 700, &empty).ok());
  EXPECT_EQ(empty.events_size(), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(600));
  // A commit while the call is held answers it with the event.
  cairn::v1::FeedResponse got;
  grpc::Status st;
  std::thread waiter([&] { st = poll(0, 30000, &got); });
  ASSERT_TRUE(testing::WaitUntil([&] { return a->server->parked_feed_calls() == 1; }));
  t0 = std::chrono::steady_clock::now();
  Publish(*a, Model("m", 1 << 16, 31), "acme/m");
  waiter.join();
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(got.events_size(), 1);
  EXPECT_EQ(got.events(0).name(), "acme/m");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));  // not the 30 s
  // A cursor behind the head is answered at once, a cursor past it too.
  ASSERT_TRUE(poll(0, 30000, &got).ok());
  EXPECT_EQ(got.events_size(), 1);
  // Shutdown answers a held call instead of waiting for it.
  std::thread held([&] { st = poll(1, 30000, &got); });
  ASSERT_TRUE(testing::WaitUntil([&] { return a->server->parked_feed_calls() == 1; }));
  t0 = std::chrono::steady_clock::now();
  a->server->Shutdown(10);
  held.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(8));
}

// A window [start, end) that contains (or not) the current local minute.
std::pair<int, int> WindowAroundNow(bool open) {
  time_t t = std::time(nullptr);
  struct tm local;
  localtime_r(&t, &local);
  int m = local.tm_hour * 60 + local.tm_min;
  if (open) return {(m + 1440 - 30) % 1440, (m + 30) % 1440};
  return {(m + 60) % 1440, (m + 120) % 1440};
}

TEST_F(FederationTest, NothingIsFetchedOutsideTheTimeWindow) {
  auto a = Start("a"), b = Start("b");
  Publish(*a, Model("m", 1 << 20, 4), "acme/m");
  ReplicationPolicy closed;
  closed.windows = {WindowAroundNow(false)};
  Replicator shut(b->repo.get(), std::make_unique<GrpcUpstream>(a->address(), 10), {}, closed);
  ASSERT_TRUE(shut.SyncOnce().ok());
  EXPECT_TRUE(shut.stats().outside_window);
  EXPECT_EQ(shut.stats().bytes_fetched, 0u);
  EXPECT_EQ(shut.stats().cursor, 0u);  // fetched later, not skipped
  EXPECT_EQ(*shut.Reconcile(), 0);
  EXPECT_THAT(b->repo->Resolve("acme/m"), StatusIs(absl::StatusCode::kNotFound));

  ReplicationPolicy open;
  open.windows = {WindowAroundNow(true)};
  Replicator rep(b->repo.get(), std::make_unique<GrpcUpstream>(a->address(), 10), {}, open);
  ASSERT_TRUE(rep.SyncOnce().ok());
  EXPECT_FALSE(rep.stats().outside_window);
  EXPECT_TRUE(b->repo->Resolve("acme/m").ok());
}

TEST(ReplicationPolicyTest, TimeWindowsParseAndWrapPastMidnight) {
  EXPECT_EQ(*ReplicationPolicy::ParseWindow("01:00-06:00"), std::make_pair(60, 360));
  EXPECT_EQ(*ReplicationPolicy::ParseWindow("22:30-02:00"), std::make_pair(1350, 120));
  EXPECT_EQ(*ReplicationPolicy::ParseWindow("18:00-24:00"), std::make_pair(1080, 0));
  for (const char* bad : {"1:00-06:00", "25:00-01:00", "01:00-01:00", "01:60-02:00", "abc", "01:00",
                          "01:00-02:00-03:00", ""}) {
    EXPECT_THAT(ReplicationPolicy::ParseWindow(bad), StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  ReplicationPolicy p;
  EXPECT_TRUE(p.InWindow(std::time(nullptr)));  // no window: always
  p.windows = {WindowAroundNow(true)};
  EXPECT_TRUE(p.InWindow(std::time(nullptr)));
  p.windows = {WindowAroundNow(false)};
  EXPECT_FALSE(p.InWindow(std::time(nullptr)));
}

TEST_F(FederationTest, ChunksAlsoComeFromPeersThatHoldThem) {
  auto a = Start("a"), b = Start("b"), c = Start("c");
  Publish(*a, Model("m", 8 << 20, 5), "acme/m");
  Replicator ab(b->repo.get(), std::make_unique<GrpcUpstream>(a->address(), 10));
  ASSERT_TRUE(ab.SyncOnce().ok());
  int a_before = a->counting->total();
  // C follows A, and knows B as a peer.
  Replicator ac(c->repo.get(), std::make_unique<GrpcUpstream>(
                                   a->address(), 10, std::vector<std::string>{b->address()}));
  ASSERT_TRUE(ac.SyncOnce().ok()) << ac.stats().last_error;
  EXPECT_TRUE(c->repo->Resolve("acme/m").ok());
  int from_a = a->counting->total() - a_before, from_b = b->counting->total();
  size_t unique = Chunks(a->repo.get(), "acme/m").size();
  EXPECT_GT(from_b, 0) << "the peer was never asked";
  EXPECT_GT(from_a, 0);
  EXPECT_GE(static_cast<size_t>(from_a + from_b), unique);
  // Endgame duplicates (the tail asked of both) stay a fraction.
  EXPECT_LE(static_cast<size_t>(from_a + from_b), unique + unique / 2);
}

TEST_F(FederationTest, APeerServingCorruptChunksIsPassedOver) {
  auto a = Start("a"), c = Start("c");
  Publish(*a, Model("m", 16 << 20, 6), "acme/m");  // more than the first windows
  testing::HostileNode bad(a->repo.get(), a->counting, testing::Attack::kWrongChunkBytes);
  Replicator ac(c->repo.get(), std::make_unique<GrpcUpstream>(
                                   a->address(), 10, std::vector<std::string>{bad.address()}));
  ASSERT_TRUE(ac.SyncOnce().ok()) << ac.stats().last_error;
  EXPECT_TRUE(c->repo->Resolve("acme/m").ok());
  EXPECT_GT(bad.chunks_served.load(), 0u);
  // Everything C holds verifies.
  for (const auto& d : Chunks(c->repo.get(), "acme/m")) {
    std::string data;
    ASSERT_TRUE(c->repo->chunks()->Get(d, &data).ok());
  }
}

}  // namespace
}  // namespace cairn
