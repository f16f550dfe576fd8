// Integration tests: a real cairn node (gRPC on 127.0.0.1:0) over stores the
// test can observe and break, driven by the client library and the real CLI.
#include "server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "client.h"
#include "fault_stores.h"
#include "model_store.h"
#include "nlohmann/json.hpp"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::cairn::testing::TrustFixture;
using ::testing::HasSubstr;

// Counts Gets per chunk; can slow them down or corrupt them.
class ObservedChunkStore : public testing::FaultInjectingChunkStore {
 public:
  using testing::FaultInjectingChunkStore::FaultInjectingChunkStore;
  absl::Status Get(const Digest& d, std::string* out) override {
    {
      absl::MutexLock l(&mu_);
      gets_[d]++;
      total_gets_++;
    }
    if (delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us_.load()));
    return testing::FaultInjectingChunkStore::Get(d, out);
  }
  int total_gets() {
    absl::MutexLock l(&mu_);
    return total_gets_;
  }
  absl::flat_hash_map<Digest, int, DigestHash> gets() {
    absl::MutexLock l(&mu_);
    return gets_;
  }
  std::atomic<int> delay_us_{0};

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<Digest, int, DigestHash> gets_;
  int total_gets_ = 0;
};

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    trust_.Save(dir_ / "keys");
    meta_ = std::move(OpenRocksMetaStore(dir_ / "meta")).value();
    base_chunks_ = std::move(OpenPackChunkStore(dir_ / "chunks", {})).value();
    auto observed = std::make_unique<ObservedChunkStore>(base_chunks_.get());
    chunks_ = observed.get();
    auto meta = std::make_unique<MetaStoreWrapper>(meta_.get());
    meta_view_ = meta_.get();
    repo_ =
        std::move(Repository::Create(std::move(meta), std::move(observed), trust_.view)).value();
    server_ = std::move(node::NodeServer::Start(repo_.get(), "127.0.0.1:0")).value();
    conn_ = std::move(Connection::Open(server_->address(), 10)).value();
  }
  void TearDown() override {
    conn_.reset();
    server_->Shutdown(0);
    server_.reset();
  }

  // A model directory: a safetensors file and two small files.
  std::string MakeModel(const std::string& name, size_t tensors, size_t tensor_bytes,
                        uint64_t seed) {
    std::string d = dir_ / name;
    testing::WriteFile(d + "/model.safetensors",
                       testing::MakeSafetensors(std::vector<size_t>(tensors, tensor_bytes), seed));
    testing::WriteFile(d + "/config.json", "{\"hidden\": 64}");
    testing::WriteFile(d + "/tokenizer/vocab.txt", testing::RandomBytes(5000, seed + 1));
    return d;
  }

  absl::StatusOr<client::PublishResult> PublishDir(const std::string& dir, const std::string& name,
                                                   const std::string& version) {
    client::PublishOptions o;
    o.dir = dir;
    o.name = name;
    o.version = version;
    o.key_paths = {dir_ / "keys/publisher.key"};
    return client::Publish(*conn_, o);
  }

  client::PullOptions PullOpts(const std::string& ref, const std::string& out) {
    client::PullOptions o;
    o.ref = ref;
    o.out = dir_ / out;
    o.store_dir = dir_ / "cache";
    o.fsync = false;
    return o;
  }

  std::string Cli() { return testing::CairnBin(); }

  testing::TempDir dir_;
  TrustFixture trust_;
  std::unique_ptr<MetaStore> meta_;
  MetaStore* meta_view_;
  std::unique_ptr<ChunkStore> base_chunks_;
  ObservedChunkStore* chunks_;
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<node::NodeServer> server_;
  std::unique_ptr<Connection> conn_;
};

TEST_F(NodeTest, PublishPullRoundTripIsByteExact) {
  std::string model = MakeModel("m", 8, 256 << 10, 1);
  auto pub = PublishDir(model, "acme/m", "1");
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(pub->bytes_uploaded, pub->bytes_total);
  auto pull = client::Pull(*conn_, trust_.view, PullOpts("acme/m", "out"));
  ASSERT_TRUE(pull.ok()) << pull.status();
  EXPECT_EQ(pull->manifest, pub->manifest);
  for (const char* f : {"model.safetensors", "config.json", "tokenizer/vocab.txt"}) {
    EXPECT_EQ(testing::ReadFile(dir_ / ("out/" + std::string(f))),
              testing::ReadFile(model + "/" + f))
        << f;
  }
  auto v = client::VerifyTree(dir_ / "out", trust_.view);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->problems.empty());
  EXPECT_EQ(v->files_ok, 3u);
}

