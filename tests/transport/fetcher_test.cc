// A client pulling from several mirrors at once, some of them hostile: the
// attack suite. Every mirror is a real gRPC server on 127.0.0.1:0; the
// hostile ones serve the honest node's data bent by one attack each.
#include "cairn/transport/fetcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/synchronization/notification.h"
#include "cairn/clock.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/transport/probe.h"
#include "client.h"
#include "hostile_node.h"
#include "server.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::Attack;
using ::cairn::testing::HostileNode;
using ::cairn::testing::StatusIs;
using ::cairn::testing::TrustFixture;
using ::testing::AnyOf;
using ::testing::HasSubstr;

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    trust_.Save(dir_ / "keys");
    auto meta = std::move(OpenRocksMetaStore(dir_ / "meta")).value();
    auto chunks = std::move(OpenPackChunkStore(dir_ / "chunks", {})).value();
    chunks_ = chunks.get();
    repo_ = std::move(Repository::Create(std::move(meta), std::move(chunks), trust_.view)).value();
    server_ = std::move(node::NodeServer::Start(repo_.get(), "127.0.0.1:0")).value();
    honest_ = std::move(Connection::Open(server_->address(), 10)).value();
    model_ = dir_ / "model";
    testing::WriteFile(model_ + "/model.safetensors",
                       testing::MakeSafetensors(std::vector<size_t>(16, 512 << 10), 7));
    testing::WriteFile(model_ + "/config.json", "{\"hidden\": 64}");
    Publish("1", 1);
  }
  void TearDown() override {
    conns_.clear();
    hostile_.clear();
    honest_.reset();
    server_->Shutdown(0);
  }

  // Publishes the tree at `dir` as `name` version 1.
  void PublishTree(const std::string& dir, const std::string& name) {
    client::PublishOptions o;
    o.dir = dir;
    o.name = name;
    o.version = "1";
    o.key_paths = {dir_ / "keys/publisher.key"};
    ASSERT_TRUE(client::Publish(*honest_, o).ok());
  }

  void Publish(const std::string& version, uint64_t tag_version) {
    client::PublishOptions o;
    o.dir = model_;
    o.name = "acme/m";
    o.version = version;
    o.tag_version = tag_version;
    o.key_paths = {dir_ / "keys/publisher.key"};
    ASSERT_TRUE(client::Publish(*honest_, o).ok());
  }

  HostileNode* Hostile(Attack a) {
    hostile_.push_back(std::make_unique<HostileNode>(repo_.get(), chunks_, a));
    return hostile_.back().get();
  }
  Connection* Conn(const std::string& address) {
    conns_.push_back(std::move(Connection::Open(address, 10)).value());
    return conns_.back().get();
  }

  client::PullOptions Opts(const std::string& out) {
    client::PullOptions o;
    o.ref = "acme/m";
    o.out = dir_ / out;
    o.store_dir = dir_ / (out + ".cache");
    o.state_dir = dir_ / "state";
    o.stall_seconds = 2;
    o.rate_seconds = 2;
    o.min_rate = 256 << 10;
    return o;
  }

  // A failed pull leaves no byte that did not verify: every file under `out`
  // is a complete, exact file of the release (already-verified files stay,
  // like a partial download that resumes), a temporary file holds a prefix
  // of one (the verified chunks that arrived, kept for the next run), and no
  // signed manifest marks the tree as complete.
  void ExpectNothingUnverified(const std::string& out) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir_ / out, ec);
         it != std::filesystem::recursive_directory_iterator(); ++it) {
      if (it->is_directory()) continue;
      std::string rel = std::filesystem::relative(it->path(), dir_ / out).string();
      if (it->path().filename().string().rfind(".cairn-partial-", 0) == 0) {
        const std::string got = testing::ReadFile(it->path());
        bool prefix = false;
        for (const char* f : {"model.safetensors", "config.json"}) {
          prefix |= testing::ReadFile(model_ + "/" + f).rfind(got, 0) == 0;
        }
        EXPECT_TRUE(prefix) << rel << " (" << got.size() << " bytes) is no file's prefix";
        continue;
      }
      ASSERT_TRUE(std::filesystem::exists(model_ + "/" + rel)) << "wrote " << rel;
      EXPECT_EQ(testing::ReadFile(it->path()), testing::ReadFile(model_ + "/" + rel)) << rel;
    }
  }
  void ExpectExact(const std::string& out) {
    for (const char* f : {"model.safetensors", "config.json"}) {
      EXPECT_EQ(testing::ReadFile(dir_ / (out + "/" + f)), testing::ReadFile(model_ + "/" + f))
          << f;
    }
  }

  testing::TempDir dir_;
  TrustFixture trust_;
  ChunkStore* chunks_;
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<node::NodeServer> server_;
  std::unique_ptr<Connection> honest_;
  std::vector<std::unique_ptr<HostileNode>> hostile_;
  std::vector<std::unique_ptr<Connection>> conns_;
  std::string model_;
};

