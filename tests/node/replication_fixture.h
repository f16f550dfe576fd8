// The replication tests' fixture: real nodes on 127.0.0.1:0 and upstream
// wrappers that break or watch what a test needs.
#pragma once

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "cairn/objects.h"
#include "cairn/replication.h"
#include "cairn/repository.h"
#include "cairn/transport/grpc_upstream.h"
#include "cairn/trust.h"
#include "cairn/verify.h"
#include "client.h"
#include "replication_loop.h"
#include "server.h"
#include "testing.h"

namespace cairn {

using ::cairn::testing::StatusIs;
using ::cairn::testing::TrustFixture;

struct TestNode {
  std::unique_ptr<Repository> repo;
  std::unique_ptr<node::NodeServer> server;
  std::string address() const { return server->address(); }
  void Stop() {
    server->Shutdown(0);
    server.reset();
  }
};

// Fails GetChunks after `budget` chunks: an upstream that dies mid-release.
class FlakyUpstream : public UpstreamWrapper {
 public:
  FlakyUpstream(std::unique_ptr<Upstream> inner, int budget)
      : UpstreamWrapper(std::move(inner)), budget_(budget) {}
  absl::Status GetChunks(const std::vector<ChunkWant>& wanted, const ChunkSink& sink) override {
    return target()->GetChunks(wanted, [&](const Digest& d, std::string_view b) -> absl::Status {
      if (budget_-- <= 0) return absl::UnavailableError("upstream went away");
      fetched_++;
      return sink(d, b);
    });
  }
  int budget_;
  int fetched_ = 0;
};

// Counts calls in flight and the threads they come from: the Upstream
// contract is one caller at a time (Cancel aside).
class ContractCheckingUpstream : public UpstreamWrapper {
 public:
  using UpstreamWrapper::UpstreamWrapper;
  struct Call {
    explicit Call(ContractCheckingUpstream* u) : u_(u) {
      int now = ++u_->in_flight_;
      int seen = u_->max_in_flight_.load();
      while (now > seen && !u_->max_in_flight_.compare_exchange_weak(seen, now)) {
      }
      absl::MutexLock l(&u_->mu_);
      u_->threads_.insert(std::this_thread::get_id());
    }
    ~Call() { --u_->in_flight_; }
    ContractCheckingUpstream* u_;
  };
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t a, uint32_t m) override {
    Call c(this);
    return UpstreamWrapper::Feed(a, m);
  }
  absl::StatusOr<std::string> GetObject(const std::string& d) override {
    Call c(this);
    return UpstreamWrapper::GetObject(d);
  }
  std::vector<absl::StatusOr<std::string>> GetObjects(const std::vector<std::string>& d) override {
    Call c(this);
    batches_++;
    return UpstreamWrapper::GetObjects(d);
  }
  absl::Status GetChunks(const std::vector<ChunkWant>& w, const ChunkSink& sink) override {
    Call c(this);
    return UpstreamWrapper::GetChunks(w, sink);
  }
  absl::StatusOr<std::vector<std::string>> TrustChain(uint64_t after) override {
    Call c(this);
    trust_calls_++;
    return UpstreamWrapper::TrustChain(after);
  }
  // With list_budget_ >= 0, the feed carries at most that many bytes of
  // chunk lists (0: an upstream that carries none).
  void SetFeedExtras(std::optional<uint64_t> trust_after, uint32_t bytes) override {
    if (list_budget_ >= 0) bytes = std::min<uint32_t>(bytes, list_budget_);
    UpstreamWrapper::SetFeedExtras(trust_after, bytes);
  }
  int list_budget_ = -1;
  std::atomic<int> in_flight_{0}, max_in_flight_{0}, batches_{0}, trust_calls_{0};
  absl::Mutex mu_;
  std::set<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
};

class ReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    trust_.Save(dir_ / "keys");
  }
  TestNode Start(const std::string& name, const TrustRootView& trust) {
    TestNode n;
    n.repo = std::move(Repository::Open(dir_ / name, trust)).value();
    n.server = std::move(node::NodeServer::Start(n.repo.get(), "127.0.0.1:0")).value();
    return n;
  }
  client::PublishResult Publish(const TestNode& n, const std::string& dir, const std::string& name,
                                const std::string& base = "") {
    auto conn = std::move(Connection::Open(n.address(), 10)).value();
    client::PublishOptions o;
    o.dir = dir;
    o.name = name;
    o.version = "1";
    o.key_paths = {dir_ / "keys/publisher.key"};
    o.base = base;
    auto r = client::Publish(*conn, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : client::PublishResult{};
  }
  std::string Model(const std::string& name, uint64_t seed) {
    std::string d = dir_ / name;
    testing::WriteFile(d + "/model.safetensors",
                       testing::MakeSafetensors(std::vector<size_t>(20, 256 << 10), seed));
    return d;
  }
  // `ref` pulled from `n` into dir_/out (store dir_/store).
  absl::StatusOr<client::PullResult> PullFrom(const TestNode& n, const std::string& ref) {
    auto conn = std::move(Connection::Open(n.address(), 10)).value();
    client::PullOptions po;
    po.ref = ref;
    po.out = dir_ / "out";
    po.store_dir = dir_ / "store";
    return client::Pull(*conn, trust_.view, po);
  }
  // A release of `n` small files (one chunk list each).
  std::string ManyFiles(int n) {
    std::string d = dir_ / "many";
    for (int i = 0; i < n; ++i) {
      testing::WriteFile(d + "/f" + std::to_string(i) + ".bin",
                         testing::RandomBytes(40000, 100 + i));
    }
    return d;
  }
  testing::TempDir dir_;
  TrustFixture trust_;
};

}  // namespace cairn