TEST_F(NodeTest, SecondPullFetchesNothingAndRepublishUploadsNothing) {
  std::string model = MakeModel("m", 4, 256 << 10, 2);
  ASSERT_TRUE(PublishDir(model, "acme/m", "1").ok());
  ASSERT_TRUE(client::Pull(*conn_, trust_.view, PullOpts("acme/m", "a")).ok());
  auto second = client::Pull(*conn_, trust_.view, PullOpts("acme/m", "b"));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->bytes_fetched, 0u);
  EXPECT_EQ(second->chunks_local, second->chunks_total);
  auto again = PublishDir(model, "acme/m", "1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->bytes_uploaded, 0u);
  EXPECT_TRUE(again->already_present);
}

TEST_F(NodeTest, DerivativeCostsOnlyItsChangedTensors) {
  std::string base = MakeModel("base", 40, 1 << 20, 3);
  auto b = PublishDir(base, "acme/base", "1");
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(client::Pull(*conn_, trust_.view, PullOpts("acme/base", "pb")).ok());
  std::filesystem::copy(base, dir_ / "ft", std::filesystem::copy_options::recursive);
  std::string st = testing::ReadFile(dir_ / "ft/model.safetensors");
  uint64_t changed = testing::MutateTensors(&st, 0.10, 4);
  testing::WriteFile(dir_ / "ft/model.safetensors", st);
  client::PublishOptions o;
  o.dir = dir_ / "ft";
  o.name = "acme/ft";
  o.version = "1";
  o.key_paths = {dir_ / "keys/publisher.key"};
  o.base = "acme/base@" + b->manifest;
  auto d = client::Publish(*conn_, o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_LE(d->bytes_uploaded, changed * 102 / 100);
  EXPECT_GE(d->bytes_uploaded, changed);
  auto p = client::Pull(*conn_, trust_.view, PullOpts("acme/ft", "pf"));
  ASSERT_TRUE(p.ok());
  EXPECT_LE(p->bytes_fetched, changed * 102 / 100);
  EXPECT_LE(double(p->bytes_fetched) / p->bytes_total, 0.12);
  EXPECT_EQ(testing::ReadFile(dir_ / "pf/model.safetensors"), st);
}

// Starts `argv` in the background, stdout to /dev/null and stderr to
// `err_path` (or inherited when empty).
pid_t SpawnCli(std::vector<std::string> argv, const std::string& err_path) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    if (!err_path.empty()) ::dup2(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
    auto args = std::vector<char*>();
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Ctrl-C: the pull stops, keeps what it wrote, says how to resume and exits
// 130; the same command then fetches only the rest.
TEST_F(NodeTest, InterruptedPullSaysHowToResumeAndExits130) {
  std::string model = MakeModel("m", 16, 1 << 20, 7);
  ASSERT_TRUE(PublishDir(model, "acme/m", "1").ok());
  chunks_->delay_us_ = 3000;
  std::vector<std::string> argv = {Cli(),
                                   "pull",
                                   "acme/m",
                                   "--out",
                                   dir_ / "out",
                                   "--node",
                                   server_->address(),
                                   "--trust",
                                   dir_ / "keys/trust.root",
                                   "--store",
                                   dir_ / "store",
                                   "--json"};
  const std::string err_path = dir_ / "pull.err";
  pid_t pid = SpawnCli(argv, err_path);
  ASSERT_TRUE(testing::WaitUntil([&] { return chunks_->total_gets() >= 100; }));
  ::kill(pid, SIGINT);
  int status;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by the signal instead of stopping";
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_THAT(testing::ReadFile(err_path), HasSubstr("run the same command again to resume"));
  // The streams the interrupt cancelled are not blamed on the node.
  EXPECT_THAT(testing::ReadFile(err_path), Not(HasSubstr("any more")));
  // The node may still be reading chunks for the streams the interrupted
  // client left (on a loaded machine a whole batch): count once they are
  // closed, or the resumed pull is charged with those reads.
  chunks_->delay_us_ = 0;
  ASSERT_TRUE(testing::WaitUntil([&] { return server_->open_chunk_streams() == 0; }));
  const int before = chunks_->total_gets();
  auto r = testing::Run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["chunks_local"].get<int>(), 0) << "nothing written before the interrupt was kept";
  EXPECT_LT(chunks_->total_gets() - before, j["chunks_total"].get<int>());
  EXPECT_EQ(testing::ReadFile(dir_ / "out/model.safetensors"),
            testing::ReadFile(model + "/model.safetensors"));
}

TEST_F(NodeTest, KilledPullResumesWithoutFetchingAnyChunkTwice) {
  std::string model = MakeModel("m", 16, 1 << 20, 5);
  ASSERT_TRUE(PublishDir(model, "acme/m", "1").ok());
  chunks_->delay_us_ = 3000;  // ~3 ms per chunk: the pull takes about a second
  std::vector<std::string> argv = {Cli(),
                                   "pull",
                                   "acme/m",
                                   "--out",
                                   dir_ / "out",
                                   "--node",
                                   server_->address(),
                                   "--trust",
                                   dir_ / "keys/trust.root",
                                   "--cache",
                                   dir_ / "cache",
                                   "--json"};
  pid_t pid = SpawnCli(argv, "");
  // Kill it once about a third of the chunks went out.
  ASSERT_TRUE(testing::WaitUntil([&] { return chunks_->total_gets() >= 100; }));
  ::kill(pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
  int before = chunks_->total_gets();
  ASSERT_GT(before, 50);
  // Which of the model's chunks reached a file the client's store indexed
  // before the kill?
  std::vector<Digest> all;
  auto res = repo_->Resolve("acme/m");
  ASSERT_TRUE(res.ok());
  cairn::v1::Envelope env;
  cairn::v1::Manifest man;
  ASSERT_TRUE(env.ParseFromString(res->manifest_envelope()) && man.ParseFromString(env.payload()));
  for (const auto& f : man.files()) {
    cairn::v1::ChunkList cl;
    ASSERT_TRUE(cl.ParseFromString(*repo_->GetObject(f.root())));
    for (const auto& c : cl.chunks()) all.push_back(*DigestFromBytes(c.digest()));
  }
  std::set<Digest> cached;
  {
    auto store = std::move(client::ModelStore::Open(dir_ / "cache")).value();
    for (const auto& d : all) {
      if (*store->Has(d)) cached.insert(d);
    }
  }
  ASSERT_GT(cached.size(), 0u);
  ASSERT_LT(cached.size(), std::set<Digest>(all.begin(), all.end()).size());
  // The killed pull left its partial file, which a tree check names.
  auto partials = [&] {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "out")) {
      if (e.path().filename().string().rfind(".cairn-partial-", 0) == 0) {
        out.push_back(e.path().filename());
      }
    }
    return out;
  };
  ASSERT_EQ(partials().size(), 1u) << "the kill did not land inside the file";
  chunks_->delay_us_ = 0;
  auto r = testing::Run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The resumed pull removed what the killed one left.
  EXPECT_TRUE(partials().empty());
  EXPECT_THAT(r.err, HasSubstr("removed 1 partial file(s) left by an interrupted pull"));
  auto verified = client::VerifyTree(dir_ / "out", trust_.view);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->extra.empty());
  // A file the manifest does not name is reported by verify.
  testing::WriteFile(dir_ / "out/stray.bin", "x");
  verified = client::VerifyTree(dir_ / "out", trust_.view);
  ASSERT_TRUE(verified.ok());
  EXPECT_EQ(verified->extra, std::vector<std::string>{"stray.bin"});
  auto second = nlohmann::json::parse(r.out);
  // Nothing that reached the cache is asked for again...
  auto gets = chunks_->gets();
  for (const auto& d : cached) EXPECT_EQ(gets[d], 1) << "re-fetched a cached chunk";
  // ...and the resumed pull fetches exactly the rest.
  EXPECT_EQ(second["chunks_fetched"].get<size_t>(),
            std::set<Digest>(all.begin(), all.end()).size() - cached.size());
  EXPECT_EQ(second["chunks_local"].get<size_t>(),
            all.size() - second["chunks_fetched"].get<size_t>());
  EXPECT_EQ(testing::ReadFile(dir_ / "out/model.safetensors"),
            testing::ReadFile(model + "/model.safetensors"));
}