// Stall detection on simulated time: a mirror that accepts a request and
// never answers is dropped once the fetcher's clock passes the stall time,
// not before, whatever real time does meanwhile.
TEST_F(MirrorTest, AStalledMirrorIsDroppedWhenTheClockPassesTheStallTime) {
  HostileNode* stalled = Hostile(Attack::kStall);
  SimulatedClock clock;
  FetchOptions fo;
  fo.clock = &clock;
  fo.stall_seconds = 10;
  fo.min_rate = 1;  // only the stall rule can drop it
  std::vector<std::string> dropped;
  absl::Mutex mu;
  fo.log = [&](const std::string& line) {
    absl::MutexLock l(&mu);
    dropped.push_back(line);
  };
  Fetcher fetcher({Conn(stalled->address())}, fo);
  auto res = repo_->Resolve("acme/m");
  ASSERT_TRUE(res.ok());
  cairn::v1::Envelope env;
  cairn::v1::Manifest man;
  ASSERT_TRUE(env.ParseFromString(res->manifest_envelope()) && man.ParseFromString(env.payload()));
  auto cl = ParseChunkList(*repo_->GetObject(man.files(0).root()));
  ASSERT_TRUE(cl.ok());
  const auto& c = cl->chunks(0);
  fetcher.Add({ChunkWant{*DigestFromBytes(c.digest()), c.length()}});
  absl::Status got;
  absl::Notification done;
  std::thread next([&] {
    std::string data;
    got = fetcher.Next(&data);
    done.Notify();
  });
  // The request is out; 9 simulated seconds are not enough...
  ASSERT_TRUE(testing::WaitUntil([&] { return stalled->batches_seen.load() > 0; }));
  clock.AdvanceSeconds(9);
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  // ...past the stall time (10 s plus the chunk's time at the minimum rate,
  // at most twice 10 s) it is dropped and the fetch fails, naming why.
  clock.AdvanceSeconds(12);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  next.join();
  EXPECT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.message()), HasSubstr("stalled"));
  absl::MutexLock l(&mu);
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_THAT(dropped[0], HasSubstr("stalled: no chunk for 21s"));
}

TEST_F(MirrorTest, DeadStalledAndCorruptMirrorsBesideOneHealthyStillGiveExactBytes) {
  HostileNode* stalled = Hostile(Attack::kStall);
  HostileNode* corrupt = Hostile(Attack::kWrongChunkBytes);
  std::vector<std::string> unreachable;
  auto conns = client::OpenAll(
      {testing::ClosedPortAddress(), stalled->address(), corrupt->address(), server_->address()}, 2,
      &unreachable);
  ASSERT_TRUE(conns.ok()) << conns.status();
  EXPECT_EQ(unreachable.size(), 1u);
  ASSERT_EQ(conns->size(), 3u);
  std::vector<Connection*> nodes;
  for (auto& c : *conns) nodes.push_back(c.get());
  auto r = client::Pull(nodes, trust_.view, Opts("out"));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectExact("out");
  ASSERT_EQ(r->sources.size(), 3u);
  // Both bad mirrors were given work, and dropped for what they did.
  std::map<std::string, client::PullResult::Source> by;
  for (const auto& s : r->sources) by[s.address] = s;
  // The stalled mirror delivered nothing: it was dropped for stalling (by
  // the stall check, or by the rate check at 0 bytes/s when its other stream
  // got its first chunks later and so kept the node from looking stalled;
  // which check comes first depends on timing), or the others raced its
  // chunks first.
  EXPECT_EQ(by[stalled->address()].bytes, 0u);
  if (!by[stalled->address()].demoted.empty()) {
    EXPECT_THAT(by[stalled->address()].demoted,
                AnyOf(HasSubstr("stalled"), HasSubstr("too slow: 0 bytes/s")));
  }
  EXPECT_THAT(by[corrupt->address()].demoted, HasSubstr("corrupt"));
  EXPECT_EQ(by[server_->address()].demoted, "");
  EXPECT_GT(corrupt->chunks_served.load(), 0u);
}

