// Nodes with replication loops, for the federation tests: a FederationTest
// fixture that starts real nodes on 127.0.0.1 and publishes to them.
#pragma once

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
#include "hostile_node.h"
#include "replication_loop.h"
#include "server.h"
#include "testing.h"

namespace cairn::testing {

// Counts how often each chunk is read (each read is one chunk served).
class CountingChunkStore : public ChunkStoreWrapper {
 public:
  using ChunkStoreWrapper::ChunkStoreWrapper;
  absl::Status Get(const Digest& d, std::string* out) override {
    {
      absl::MutexLock l(&mu_);
      gets_[d]++;
      total_++;
    }
    return ChunkStoreWrapper::Get(d, out);
  }
  int total() {
    absl::MutexLock l(&mu_);
    return total_;
  }
  int gets(const Digest& d) {
    absl::MutexLock l(&mu_);
    auto it = gets_.find(d);
    return it == gets_.end() ? 0 : it->second;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<Digest, int, DigestHash> gets_;
  int total_ = 0;
};

struct Node {
  std::unique_ptr<ChunkStore> base;
  CountingChunkStore* counting = nullptr;
  std::unique_ptr<Repository> repo;
  std::unique_ptr<node::NodeServer> server;
  std::string address() const { return server->address(); }
  ~Node() {
    if (server) server->Shutdown(0);
  }
};

class FederationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    trust_.Save(dir_ / "keys");
  }
  std::unique_ptr<Node> Start(const std::string& name) {
    auto n = std::make_unique<Node>();
    n->base = std::move(OpenPackChunkStore(dir_ / (name + "/chunks"), {})).value();
    auto counting = std::make_unique<CountingChunkStore>(n->base.get());
    n->counting = counting.get();
    n->repo =
        std::move(Repository::Create(std::move(OpenRocksMetaStore(dir_ / (name + "/meta"))).value(),
                                     std::move(counting), trust_.view))
            .value();
    n->server = std::move(node::NodeServer::Start(n->repo.get(), "127.0.0.1:0")).value();
    return n;
  }
  client::PublishResult Publish(const Node& n, const std::string& dir, const std::string& name,
                                const std::string& tag = "latest") {
    auto conn = std::move(Connection::Open(n.address(), 10)).value();
    client::PublishOptions o;
    o.dir = dir;
    o.name = name;
    o.version = "1";
    o.tag = tag;
    o.key_paths = {dir_ / "keys/publisher.key"};
    auto r = client::Publish(*conn, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : client::PublishResult{};
  }
  // The replication status of the node at `address` (its first upstream);
  // nullopt while it cannot say.
  static std::optional<cairn::v1::UpstreamStatus> UpstreamOf(const std::string& address) {
    auto conn = Connection::Open(address, 10);
    if (!conn.ok()) return std::nullopt;
    auto info = client::NodeStatus(**conn);
    if (!info.ok() || info->upstreams_size() != 1) return std::nullopt;
    return info->upstreams(0);
  }
  // Resolves `ref` on `conn` once the node holds it (bounded wait).
  absl::StatusOr<client::Resolved> ResolveOnce(Connection& conn, const std::string& ref) {
    absl::StatusOr<client::Resolved> r = absl::NotFoundError("never asked");
    testing::WaitUntil([&] { return (r = client::ResolveVerified(conn, &trust_.view, ref)).ok(); },
                       absl::Seconds(60));
    return r;
  }

  // A config file for a cairn-node at `data` following `upstream`, capped
  // at `cap` bytes/s (0: no cap).
  std::string FollowerConfig(const std::string& data, const std::string& upstream, uint64_t cap) {
    std::string path = dir_ / "c.toml";
    std::ofstream f(path);
    f << "[node]\ndata = \"" << data << "\"\nlisten = \"127.0.0.1:0\"\ntrust = \""
      << (dir_ / "keys/trust.root") << "\"\n[[upstream]]\naddress = \"" << upstream << "\"\n";
    if (cap) f << "max_bytes_per_second = " << cap << "\n";
    return path;
  }

  std::string Model(const std::string& name, size_t bytes, uint64_t seed) {
    std::string d = dir_ / name;
    testing::WriteFile(d + "/w.bin", testing::RandomBytes(bytes, seed));
    return d;
  }
  // Every chunk of `name`'s release on `repo`.
  std::vector<Digest> Chunks(Repository* repo, const std::string& name) {
    std::vector<Digest> out;
    auto res = repo->Resolve(name);
    EXPECT_TRUE(res.ok()) << res.status();
    if (!res.ok()) return out;
    cairn::v1::Envelope env;
    cairn::v1::Manifest man;
    env.ParseFromString(res->manifest_envelope());
    man.ParseFromString(env.payload());
    std::set<Digest> seen;
    for (const auto& f : man.files()) {
      cairn::v1::ChunkList cl;
      cl.ParseFromString(*repo->GetObject(f.root()));
      for (const auto& c : cl.chunks()) {
        Digest d = *DigestFromBytes(c.digest());
        if (seen.insert(d).second) out.push_back(d);
      }
    }
    return out;
  }
  testing::TempDir dir_;
  TrustFixture trust_;
};

}  // namespace cairn::testing
