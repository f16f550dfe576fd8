// The fixture of the end-to-end CLI tests: a real cairn-node on 127.0.0.1:0
// and the cairn binary run with HOME and XDG dirs inside the test directory.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "testing.h"

namespace cairn {

using ::testing::HasSubstr;
using testing::RunResult;
namespace fs = std::filesystem;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = testing::TrustFixture::Make("acme");
    trust_.Save(dir_ / "keys");
    node_ = testing::StartNode(dir_ / "data", dir_ / "keys/trust.root", &addr_);
    ASSERT_TRUE(node_);
    testing::WriteFile(dir_ / "model/weights.safetensors",
                       testing::MakeSafetensors(std::vector<size_t>(6, 300000), 1));
    testing::WriteFile(dir_ / "model/config.json", "{}");
  }

  // Runs cairn with HOME and XDG dirs inside the test directory.
  RunResult Cairn(std::vector<std::string> args) {
    args.insert(args.begin(), testing::CairnBin());
    return testing::Run(args, {"HOME=" + dir_.path(), "XDG_CACHE_HOME=" + (dir_ / "xdg-cache"),
                               "XDG_CONFIG_HOME=" + (dir_ / "xdg-config"),
                               "XDG_DATA_HOME=" + (dir_ / "xdg-data")});
  }
  RunResult Publish(const std::string& dir, const std::string& name, const std::string& version,
                    std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"publish",   dir,     "--name", name,
                                  "--version", version, "--key",  dir_ / "keys/publisher.key",
                                  "--node",    addr_,   "--json"};
    a.insert(a.end(), extra.begin(), extra.end());
    return Cairn(a);
  }
  RunResult Pull(const std::string& ref, const std::string& out,
                 std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {
        "pull", ref, "--out", out, "--node", addr_, "--trust", dir_ / "keys/trust.root", "--json"};
    a.insert(a.end(), extra.begin(), extra.end());
    return Cairn(a);
  }
  // A failure: non-zero exit and exactly one line on stderr naming `what`.
  static void ExpectOneLineError(const RunResult& r, const std::string& what) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.err, HasSubstr(what));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("cairn: error: ", 0), 0u) << r.err;
  }

  // Runs cairn without the power to read what permissions forbid, even as
  // root (CI runs as root, where chmod 000 stops nothing).
  RunResult CairnWithoutDacOverride(std::vector<std::string> args) {
    if (::geteuid() == 0) {
      args.insert(args.begin(), {"/usr/bin/setpriv", "--bounding-set=-dac_override,-dac_read_search",
                                 testing::CairnBin()});
      return testing::Run(args, {"HOME=" + dir_.path()});
    }
    return Cairn(args);
  }

  testing::TempDir dir_;
  testing::TrustFixture trust_;
  std::unique_ptr<testing::Child> node_;
  std::string addr_;
};

}  // namespace cairn