// A thin link delivers each chunk whole after a while: a mirror whose chunks
// arrive further apart than the stall time, yet whose streams together beat
// the minimum rate, is slow, not stalled, and must not be dropped (it was:
// nodes on 2 % loss links with a loss-based TCP lost their only upstream).
TEST_F(MirrorTest, ASlowSteadyMirrorIsNotTakenForAStalledOne) {
  // 16 KiB tensors: one 16 KiB chunk each (the chunker's minimum).
  const std::string small = dir_ / "small";
  testing::WriteFile(small + "/model.safetensors",
                     testing::MakeSafetensors(std::vector<size_t>(4, 16 << 10), 11));
  PublishTree(small, "acme/small");
  HostileNode* thin = Hostile(Attack::kTrickle);
  thin->trickle_bytes_per_second = 5 << 10;  // per stream: a 16 KiB chunk every 3.2 s
  client::PullOptions o = Opts("thin");
  o.ref = "acme/small";
  o.stall_seconds = 2;  // shorter than the gap between chunks...
  o.rate_seconds = 2;
  o.min_rate = 4 << 10;  // ...which at this rate a 16 KiB chunk needs (4 s)
  auto r = client::Pull({Conn(thin->address())}, trust_.view, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "thin/model.safetensors"),
            testing::ReadFile(small + "/model.safetensors"));
}

// The window is sized from the path's bandwidth-delay product, not from a
// second of throughput: on loopback (a round trip well under a millisecond)
// each stream owes its 2 MiB floor, so a pull cut short loses little in
// flight.
TEST_F(MirrorTest, TheWindowFollowsTheBandwidthDelayProduct) {
  testing::WriteFile(dir_ / "big/w.bin", testing::RandomBytes(48 << 20, 9));
  PublishTree(dir_ / "big", "acme/big");
  auto opts = Opts("out");
  opts.ref = "acme/big";
  opts.streams_per_node = 2;
  auto r = client::Pull({honest_.get()}, trust_.view, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "out/w.bin"), testing::ReadFile(dir_ / "big/w.bin"));
  ASSERT_EQ(r->sources.size(), 1u);
  const auto& s = r->sources[0];
  ASSERT_GT(s.rtt_seconds, 0);
  ASSERT_GT(s.rate, 0);
  const double bdp = s.rate * s.rtt_seconds;
  // Two streams, each owing at most ten times its share of the BDP or
  // 2 MiB; what they owe and what arrived out of order together at most
  // four such windows (16 MiB here, where the BDP is tens of kB); plus what
  // slow start adds before the first rate sample. The old window of a
  // second of throughput let them owe 2 x 16 MiB here, and hold up to 64 MiB
  // more (42 MB measured).
  EXPECT_LT(r->peak_in_flight, std::max(40 * bdp, 16.0 * (1 << 20)) + (8 << 20))
      << "rtt " << s.rtt_seconds << " s, rate " << s.rate << " B/s";
}