TEST_F(NodeTest, CorruptBytesFromNodeAreRefusedAndNeverWritten) {
  std::string model = MakeModel("m", 4, 256 << 10, 6);
  ASSERT_TRUE(PublishDir(model, "acme/m", "1").ok());
  chunks_->CorruptReads(true);
  auto r = client::Pull(*conn_, trust_.view, PullOpts("acme/m", "out"));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("corrupt bytes"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out/model.safetensors"));
  // No temporary file left behind either.
  for (auto& e : std::filesystem::recursive_directory_iterator(dir_ / "out")) {
    EXPECT_TRUE(e.is_directory()) << "left behind: " << e.path();
  }
  // And the corrupt bytes did not enter the cache: a clean pull works.
  chunks_->CorruptReads(false);
  ASSERT_TRUE(client::Pull(*conn_, trust_.view, PullOpts("acme/m", "out")).ok());
}

TEST_F(NodeTest, NodeRefusesUploadedChunkWhoseBytesDoNotMatch) {
  client::PublishOptions o;
  cairn::v1::ChallengeRequest creq;
  creq.set_name("acme/m");
  cairn::v1::ChallengeResponse cresp;
  auto ctx = conn_->Context();
  ASSERT_TRUE(conn_->publish()->Challenge(ctx.get(), creq, &cresp).ok());
  cairn::v1::OpenSessionRequest sreq;
  sreq.set_name("acme/m");
  sreq.set_challenge(cresp.challenge());
  auto* s = sreq.add_signatures();
  s->set_key_id(trust_.publisher->key_id());
  s->set_sig(*trust_.publisher->Sign(Pae(kSessionPayloadType, cresp.challenge() + "\nacme/m")));
  cairn::v1::OpenSessionResponse sresp;
  auto ctx2 = conn_->Context();
  ASSERT_TRUE(conn_->publish()->OpenSession(ctx2.get(), sreq, &sresp).ok());
  cairn::v1::PutChunksResponse presp;
  auto ctx3 = conn_->Context();
  auto w = conn_->publish()->PutChunks(ctx3.get(), &presp);
  cairn::v1::PutChunksRequest req;
  req.set_session_id(sresp.session_id());
  auto* c = req.add_chunks();
  Digest claimed = Sha256Of("the real bytes");
  c->set_digest(std::string(DigestBytes(claimed)));
  c->set_data("forged bytes");
  w->Write(req);
  w->WritesDone();
  grpc::Status st = w->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_FALSE(*chunks_->Has(claimed));
}

TEST_F(NodeTest, ChunkUploadWithoutSessionIsRefused) {
  cairn::v1::PutChunksResponse presp;
  auto ctx = conn_->Context();
  auto w = conn_->publish()->PutChunks(ctx.get(), &presp);
  cairn::v1::PutChunksRequest req;
  req.set_session_id("made-up");
  auto* c = req.add_chunks();
  c->set_digest(std::string(DigestBytes(Sha256Of("x"))));
  c->set_data("x");
  w->Write(req);
  w->WritesDone();
  EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_FALSE(*chunks_->Has(Sha256Of("x")));
}

TEST_F(NodeTest, PullRefusesHostilePathFromASignedManifestBeforeWriting) {
  // A rogue (but delegated) publisher signs a manifest with a hostile path and
  // a node stores it without checking (written straight into its tables).
  cairn::v1::Manifest m;
  m.set_name("acme/evil");
  m.set_version("1");
  auto* f = m.add_files();
  f->set_path("../escaped.txt");
  f->set_size(1);
  f->set_sha256(DigestName(Sha256Of("x")));
  f->set_root(DigestName(Sha256Of("x")));
  std::string payload = SerializeCanonical(m);
  std::string env =
      SerializeCanonical(*SignEnvelope(kManifestPayloadType, payload, {trust_.publisher.get()}));
  std::string digest = DigestName(Sha256Of(payload));
  ASSERT_TRUE(meta_view_->Commit({{Table::kEnvelopes, digest, env}}, true).ok());
  auto r = client::Pull(*conn_, trust_.view, PullOpts("acme/evil@" + digest, "out"));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("unsafe path"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "escaped.txt"));
}

