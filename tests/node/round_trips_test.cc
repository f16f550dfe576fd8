// Round trips before the first chunk: what a Feed or Resolve answer carries
// (trust roots, chunk lists) so a follower or a client on a long link does
// not ask for each on its own.
#include "replication_fixture.h"

namespace cairn {
namespace {

// A release of 20 files whose chunk lists the feed does not carry: they are
// asked for in batches (one round trip per 8 on a long link), yet the
// replicator calls its upstream from one thread, one call at a time, as
// Upstream promises. It called GetObject from eight std::async threads before.
TEST_F(ReplicationTest, TheReplicatorKeepsTheUpstreamContractOneCallAtATime) {
  TestNode a = Start("a", trust_.view), b = Start("b", trust_.view);
  Publish(a, ManyFiles(20), "acme/many");
  auto checked =
      std::make_unique<ContractCheckingUpstream>(std::make_unique<GrpcUpstream>(a.address(), 10));
  ContractCheckingUpstream* u = checked.get();
  u->list_budget_ = 0;
  Replicator rep(b.repo.get(), std::move(checked));
  ASSERT_TRUE(rep.SyncOnce().ok()) << rep.stats().last_error;
  EXPECT_EQ(rep.stats().releases_committed, 1u);
  EXPECT_EQ(u->max_in_flight_.load(), 1);
  {
    absl::MutexLock l(&u->mu_);
    EXPECT_EQ(u->threads_.size(), 1u);
  }
  EXPECT_EQ(u->batches_.load(), 3);  // 20 lists: 8 + 8 + 4
}

// On a long link every call before the first chunk costs a round trip: the
// feed's answer carries newer trust roots and the events' chunk lists, so a
// follower asks for neither on its own. A list that does not fit the budget
// is asked for as before; every carried list is still checked against the
// signed manifest.
TEST_F(ReplicationTest, TrustRootsAndChunkListsRideOnTheFeed) {
  TestNode a = Start("a", trust_.view), b = Start("b", trust_.view), c = Start("c", trust_.view);
  cairn::v1::TrustRoot r = trust_.view.root();
  r.set_version(2);
  ASSERT_EQ(*a.repo->AdoptTrustChain({*SignTrustRoot(r, {trust_.root.get()})}), 1);
  Publish(a, ManyFiles(20), "acme/many");

  auto checked =
      std::make_unique<ContractCheckingUpstream>(std::make_unique<GrpcUpstream>(a.address(), 10));
  ContractCheckingUpstream* u = checked.get();
  Replicator rep(b.repo.get(), std::move(checked));
  ASSERT_TRUE(rep.SyncOnce().ok()) << rep.stats().last_error;
  EXPECT_EQ(rep.stats().releases_committed, 1u);
  EXPECT_EQ(b.repo->trust().root().version(), 2u);
  EXPECT_EQ(rep.stats().trust_updates, 1u);
  EXPECT_EQ(u->trust_calls_.load(), 0);  // the feed carried the root
  EXPECT_EQ(u->batches_.load(), 0);      // and all 20 lists

  // A budget for about half of them: the rest is asked for, in batches.
  auto half =
      std::make_unique<ContractCheckingUpstream>(std::make_unique<GrpcUpstream>(a.address(), 10));
  ContractCheckingUpstream* h = half.get();
  auto m = a.repo->Resolve("acme/many");
  ASSERT_TRUE(m.ok());
  std::string digest;
  auto parsed = VerifyManifestEnvelope(a.repo->trust(), m->manifest_envelope(), &digest);
  ASSERT_TRUE(parsed.ok());
  h->list_budget_ = static_cast<int>(a.repo->GetObject(parsed->files(0).root())->size() * 10);
  Replicator half_rep(c.repo.get(), std::move(half));
  ASSERT_TRUE(half_rep.SyncOnce().ok()) << half_rep.stats().last_error;
  EXPECT_EQ(half_rep.stats().releases_committed, 1u);
  EXPECT_GE(h->batches_.load(), 1);
  EXPECT_LE(h->batches_.load(), 2);  // 8 + 2 of the 10 or so not carried
  EXPECT_TRUE(c.repo->Resolve("acme/many").ok());
}

// A pull's resolve answer carries the release's chunk lists: on a long link
// no round trip per list comes before the first chunk. Lists past the
// budget are asked for as before; a file already pulled needs none.
TEST_F(ReplicationTest, APullsResolveAnswerCarriesTheChunkLists) {
  TestNode a = Start("a", trust_.view);
  const std::string many = ManyFiles(20);
  Publish(a, many, "acme/many");
  auto r = PullFrom(a, "acme/many");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->lists_carried, 20u);
  EXPECT_EQ(r->lists_fetched, 0u);
  for (int i = 0; i < 20; ++i) {
    const std::string f = "/f" + std::to_string(i) + ".bin";
    EXPECT_EQ(testing::ReadFile(dir_ / "out" + f), testing::ReadFile(many + f));
  }
  // The node's answer within a budget: the first lists, in manifest order.
  cairn::v1::ResolveRequest req;
  req.set_ref("acme/many");
  req.set_chunk_list_bytes(1);
  cairn::v1::ResolveResponse resp;
  auto conn = std::move(Connection::Open(a.address(), 10)).value();
  auto ctx = conn->Context();
  ASSERT_TRUE(conn->registry()->Resolve(ctx.get(), req, &resp).ok());
  EXPECT_EQ(resp.chunk_lists_size(), 0);
}

// The node's side: what it carries is bounded by the request's budget, which
// it caps, and trust roots come only when asked for.
TEST_F(ReplicationTest, TheFeedCarriesListsWithinItsBudgetAndRootsOnlyWhenAsked) {
  TestNode a = Start("a", trust_.view);
  Publish(a, ManyFiles(20), "acme/many");
  cairn::v1::FeedRequest req;
  auto plain = a.repo->Feed(req);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->has_trust());
  EXPECT_EQ(plain->chunk_lists_size(), 0);
  req.set_trust_after(1);
  req.set_chunk_list_bytes(1u << 30);  // capped at Repository::kFeedListBytes
  auto full = a.repo->Feed(req);
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(full->has_trust());
  EXPECT_EQ(full->trust().chain_size(), 0);  // none newer than v1
  EXPECT_EQ(full->chunk_lists_size(), 20);
  req.set_chunk_list_bytes(static_cast<uint32_t>(full->chunk_lists(0).size() * 3));
  auto three = a.repo->Feed(req);
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->chunk_lists_size(), 3);
}

// An upstream whose Feed answer carries no newer root (it is behind, or
// hides a revocation) does not end the search: the follower's peers are
// asked, as the TrustRoot path always did.
TEST_F(ReplicationTest, AnEmptyCarriedChainStillAsksThePeers) {
  TestNode a = Start("a", trust_.view), p = Start("p", trust_.view), b = Start("b", trust_.view);
  cairn::v1::TrustRoot r = trust_.view.root();
  r.set_version(2);
  ASSERT_EQ(*p.repo->AdoptTrustChain({*SignTrustRoot(r, {trust_.root.get()})}), 1);
  Publish(a, Model("m", 3), "acme/m");
  Replicator rep(b.repo.get(),
                 std::make_unique<GrpcUpstream>(a.address(), 10, std::vector{p.address()}));
  ASSERT_TRUE(rep.SyncOnce().ok()) << rep.stats().last_error;
  EXPECT_EQ(b.repo->trust().root().version(), 2u);
  EXPECT_EQ(rep.stats().releases_committed, 1u);
}

}  // namespace
}  // namespace cairn