// The round trip a fetcher sizes its windows with comes from one TCP
// handshake: a real time for a listening port, 0 (no sample) for a port
// nothing listens on or an address that is not one.
TEST(HandshakeTest, TimesOneConnectAndGivesNothingWhenItFails) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof(sa);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  const double rtt = HandshakeSeconds(address, 1000);
  EXPECT_GT(rtt, 0);
  EXPECT_LT(rtt, 0.5);
  // The cache a fetcher reads answers at once and probes in the background.
  double cached = CachedRoundTrip(address);
  EXPECT_TRUE(testing::WaitUntil([&] { return (cached = CachedRoundTrip(address)) > 0; }));
  EXPECT_LT(cached, 0.5);
  ::close(fd);
  EXPECT_EQ(HandshakeSeconds(address, 1000), 0);  // refused
  EXPECT_EQ(HandshakeSeconds("not an address", 1000), 0);
}

TEST_F(MirrorTest, ChunksComeFromEveryMirrorWeightedByThroughput) {
  // Large against the first windows (2 MiB per stream), so that what each
  // node carries follows its speed.
  testing::WriteFile(dir_ / "big/w.bin", testing::RandomBytes(32 << 20, 8));
  PublishTree(dir_ / "big", "acme/big");
  HostileNode* fast = Hostile(Attack::kNone);
  HostileNode* slow = Hostile(Attack::kNone);
  slow->delay_ms_per_batch =
      400;  // about 2.5 MiB/s with 1 MiB requests (ASan runs the fast one at ~20)
  auto opts = Opts("out");
  opts.ref = "acme/big";
  auto r = client::Pull({Conn(fast->address()), Conn(slow->address())}, trust_.view, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "out/w.bin"), testing::ReadFile(dir_ / "big/w.bin"));
  ASSERT_EQ(r->sources.size(), 2u);
  EXPECT_GT(r->sources[1].bytes, 0u) << "the slow mirror was not used at all";
  EXPECT_GT(r->sources[0].bytes, 2 * r->sources[1].bytes);
  EXPECT_EQ(r->sources[0].bytes + r->sources[1].bytes, r->bytes_fetched);
}

