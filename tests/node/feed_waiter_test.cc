// The long-polled feed and node info never wait for a commit's disk sync.
#include "feed_waiter.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "cairn/repository.h"
#include "client.h"
#include "server.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::TrustFixture;

// Holds the commit that adds a release inside MetaStore::Commit (where the
// fdatasync happens) until the test lets it go: a disk that is slow to sync.
class SlowSyncMetaStore : public MetaStoreWrapper {
 public:
  using MetaStoreWrapper::MetaStoreWrapper;
  absl::Status Commit(const std::vector<WriteOp>& ops, bool sync) override {
    bool release = false;
    for (const auto& op : ops) release |= op.table == Table::kReleases;
    if (release && sync) {
      entered.Notify();
      go.WaitForNotification();
    }
    return MetaStoreWrapper::Commit(ops, sync);
  }
  absl::Notification entered, go;
};

TEST(FeedWaiterTest, FeedAndNodeInfoAnswerWhileACommitWaitsForItsSync) {
  testing::TempDir dir;
  TrustFixture trust = TrustFixture::Make("acme");
  trust.Save(dir / "keys");
  auto base = std::move(OpenRocksMetaStore(dir / "meta")).value();
  auto slow = std::make_unique<SlowSyncMetaStore>(base.get());
  SlowSyncMetaStore* meta = slow.get();
  auto repo = std::move(Repository::Create(
                            std::move(slow),
                            std::move(OpenPackChunkStore(dir / "chunks", {})).value(), trust.view))
                  .value();
  auto server = std::move(node::NodeServer::Start(repo.get(), "127.0.0.1:0")).value();
  testing::WriteFile(dir / "m/w.bin", testing::RandomBytes(100000, 3));
  std::thread publisher([&] {
    auto conn = std::move(Connection::Open(server->address(), 30)).value();
    client::PublishOptions o;
    o.dir = dir / "m";
    o.name = "acme/m";
    o.version = "1";
    o.key_paths = {dir / "keys/publisher.key"};
    EXPECT_TRUE(client::Publish(*conn, o).ok());
  });
  meta->entered.WaitForNotification();  // the commit holds its lock, syncing
  auto stub = cairn::v1::Federation::NewStub(NewChannel(server->address(), {}));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    cairn::v1::FeedRequest req;
    req.set_after(0);
    req.set_wait_ms(100);
    cairn::v1::FeedResponse resp;
    grpc::Status st = stub->Feed(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();  // held 100 ms, answered empty
    EXPECT_EQ(resp.events_size(), 0);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    cairn::v1::NodeInfoResponse info;
    grpc::Status st = stub->NodeInfo(&ctx, {}, &info);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(info.feed_head(), 0u);
  }
  meta->go.Notify();
  publisher.join();
  EXPECT_EQ(repo->FeedHead(), 1u);
  server->Shutdown(0);
}

}  // namespace
}  // namespace cairn
