// End-to-end tests of the real binaries: cairn-node on 127.0.0.1:0 and the
// cairn CLI, checking exit codes, one-line errors and what lands on disk.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "cli_fixture.h"
#include "nlohmann/json.hpp"
#include "testing.h"

namespace cairn {
namespace {

TEST_F(CliTest, PublishPullVerifyRoundTrip) {
  auto p = Publish(dir_ / "model", "acme/m", "1", {"--license", "apache-2.0"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto pj = nlohmann::json::parse(p.out);
  for (const char* k : {"manifest", "bytes_total", "bytes_uploaded", "chunks_total",
                        "chunks_uploaded", "seconds"}) {
    EXPECT_TRUE(pj.contains(k)) << k;
  }
  auto r = Pull("acme/m", dir_ / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rj = nlohmann::json::parse(r.out);
  for (const char* k :
       {"manifest", "bytes_total", "bytes_fetched", "chunks_fetched", "chunks_local", "seconds"}) {
    EXPECT_TRUE(rj.contains(k)) << k;
  }
  EXPECT_EQ(rj["manifest"], pj["manifest"]);
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.safetensors"),
            testing::ReadFile(dir_ / "model/weights.safetensors"));
  auto v = Cairn({"verify", dir_ / "out", "--trust", dir_ / "keys/trust.root"});
  EXPECT_EQ(v.exit_code, 0) << v.err;
  // Tamper: verify names the file and fails.
  testing::WriteFile(dir_ / "out/config.json", "{\"evil\": 1}");
  v = Cairn({"verify", dir_ / "out", "--trust", dir_ / "keys/trust.root"});
  EXPECT_NE(v.exit_code, 0);
  EXPECT_THAT(v.out, HasSubstr("config.json"));
  // The store defaulted to $XDG_DATA_HOME/cairn.
  EXPECT_TRUE(fs::exists(dir_ / "xdg-data/cairn/index"));
}

TEST_F(CliTest, InfoLsLineage) {
  auto p = Publish(dir_ / "model", "acme/base", "1");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  std::string base = nlohmann::json::parse(p.out)["manifest"];
  testing::WriteFile(dir_ / "model/config.json", "{\"ft\": true}");
  auto d = Publish(dir_ / "model", "acme/ft", "1",
                   {"--base", "acme/base@" + base, "--relation", "adapter"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  auto info = Cairn({"info", "acme/base", "--node", addr_, "--json"});
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(info.out)["manifest"], base);
  EXPECT_NE(Cairn({"info", "acme/nothing", "--node", addr_}).exit_code, 0);
  auto ls = Cairn({"ls", "acme/", "--node", addr_, "--json"});
  ASSERT_EQ(ls.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(ls.out).size(), 2u);
  auto lin =
      Cairn({"lineage", "acme/ft", "--node", addr_, "--trust", dir_ / "keys/trust.root", "--json"});
  ASSERT_EQ(lin.exit_code, 0) << lin.err;
  auto lj = nlohmann::json::parse(lin.out);
  EXPECT_EQ(lj["parents"][0]["manifest"], base);
  EXPECT_EQ(lj["parents"][0]["relation"], "adapter");
  lin = Cairn({"lineage", "acme/base", "--node", addr_, "--json"});
  EXPECT_EQ(nlohmann::json::parse(lin.out)["children"][0]["name"], "acme/ft");
}

TEST_F(CliTest, RefusesUndelegatedKeyAndOtherNamespace) {
  ASSERT_EQ(Cairn({"keygen", "--out", dir_ / "stranger.key"}).exit_code, 0);
  auto r = Cairn({"publish", dir_ / "model", "--name", "acme/m", "--version", "1", "--key",
                  dir_ / "stranger.key", "--node", addr_});
  ExpectOneLineError(r, "not delegated");
  r = Publish(dir_ / "model", "other/m", "1");
  ExpectOneLineError(r, "not delegated for namespace 'other'");
}

TEST_F(CliTest, UnknownNameOrTag) {
  ExpectOneLineError(Pull("acme/none", dir_ / "out"), "unknown name or tag");
  ASSERT_EQ(Publish(dir_ / "model", "acme/m", "1").exit_code, 0);
  ExpectOneLineError(Pull("acme/m:nope", dir_ / "out"), "unknown name or tag");
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

TEST_F(CliTest, UnreachableNodeFailsWithinTheDeadline) {
  auto t0 = std::chrono::steady_clock::now();
  // A port nothing listens on: bind and close one.
  const std::string dead = testing::ClosedPortAddress();
  auto r = Cairn({"pull", "acme/m", "--out", dir_ / "out", "--node", dead, "--trust",
                  dir_ / "keys/trust.root", "--timeout", "2"});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Refused at once and named (issue 12 #15): not the whole timeout.
  ExpectOneLineError(r, "cannot connect to node " + dead + ": connection refused");
  EXPECT_LT(secs, 1.9);
}

TEST_F(CliTest, CorruptOrTruncatedTrustAndKeyFiles) {
  std::string t = testing::ReadFile(dir_ / "keys/trust.root");
  testing::WriteFile(dir_ / "trunc.root", t.substr(0, t.size() / 2));
  ExpectOneLineError(Cairn({"pull", "acme/m", "--out", dir_ / "o", "--node", addr_, "--trust",
                            dir_ / "trunc.root"}),
                     "trust");
  testing::WriteFile(dir_ / "garbage.root", "garbage");
  ExpectOneLineError(Cairn({"trust", "show", dir_ / "garbage.root"}), "trust");
  std::string k = testing::ReadFile(dir_ / "keys/publisher.key");
  testing::WriteFile(dir_ / "trunc.key", k.substr(0, 40));
  ExpectOneLineError(Cairn({"publish", dir_ / "model", "--name", "acme/m", "--version", "1",
                            "--key", dir_ / "trunc.key", "--node", addr_}),
                     "not a valid PEM private key");
  ExpectOneLineError(Cairn({"publish", dir_ / "model", "--name", "acme/m", "--version", "1",
                            "--key", dir_ / "absent.key", "--node", addr_}),
                     "absent.key");
}

TEST_F(CliTest, RepublishingAVersionWithDifferentContentIsRefused) {
  ASSERT_EQ(Publish(dir_ / "model", "acme/m", "1").exit_code, 0);
  testing::WriteFile(dir_ / "model/config.json", "{\"changed\": true}");
  ExpectOneLineError(Publish(dir_ / "model", "acme/m", "1"), "immutable");
}

TEST_F(CliTest, NonIncreasingTagVersionIsRefused) {
  ASSERT_EQ(Publish(dir_ / "model", "acme/m", "1", {"--tag-version", "5"}).exit_code, 0);
  testing::WriteFile(dir_ / "model/config.json", "{\"v\": 2}");
  ExpectOneLineError(Publish(dir_ / "model", "acme/m", "2", {"--tag-version", "5"}),
                     "does not increase");
  ExpectOneLineError(Publish(dir_ / "model", "acme/m", "2", {"--tag-version", "3"}),
                     "does not increase");
  // Default: node's version + 1.
  auto ok = Publish(dir_ / "model", "acme/m", "2");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["tag_version"], 6);
}

TEST_F(CliTest, EmptyDirectoryAndSymlinkAreRefused) {
  fs::create_directories(dir_ / "empty");
  ExpectOneLineError(Publish(dir_ / "empty", "acme/m", "1"), "no files");
  fs::create_symlink("/etc/hostname", dir_ / "model/link");
  ExpectOneLineError(Publish(dir_ / "model", "acme/m", "1"), "symlink");
}

TEST_F(CliTest, SecondNodeOnTheSameDataDirectoryIsRefused) {
  auto r = testing::Run({testing::CairnNodeBin(), "serve", "--data", dir_ / "data", "--listen",
                         "127.0.0.1:0", "--trust", dir_ / "keys/trust.root"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("in use by another cairn-node"));
}

TEST_F(CliTest, NodeStopsCleanlyOnSigterm) {
  node_->Kill(SIGTERM);
  EXPECT_EQ(node_->Wait(), 0) << node_->stderr_text();
  EXPECT_THAT(node_->stderr_text(), HasSubstr("stopped cleanly"));
}

TEST_F(CliTest, ConfigFileAndEnvironmentSupplyDefaults) {
  ASSERT_EQ(Publish(dir_ / "model", "acme/m", "1").exit_code, 0);
  testing::WriteFile(dir_ / "xdg-config/cairn/config.toml",
                     "node = \"" + addr_ + "\"\ntrust = \"" + (dir_ / "keys/trust.root") + "\"\n");
  auto r = Cairn({"pull", "acme/m", "--out", dir_ / "out1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  testing::WriteFile(dir_ / "xdg-config/cairn/config.toml", "node = 5\n");
  ExpectOneLineError(Cairn({"ls"}), "config");
  testing::WriteFile(dir_ / "xdg-config/cairn/config.toml", "nod = \"x\"\n");
  ExpectOneLineError(Cairn({"ls"}), "unknown key nod");
}

// kill -9 the node at two points of a publish, seen in its log: mid-upload
// (after the session opened, before the commit: the release must not be
// visible) and right after the commit (it must be complete and servable).
// Either way, publishing again completes, uploading only what is missing. A
// kill inside the commit's atomic batch is RepositoryTest's
// FailedCommitLeavesNothingVisible.
TEST_F(CliTest, KilledNodeServesOnlyCompleteReleasesAfterRestart) {
  testing::WriteFile(dir_ / "big/weights.bin", testing::RandomBytes(48 << 20, 11));
  for (const std::string point : {"publish session opened", "committed release"}) {
    const bool after_commit = point == "committed release";
    const std::string name = after_commit ? "acme/big-committed" : "acme/big-uploading";
    std::string pub_out = dir_ / "pub.out";
    // Only what the node logs from here on counts.
    const size_t log_from = node_->stderr_text().size();
    auto logged = [&](const std::string& what) {
      return node_->stderr_text().find(what, log_from) != std::string::npos;
    };
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(pub_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::string bin = testing::CairnBin();
      std::string dir = dir_ / "big", key = dir_ / "keys/publisher.key";
      execl(bin.c_str(), bin.c_str(), "publish", dir.c_str(), "--name", name.c_str(), "--version",
            "1", "--key", key.c_str(), "--node", addr_.c_str(), "--timeout", "3", nullptr);
      _exit(127);
    }
    const std::string marker = after_commit ? point : point + " for " + name;
    ASSERT_TRUE(testing::WaitUntil([&] { return logged(marker); })) << node_->stderr_text();
    node_->Kill(SIGKILL);
    node_->Wait();
    int status;
    ::waitpid(pid, &status, 0);
    // The kill landed where this case says.
    ASSERT_EQ(logged("committed release"), after_commit) << node_->stderr_text();
    node_ = testing::StartNode(dir_ / "data", dir_ / "keys/trust.root", &addr_);
    ASSERT_TRUE(node_);
    auto info = Cairn({"info", name, "--node", addr_});
    if (after_commit) {
      ASSERT_EQ(info.exit_code, 0) << info.err;
      auto r = Pull(name, dir_ / ("out-" + std::to_string(after_commit)));
      ASSERT_EQ(r.exit_code, 0) << "listed but not servable: " << r.err;
      EXPECT_EQ(testing::ReadFile(dir_ / ("out-" + std::to_string(after_commit)) + "/weights.bin"),
                testing::ReadFile(dir_ / "big/weights.bin"));
    } else {
      EXPECT_NE(info.exit_code, 0);
      EXPECT_THAT(info.err, HasSubstr("unknown"));
    }
    auto again = Publish(dir_ / "big", name, "1");
    ASSERT_EQ(again.exit_code, 0) << again.err;
    ASSERT_EQ(Pull(name, dir_ / ("again-" + std::to_string(after_commit))).exit_code, 0);
  }
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST_F(CliTest, NodeFollowingAnUpstreamServesItsReleases) {
  std::string line;
  auto follower = testing::Child::Start(
      {testing::CairnNodeBin(), "serve", "--data", dir_ / "data-b", "--listen", "127.0.0.1:0",
       "--trust", dir_ / "keys/trust.root", "--upstream", addr_},
      "listening on", &line);
  ASSERT_TRUE(follower);
  std::string addr_b = line.substr(line.rfind(' ') + 1);
  ASSERT_EQ(Publish(dir_ / "model", "acme/m", "1").exit_code, 0);
  // The follower polls every 2 s; wait for it (bounded), then pull from it.
  ASSERT_TRUE(testing::WaitUntil([&] {
    return Cairn({"info", "acme/m", "--node", addr_b}).exit_code == 0;
  })) << follower->stderr_text();
  // cairn status shows the follower's upstream and how far it got.
  nlohmann::json sj;
  ASSERT_TRUE(testing::WaitUntil([&] {
    auto st = Cairn({"status", "--node", addr_b, "--json"});
    if (st.exit_code != 0) return false;
    sj = nlohmann::json::parse(st.out);
    return sj["upstreams"].size() == 1u && sj["upstreams"][0]["releases_replicated"] == 1;
  }));
  EXPECT_EQ(sj["upstreams"][0]["address"], addr_);
  EXPECT_EQ(sj["upstreams"][0]["events_behind"], 0);
  EXPECT_GT(sj["upstreams"][0]["bytes_fetched"].get<uint64_t>(), 0u);
  EXPECT_EQ(sj["releases"], 1);
  node_->Kill(SIGTERM);  // the upstream goes away; the follower keeps serving
  node_->Wait();
  auto r = Cairn({"pull", "acme/m", "--out", dir_ / "out", "--node", addr_b, "--trust",
                  dir_ / "keys/trust.root"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.safetensors"),
            testing::ReadFile(dir_ / "model/weights.safetensors"));
  follower->Kill(SIGTERM);
  EXPECT_EQ(follower->Wait(), 0) << follower->stderr_text();
}

TEST_F(CliTest, TrustLifecycleDelegateRevokeRotateCoSignPushAndUpdate) {
  const std::string T = dir_ / "keys/trust.root";
  const std::string K = dir_ / "keys";
  fs::copy_file(T, dir_ / "client.root");  // a client's copy, still v1
  ASSERT_EQ(Publish(dir_ / "model", "acme/m", "1").exit_code, 0);
  for (const char* k : {"second", "root2", "root3"}) {
    ASSERT_EQ(Cairn({"keygen", "--out", K + "/" + k + ".key"}).exit_code, 0);
  }
  // v2: a second publisher key for acme.
  auto d = Cairn({"trust", "delegate", "--trust", T, "--key", K + "/root.key", "--namespace",
                  "acme", "--publisher", K + "/second.key.pub", "--json"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(nlohmann::json::parse(d.out)["version"], 2);
  EXPECT_TRUE(fs::exists(T + ".v1"));
  // v3: revoke the first publisher key.
  auto rv = Cairn({"trust", "revoke", "--trust", T, "--key", K + "/root.key", "--publisher",
                   K + "/publisher.key.pub", "--json"});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
  EXPECT_EQ(nlohmann::json::parse(rv.out)["trust"]["revoked"].size(), 1u);
  ExpectOneLineError(Cairn({"trust", "revoke", "--trust", T, "--key", K + "/root.key",
                            "--publisher", K + "/publisher.key.pub"}),
                     "already revoked");
  ExpectOneLineError(
      Cairn({"trust", "revoke", "--trust", T, "--key", K + "/second.key", "--namespace", "acme"}),
      "is not a root key");
  // v4: two more root keys, threshold 2: the old root key plus one new one
  // sign now; it stays pending with the old key alone.
  auto rot = Cairn({"trust", "rotate", "--trust", T, "--key", K + "/root.key", "--add-root",
                    K + "/root2.key.pub", "--add-root", K + "/root3.key.pub", "--root-threshold",
                    "2", "--json"});
  ASSERT_EQ(rot.exit_code, 0) << rot.err;
  auto rj = nlohmann::json::parse(rot.out);
  EXPECT_TRUE(rj["pending"]);
  EXPECT_EQ(rj["signatures"]["own_root_keys"]["have"], 1);
  EXPECT_EQ(rj["signatures"]["own_root_keys"]["need"], 2);
  ExpectOneLineError(Cairn({"trust", "delegate", "--trust", T, "--key", K + "/root.key",
                            "--namespace", "other", "--publisher", K + "/second.key.pub"}),
                     "pending");
  auto show = Cairn({"trust", "show", T, "--json"});
  EXPECT_EQ(nlohmann::json::parse(show.out)["version"], 3);
  EXPECT_EQ(nlohmann::json::parse(show.out)["pending"]["version"], 4);
  auto cos = Cairn({"trust", "sign", "--trust", T, "--key", K + "/root2.key", "--json"});
  ASSERT_EQ(cos.exit_code, 0) << cos.err;
  EXPECT_FALSE(nlohmann::json::parse(cos.out)["pending"]);
  EXPECT_FALSE(fs::exists(T + ".pending"));
  // v5: the first root key retired; one old key is no longer enough.
  auto ret = Cairn({"trust", "rotate", "--trust", T, "--key", K + "/root2.key", "--key",
                    K + "/root3.key", "--remove-root", K + "/root.key.pub", "--json"});
  ASSERT_EQ(ret.exit_code, 0) << ret.err;
  EXPECT_EQ(nlohmann::json::parse(ret.out)["version"], 5);

  // The node still has v1 and serves acme/m; push gives it v2..v5.
  auto st = nlohmann::json::parse(Cairn({"status", "--node", addr_, "--json"}).out);
  EXPECT_EQ(st["trust_version"], 1);
  auto push = Cairn({"trust", "push", "--trust", T, "--node", addr_, "--json"});
  ASSERT_EQ(push.exit_code, 0) << push.err;
  EXPECT_EQ(nlohmann::json::parse(push.out)[0]["version"], 5);
  EXPECT_EQ(nlohmann::json::parse(push.out)[0]["advanced"], 4);
  st = nlohmann::json::parse(Cairn({"status", "--node", addr_, "--json"}).out);
  EXPECT_EQ(st["trust_version"], 5);
  EXPECT_EQ(st["releases_withheld"], 1);
  EXPECT_THAT(Cairn({"status", "--node", addr_}).out, HasSubstr("withheld: 1 release(s)"));
  {
    // info shows it, with why it is not served.
    auto info = Cairn({"info", "acme/m", "--node", addr_, "--json"});
    ASSERT_EQ(info.exit_code, 0) << info.err;
    auto ij = nlohmann::json::parse(info.out);
    EXPECT_EQ(ij["state"], "withheld");
    EXPECT_THAT(ij["reason"].get<std::string>(), HasSubstr("withheld"));
    EXPECT_THAT(Cairn({"info", "acme/m", "--node", addr_}).out, HasSubstr("(withheld;"));
    // ...and a pull refuses it.
    ExpectOneLineError(
        Cairn({"pull", "acme/m", "--out", dir_ / "w", "--node", addr_, "--trust", T}), "withheld");
  }
  // The revoked key cannot publish; the second key can, and its release pulls
  // with the client's updated trust file.
  ExpectOneLineError(Publish(dir_ / "model", "acme/m", "2"), "revoked");
  auto p2 = Cairn({"publish", dir_ / "model", "--name", "acme/n", "--version", "1", "--key",
                   K + "/second.key", "--node", addr_});
  ASSERT_EQ(p2.exit_code, 0) << p2.err;
  fs::copy_file(dir_ / "client.root", dir_ / "auto.root");
  ExpectOneLineError(Cairn({"pull", "acme/n", "--out", dir_ / "out-old", "--node", addr_, "--trust",
                            dir_ / "client.root", "--no-trust-update"}),
                     "signature check failed");  // v1 does not know the second key
  // By default a pull first walks the trust file forward.
  auto auto_pull = Cairn({"pull", "acme/n", "--out", dir_ / "out-auto", "--node", addr_, "--trust",
                          dir_ / "auto.root"});
  EXPECT_EQ(auto_pull.exit_code, 0) << auto_pull.err;
  EXPECT_THAT(auto_pull.err, HasSubstr("trust root updated v1 -> v5"));
  EXPECT_TRUE(fs::exists(dir_ / "auto.root.v4"));
  auto up = Cairn({"trust", "update", "--trust", dir_ / "client.root", "--node", addr_, "--json"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(nlohmann::json::parse(up.out)["from"], 1);
  EXPECT_EQ(nlohmann::json::parse(up.out)["to"], 5);
  EXPECT_TRUE(fs::exists(dir_ / "client.root.v4"));
  auto pull = Cairn(
      {"pull", "acme/n", "--out", dir_ / "out", "--node", addr_, "--trust", dir_ / "client.root"});
  EXPECT_EQ(pull.exit_code, 0) << pull.err;
  EXPECT_THAT(Cairn({"trust", "update", "--trust", dir_ / "client.root", "--node", addr_}).out,
              HasSubstr("v5 is current"));
  // A restarted node keeps v5 although its --trust file is v1.
  node_->Kill(SIGTERM);
  node_->Wait();
  node_ = testing::StartNode(dir_ / "data", dir_ / "client.root.v1", &addr_);
  ASSERT_TRUE(node_);
  st = nlohmann::json::parse(Cairn({"status", "--node", addr_, "--json"}).out);
  EXPECT_EQ(st["trust_version"], 5);
  EXPECT_EQ(st["releases_withheld"], 1);
}

TEST_F(CliTest, TrustCommandsRefuseWrongInput) {
  const std::string T = dir_ / "keys/trust.root";
  const std::string K = dir_ / "keys";
  ExpectOneLineError(Cairn({"trust", "sign", "--trust", T, "--key", K + "/root.key"}),
                     "no pending trust root");
  ExpectOneLineError(Cairn({"trust", "delegate", "--trust", T, "--key", K + "/publisher.key",
                            "--namespace", "acme", "--publisher", K + "/publisher.key.pub"}),
                     "is not a root key");
  ExpectOneLineError(Cairn({"trust", "delegate", "--trust", T, "--key", K + "/root.key",
                            "--namespace", "bad/ns", "--publisher", K + "/publisher.key.pub"}),
                     "invalid namespace");
  ExpectOneLineError(
      Cairn({"trust", "delegate", "--trust", T, "--key", K + "/root.key", "--namespace", "acme",
             "--publisher", K + "/publisher.key.pub", "--threshold", "3"}),
      "--threshold must be 1..1");
  ExpectOneLineError(
      Cairn({"trust", "revoke", "--trust", T, "--key", K + "/root.key", "--publisher", "nonsense"}),
      "neither a public key file nor");
  ExpectOneLineError(Cairn({"trust", "revoke", "--trust", T, "--key", K + "/root.key",
                            "--publisher", K + "/root.key.pub"}),
                     "is a root key");
  ExpectOneLineError(Cairn({"trust", "rotate", "--trust", T, "--key", K + "/root.key",
                            "--remove-root", K + "/root.key.pub"}),
                     "at least one root key");
  ExpectOneLineError(
      Cairn({"trust", "rotate", "--trust", T, "--key", K + "/root.key", "--root-threshold", "2"}),
      "exceeds the 1 root keys");
  ExpectOneLineError(
      Cairn({"trust", "init", "--key", K + "/root.key", "--root-key", K + "/publisher.key.pub",
             "--root-threshold", "2", "--out", dir_ / "new.root"}),
      "must be signed by 2 root keys");
  testing::WriteFile(dir_ / "junk.root", "not a root");
  ExpectOneLineError(Cairn({"trust", "show", dir_ / "junk.root"}), "trust");
  // Nothing was written by any of them.
  EXPECT_FALSE(fs::exists(T + ".v1"));
  EXPECT_FALSE(fs::exists(T + ".pending"));
  EXPECT_EQ(testing::ReadFile(T), trust_.envelope);
}

TEST_F(CliTest, TwoOfTwoNamespaceIsPublishedByCoSigningFromAnotherMachine) {
  const std::string T = dir_ / "keys/trust.root";
  const std::string K = dir_ / "keys";
  ASSERT_EQ(Cairn({"keygen", "--out", K + "/bob.key"}).exit_code, 0);
  ASSERT_EQ(Cairn({"keygen", "--out", K + "/eve.key"}).exit_code, 0);
  ASSERT_EQ(Cairn({"trust", "delegate", "--trust", T, "--key", K + "/root.key", "--namespace",
                   "acme", "--publisher", K + "/bob.key.pub", "--threshold", "2"})
                .exit_code,
            0);
  ASSERT_EQ(Cairn({"trust", "push", "--trust", T, "--node", addr_}).exit_code, 0);
  // Alice alone: uploaded, pending, not served.
  auto p = Publish(dir_ / "model", "acme/m", "1");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto pj = nlohmann::json::parse(p.out);
  EXPECT_TRUE(pj["pending"]);
  EXPECT_EQ(pj["signatures"], 1);
  EXPECT_EQ(pj["signatures_needed"], 2);
  const std::string ref = "acme/m@" + pj["manifest"].get<std::string>();
  {
    // A co-signer sees what they are asked to sign: in info and ls --pending.
    auto info = Cairn({"info", "acme/m", "--node", addr_, "--json"});
    ASSERT_EQ(info.exit_code, 0) << info.err;
    auto ij = nlohmann::json::parse(info.out);
    EXPECT_EQ(ij["state"], "pending");
    EXPECT_EQ(ij["manifest"], pj["manifest"]);
    EXPECT_EQ(ij["signatures"], 1);
    EXPECT_EQ(ij["signatures_needed"], 2);
    EXPECT_EQ(ij["files"].size(), 2u);
    EXPECT_THAT(ij["reason"].get<std::string>(), HasSubstr("cairn sign " + ref));
    auto ls = Cairn({"ls", "acme/m", "--pending", "--node", addr_, "--json"});
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
    auto lj = nlohmann::json::parse(ls.out);
    ASSERT_EQ(lj.size(), 1u) << ls.out;
    EXPECT_EQ(lj[0]["pending"][0]["manifest"], pj["manifest"]);
    EXPECT_EQ(lj[0]["pending"][0]["signatures_needed"], 2);
    EXPECT_THAT(Cairn({"ls", "--pending", "--node", addr_}).out, HasSubstr("PENDING 1 of 2"));
    // Without --pending it is not listed, and nothing pulls it.
    EXPECT_EQ(nlohmann::json::parse(Cairn({"ls", "--node", addr_, "--json"}).out).size(), 0u);
    ExpectOneLineError(
        Cairn({"pull", "acme/m", "--out", dir_ / "p", "--node", addr_, "--trust", T}), "unknown");
  }
  // Wrong co-signers are refused: a stranger, or alice again.
  ExpectOneLineError(Cairn({"sign", ref, "--key", K + "/eve.key", "--node", addr_}),
                     "no new valid signature");
  ExpectOneLineError(Cairn({"sign", ref, "--key", K + "/eve.key", "--node", addr_, "--trust", T}),
                     "not delegated");
  ExpectOneLineError(Cairn({"sign", ref, "--key", K + "/publisher.key", "--node", addr_}),
                     "no new valid signature");
  ExpectOneLineError(Cairn({"sign", "acme/m:latest", "--key", K + "/bob.key", "--node", addr_}),
                     "by digest");
  ExpectOneLineError(Cairn({"sign", "acme/other@" + pj["manifest"].get<std::string>(), "--key",
                            K + "/bob.key", "--node", addr_}),
                     "is a release of acme/m");
  // Bob co-signs: committed, tag and all.
  auto s = Cairn({"sign", ref, "--key", K + "/bob.key", "--node", addr_, "--trust", T, "--json"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_FALSE(nlohmann::json::parse(s.out)["pending"]);
  auto r = Cairn({"pull", "acme/m:latest", "--out", dir_ / "out", "--node", addr_, "--trust", T});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.safetensors"),
            testing::ReadFile(dir_ / "model/weights.safetensors"));
  ExpectOneLineError(Cairn({"sign", ref, "--key", K + "/bob.key", "--node", addr_}),
                     "no release");  // nothing pending any more
  // Both keys on one machine publish directly.
  auto both = Publish(dir_ / "model", "acme/m2", "1", {"--key", K + "/bob.key"});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  EXPECT_FALSE(nlohmann::json::parse(both.out)["pending"]);
}

}  // namespace
}  // namespace cairn