TEST_F(MirrorTest, HighestValidTagAcrossMirrorsWins) {
  // A stale mirror still serves v1 of the tag; the honest one has v2.
  HostileNode* stale = Hostile(Attack::kOldTag);
  stale->old_resolve = *repo_->Resolve("acme/m:latest");
  testing::WriteFile(model_ + "/config.json", "{\"hidden\": 128}");
  Publish("2", 2);
  auto r = client::Pull({Conn(stale->address()), honest_.get()}, trust_.view, Opts("out"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->version, "2");
  ExpectExact("out");
}

TEST_F(MirrorTest, RollbackToAnOlderTagIsRefusedEvenFromTheOnlyMirror) {
  HostileNode* stale = Hostile(Attack::kOldTag);
  stale->old_resolve = *repo_->Resolve("acme/m:latest");
  Publish("2", 2);
  ASSERT_TRUE(client::Pull(*honest_, trust_.view, Opts("first")).ok());
  auto r = client::Pull({Conn(stale->address())}, trust_.view, Opts("out"));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("rollback refused"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("version 1"));
  ExpectNothingUnverified("out");
}

struct AttackCase {
  Attack attack;
  const char* name;
  absl::StatusCode alone;  // what a pull from this mirror alone ends with
  const char* says;        // and what its message says
  // Another acceptable ending (a 70 MiB message may take the hostile server
  // longer to build than the stall timeout on a loaded machine).
  absl::StatusCode alone_too = absl::StatusCode::kOk;
};

class AttackTest : public MirrorTest, public ::testing::WithParamInterface<AttackCase> {};

TEST_P(AttackTest, RefusedWritesNothingAndCompletesFromTheHonestMirror) {
  const AttackCase& c = GetParam();
  HostileNode* bad = Hostile(c.attack);
  // Material for the attacks that swap objects: another release.
  testing::WriteFile(dir_ / "other/weights.bin", testing::RandomBytes(300000, 99));
  client::PublishOptions o;
  o.dir = dir_ / "other";
  o.name = "acme/other";
  o.version = "1";
  o.key_paths = {dir_ / "keys/publisher.key"};
  auto other = client::Publish(*honest_, o);
  ASSERT_TRUE(other.ok());
  auto other_resolved = repo_->Resolve("acme/other");
  bad->other_manifest = other_resolved->manifest_envelope();
  cairn::v1::Envelope env;
  cairn::v1::Manifest man;
  env.ParseFromString(bad->other_manifest);
  man.ParseFromString(env.payload());
  bad->other_object = *repo_->GetObject(man.files(0).root());
  bad->trickle_ms = 1500;

  auto t0 = std::chrono::steady_clock::now();
  auto alone = client::Pull({Conn(bad->address())}, trust_.view, Opts("alone"));
  double alone_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(alone.status().code() == c.alone || alone.status().code() == c.alone_too)
      << alone.status();
  EXPECT_THAT(std::string(alone.status().message()), HasSubstr(c.says));
  EXPECT_LT(alone_s, 20) << "a hostile mirror held the client too long";
  ExpectNothingUnverified("alone");

  auto both = client::Pull({Conn(bad->address()), honest_.get()}, trust_.view, Opts("both"));
  ASSERT_TRUE(both.ok()) << both.status();
  ExpectExact("both");
}

INSTANTIATE_TEST_SUITE_P(
    Attacks, AttackTest,
    ::testing::Values(
        AttackCase{Attack::kWrongChunkBytes, "WrongChunkBytes", absl::StatusCode::kDataLoss,
                   "corrupt bytes"},
        AttackCase{Attack::kLongChunks, "EndlessChunk", absl::StatusCode::kDataLoss,
                   "bytes for a chunk of"},
        AttackCase{Attack::kExtraChunks, "EndlessStream", absl::StatusCode::kDataLoss,
                   "asked for"},  // "more chunks than it was asked for",
                                  // or "a chunk it was not asked for" when requests overlap
        AttackCase{Attack::kTrickle, "Trickle", absl::StatusCode::kDeadlineExceeded, "too slow"},
        AttackCase{Attack::kStall, "Stall", absl::StatusCode::kDeadlineExceeded, "stalled"},
        AttackCase{Attack::kOversized, "OversizedMessage", absl::StatusCode::kUnavailable,
                   "no node can serve", absl::StatusCode::kDeadlineExceeded},
        AttackCase{Attack::kOtherManifest, "ManifestOfAnotherRelease",
                   absl::StatusCode::kPermissionDenied, "names"},
        AttackCase{Attack::kForgedTag, "ForgedSignature", absl::StatusCode::kPermissionDenied,
                   "signature"},
        AttackCase{Attack::kWrongChunkList, "ChunkListOfAnotherFile", absl::StatusCode::kDataLoss,
                   "does not match the signed manifest"},
        AttackCase{Attack::kMissingChunks, "WithholdsChunks", absl::StatusCode::kNotFound,
                   "does not have it"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST(RollbackFloorTest, FloorsAreKeptPerTrustRootAndRefuseLowerAndConflictingVersions) {
  testing::TempDir dir;
  auto one = TrustFixture::Make("acme"), other = TrustFixture::Make("acme");
  cairn::v1::TagRecord rec;
  rec.set_name("acme/m");
  rec.set_tag("latest");
  rec.set_version(5);
  rec.set_manifest_digest("sha256:aa");
  ASSERT_TRUE(client::CheckAndRecordTag(dir.path(), one.view, rec, "n1").ok());
  rec.set_version(4);
  EXPECT_THAT(client::CheckAndRecordTag(dir.path(), one.view, rec, "n1"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  rec.set_version(5);
  rec.set_manifest_digest("sha256:bb");
  EXPECT_THAT(client::CheckAndRecordTag(dir.path(), one.view, rec, "n1"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // An unrelated trust root (other root keys) has its own floors.
  rec.set_version(1);
  EXPECT_TRUE(client::CheckAndRecordTag(dir.path(), other.view, rec, "n1").ok());
  EXPECT_NE(client::TrustScope(one.view), client::TrustScope(other.view));
  // A corrupt state file is reported, never silently reset.
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    if (e.path().filename().string().starts_with("tags-"))
      testing::WriteFile(e.path(), "garbage\n");
  }
  EXPECT_THAT(client::CheckAndRecordTag(dir.path(), one.view, rec, "n1"),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace cairn