TEST_F(NodeTest, PullAgainstUnrelatedTrustRootWritesNothing) {
  std::string model = MakeModel("m", 2, 100000, 7);
  ASSERT_TRUE(PublishDir(model, "acme/m", "1").ok());
  auto other = TrustFixture::Make("acme");
  auto r = client::Pull(*conn_, other.view, PullOpts("acme/m", "out"));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out"));
}

TEST_F(NodeTest, PublishRefusesFileThatChangesWhileBeingRead) {
  std::string d = dir_ / "changing";
  testing::WriteFile(d + "/big.bin", testing::RandomBytes(64 << 20, 8));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    int fd = ::open((d + "/big.bin").c_str(), O_WRONLY);
    uint64_t i = 0;
    while (!stop) {
      char b = static_cast<char>(i);
      ::pwrite(fd, &b, 1, (i * 7919) % (64 << 20));
      ++i;
    }
    ::close(fd);
  });
  auto r = PublishDir(d, "acme/m", "1");
  stop = true;
  writer.join();
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("changed while being read"));
  EXPECT_THAT(repo_->Resolve("acme/m"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(NodeTest, PublishRefusesEmptyDirectoryAndSymlinks) {
  std::filesystem::create_directories(dir_ / "empty");
  EXPECT_THAT(PublishDir(dir_ / "empty", "acme/m", "1"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::string d = MakeModel("withlink", 1, 1000, 9);
  std::filesystem::create_symlink("/etc/passwd", d + "/passwd");
  auto r = PublishDir(d, "acme/m", "1");
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("symlink"));
}

TEST_F(NodeTest, PullDoesNotFollowSymlinksPlantedInTheOutputDirectory) {
  std::string model = MakeModel("m", 1, 1000, 10);
  ASSERT_TRUE(PublishDir(model, "acme/m", "1").ok());
  std::filesystem::create_directories(dir_ / "out");
  std::filesystem::create_directories(dir_ / "elsewhere");
  std::filesystem::create_directory_symlink(dir_ / "elsewhere", dir_ / "out/tokenizer");
  auto r = client::Pull(*conn_, trust_.view, PullOpts("acme/m", "out"));
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(std::filesystem::is_empty(dir_ / "elsewhere"));
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST_F(NodeTest, PullWaitsForAStoreHeldByAnotherProcess) {
  std::string model = MakeModel("m", 2, 100000, 12);
  ASSERT_TRUE(PublishDir(model, "acme/m", "1").ok());
  auto holder = client::ModelStore::Open(dir_ / "cache");
  ASSERT_TRUE(holder.ok());
  auto opts = PullOpts("acme/m", "out");
  opts.store_wait_seconds = 1;
  EXPECT_THAT(client::Pull(*conn_, trust_.view, opts),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Released while the pull waits: the pull goes ahead.
  opts.store_wait_seconds = 30;
  absl::Notification waiting;
  opts.log = [&](const std::string& line) {
    if (line.find("waiting for the store") != std::string::npos) waiting.Notify();
  };
  std::thread release([&] {
    waiting.WaitForNotification();
    holder->reset();
  });
  auto r = client::Pull(*conn_, trust_.view, opts);
  release.join();
  ASSERT_TRUE(r.ok()) << r.status();
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST_F(NodeTest, FederationServiceServesFeedNodeInfoAndTrustRoot) {
  std::string model = MakeModel("m", 2, 100000, 13);
  auto pub = PublishDir(model, "acme/m", "1");
  ASSERT_TRUE(pub.ok());
  auto stub = cairn::v1::Federation::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  cairn::v1::FeedRequest req;
  cairn::v1::FeedResponse resp;
  auto ctx = conn_->Context();
  ASSERT_TRUE(stub->Feed(ctx.get(), req, &resp).ok());
  ASSERT_EQ(resp.events_size(), 1);
  EXPECT_EQ(resp.events(0).manifest_digest(), pub->manifest);
  // A follower verifies what it is fed against its own trust root.
  std::string digest;
  ASSERT_TRUE(
      VerifyManifestEnvelope(trust_.view, resp.events(0).manifest_envelope(), &digest).ok());
  EXPECT_EQ(digest, pub->manifest);
  ASSERT_TRUE(VerifyTagEnvelope(trust_.view, resp.events(0).tag_envelope(), SystemNowUnix()).ok());
  cairn::v1::NodeInfoResponse info;
  auto ctx2 = conn_->Context();
  ASSERT_TRUE(stub->NodeInfo(ctx2.get(), cairn::v1::NodeInfoRequest(), &info).ok());
  EXPECT_EQ(info.node_id(), repo_->node_id());
  EXPECT_EQ(info.feed_head(), 1u);
  cairn::v1::TrustRootResponse tr;
  auto ctx3 = conn_->Context();
  ASSERT_TRUE(stub->TrustRoot(ctx3.get(), cairn::v1::TrustRootRequest(), &tr).ok());
  EXPECT_EQ(tr.envelope(), trust_.envelope);
}

}  // namespace
}  // namespace cairn
