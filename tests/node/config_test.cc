// The node's config file: every error named with its file and line, all of
// them in one run, and `cairn-node check-config`.
#include "config.h"

#include <sys/stat.h>

#include <fstream>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "logging.h"
#include "spdlog/spdlog.h"
#include "testing.h"

namespace cairn::node {
namespace {

using ::cairn::testing::TrustFixture;

TEST(NodeConfigTest, LimitsTlsAndQuotasParseAndWrongValuesAreNamed) {
  ServeConfig c;
  ASSERT_TRUE(ParseConfig(R"([node]
tls_cert = "n.pem"
tls_key = "n.key"
tls_ca = "ca.pem"
tls_require_client_cert = true
max_streams_per_peer = 8
max_sessions_per_peer = 2
upload_bytes_per_day = 1000000
[quota]
0123456789abcdef0123456789abcdef = 5
[[upstream]]
address = "hub:7070"
min_bytes_per_second = 2048
[[upstream]]
address = "other:7070"
)",
                          "t.toml", &c)
                  .ok());
  EXPECT_EQ(c.tls_ca, "ca.pem");
  EXPECT_TRUE(c.tls_require_client_cert);
  EXPECT_EQ(c.max_streams_per_peer, 8);
  EXPECT_EQ(c.max_sessions_per_peer, 2);
  EXPECT_EQ(c.upload_bytes_per_day, 1000000u);
  ASSERT_EQ(c.upload_quota_by_key.size(), 1u);
  EXPECT_EQ(c.upload_quota_by_key[0].second, 5u);
  ASSERT_EQ(c.upstream_tables.size(), 2u);
  EXPECT_EQ(c.upstream_tables[0].min_bytes_per_second, 2048u);
  EXPECT_EQ(c.upstream_tables[1].min_bytes_per_second, GrpcUpstream::kDefaultMinRate);
  for (const char* bad :
       {"[node]\nmax_streams_per_peer = -1\n", "[node]\ntls_require_client_cert = 1\n",
        "[quota]\nnotakey = 5\n", "[quota]\n0123456789abcdef0123456789abcdef = \"x\"\n",
        "quota = 3\n", "[[upstream]]\naddress = \"h:1\"\nmin_bytes_per_second = 0\n"}) {
    ServeConfig d;
    auto st = ParseConfig(bad, "t.toml", &d);
    EXPECT_THAT(st, cairn::testing::StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("t.toml")) << bad;
  }
}

// Issue 12 #11: tables and keys the node does not know were silently ignored
// (a quota under [quotas] was never applied). Each is refused with the file,
// the line and the nearest valid name.
TEST(NodeConfigTest, UnknownTablesAndKeysAreNamedWithLineAndNearestValidKey) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"[Node]\ndata = \"/d\"\n", "t.toml:1: unknown table [Node] (did you mean [node]?)"},
           {"[node]\ndata = \"/d\"\n[quotas]\nx = 1\n",
            "t.toml:3: unknown table [quotas] (did you mean [quota]?)"},
           {"upload_bytes_per_day = 5\n[node]\n",
            "t.toml:1: unknown top-level key upload_bytes_per_day (did you mean "
            "node.upload_bytes_per_day?)"},
           {"[node]\n\nmax_stream_per_peer = 4\n",
            "t.toml:3: unknown key node.max_stream_per_peer (did you mean "
            "node.max_streams_per_peer?)"},
           {"[node]\nlisten = 7070\n", "t.toml:2: node.listen must be a string"},
           {"[[upstream]]\naddress = \"h:1\"\nstream = 2\n",
            "t.toml:3: unknown key upstream.stream (did you mean upstream.streams?)"},
       }) {
    ServeConfig d;
    auto st = ParseConfig(c.text, "t.toml", &d);
    EXPECT_THAT(st, cairn::testing::StatusIs(absl::StatusCode::kInvalidArgument)) << c.text;
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr(c.says)) << c.text;
  }
}

// #13: 0 meant "refuse every publish" for one limit and "unlimited" for the
// other. Both now take 1..100000 and say so.
TEST(NodeConfigTest, LimitsOfZeroAreRefusedNamingTheRange) {
  for (const char* bad :
       {"[node]\nmax_sessions_per_peer = 0\n", "[node]\nmax_streams_per_peer = 0\n",
        "[node]\nmax_streams_per_peer = 100001\n"}) {
    ServeConfig d;
    auto st = ParseConfig(bad, "t.toml", &d);
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("from 1 to 100000")) << bad;
  }
  ServeConfig flags;
  flags.max_sessions_per_peer = 0;
  EXPECT_THAT(std::string(ValidateConfig(&flags).message()),
              ::testing::HasSubstr("from 1 to 100000"));
}

// #12: --log-level verbose silently turned all logging off.
TEST(NodeConfigTest, LogLevelsAreTheNamesTheNodePrintsInAnyCase) {
  for (const char* ok : {"INFO", "warning", "Warn", "error", "trace", "debug", "critical", "off"}) {
    ServeConfig c;
    c.log_level = ok;
    EXPECT_TRUE(ValidateConfig(&c).ok()) << ok;
  }
  ServeConfig w;
  w.log_level = "WARN";
  ASSERT_TRUE(ValidateConfig(&w).ok());
  EXPECT_EQ(w.log_level, "warning");
  for (const char* bad : {"verbose", "", "inf", "1"}) {
    ServeConfig c;
    c.log_level = bad;
    auto st = ValidateConfig(&c);
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("is not one of trace, debug"))
        << bad;
  }
}

// #14: malformed addresses waited out the whole timeout.
TEST(NodeConfigTest, MalformedAddressesAreRefusedAtOnceWithTheExpectedForm) {
  for (const char* bad :
       {"http://x:1", "::::", "127.0.0.1:99999", "host", "host:", ":7070", "h:0", "h:-1", "h:12ab",
        "grpc://h:1", "h:1/path", "[::1", "[zz]:1", "::1:7070", "bad host:1"}) {
    ServeConfig c;
    c.upstreams = {bad};
    auto st = ValidateConfig(&c);
    EXPECT_THAT(st, cairn::testing::StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("expected HOST:PORT")) << bad;
  }
  for (const char* ok : {"h:1", "127.0.0.1:65535", "[::1]:7070", "tls://hub.example.org:443",
                         "plain://10.0.0.1:7070", "my-node_1.lan:7070"}) {
    ServeConfig c;
    c.peers = {ok};
    EXPECT_TRUE(ValidateConfig(&c).ok()) << ok;
  }
  ServeConfig l;
  l.listen = "127.0.0.1:0";
  EXPECT_TRUE(ValidateConfig(&l).ok());
}

// #15 (in part): TLS per node, so TLS and plaintext mirrors mix in one pull.
TEST(NodeConfigTest, TlsAndPlainSchemesChooseTransportSecurityPerNode) {
  TlsOptions none, with_ca;
  with_ca.ca_pem = "-----BEGIN CERTIFICATE-----";
  EXPECT_FALSE(UsesTls("h:1", none));
  EXPECT_TRUE(UsesTls("h:1", with_ca));     // as before: a CA means TLS
  EXPECT_TRUE(UsesTls("tls://h:1", none));  // the system's roots
  EXPECT_TRUE(UsesTls("TLS://h:1", with_ca));
  EXPECT_FALSE(UsesTls("plain://h:1", with_ca));
  auto a = ParseNodeAddress("tls://[::1]:7070");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->target(), "[::1]:7070");
  EXPECT_EQ(a->scheme, NodeAddress::Scheme::kTls);
}

// Issue 16: a config was checked one error at a time (fix one, start again,
// meet the next). Every error comes in one run, in the file's order, each
// with its line; addresses and the log level are checked where written.
TEST(NodeConfigTest, EveryErrorOfAFileIsReportedInOneRunWithItsLine) {
  ServeConfig c;
  auto st = ParseConfig(R"([node]
listen = "nohost"
log_level = "verbose"
max_streams_per_peer = 0
peers = ["a:1", "b:0"]
[[upstream]]
address = "hub:99999"
[http]
verify_read = true
)",
                        "t.toml", &c);
  ASSERT_THAT(st, cairn::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  const std::vector<std::string> lines = absl::StrSplit(st.message(), '\n');
  ASSERT_EQ(lines.size(), 6u) << st.message();
  EXPECT_THAT(lines[0], ::testing::HasSubstr("t.toml:2: node.listen bad node address"));
  EXPECT_THAT(lines[1], ::testing::HasSubstr("t.toml:3: node.log_level log level verbose"));
  EXPECT_THAT(lines[2], ::testing::HasSubstr("t.toml:4: node.max_streams_per_peer"));
  EXPECT_THAT(lines[3], ::testing::HasSubstr("t.toml:5: node.peers bad node address \"b:0\""));
  EXPECT_THAT(lines[4], ::testing::HasSubstr("t.toml:7: upstream.address"));
  EXPECT_THAT(lines[5], ::testing::HasSubstr("t.toml:9: unknown key http.verify_read (did you mean "
                                             "http.verify_reads?)"));
}

TEST(NodeConfigTest, TheGatewaysReadCheckIsCrcUnlessSha256IsAsked) {
  ServeConfig c;
  EXPECT_EQ(c.http_verify_reads_with, "crc32c");
  ASSERT_TRUE(ParseConfig("[http]\nverify_reads_with = \"sha256\"\n", "t.toml", &c).ok());
  EXPECT_EQ(c.http_verify_reads_with, "sha256");
  ASSERT_TRUE(ParseConfig("[http]\nverify_reads_with = \"CRC32C\"\n", "t.toml", &c).ok());
  EXPECT_EQ(c.http_verify_reads_with, "crc32c");  // any case, kept in the canonical one
  auto st = ParseConfig("[http]\nverify_reads_with = \"md5\"\n", "t.toml", &c);
  ASSERT_THAT(st, cairn::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(st.message(), ::testing::HasSubstr("t.toml:2: http.verify_reads_with"));
  EXPECT_THAT(st.message(), ::testing::HasSubstr("crc32c"));
}

TEST(NodeConfigTest, CheckConfigNamesEveryErrorAndTheFilesItCannotLoad) {
  testing::TempDir dir;
  testing::WriteFile(dir / "bad.toml", "[node]\nlisten = \"nohost\"\ntrust = \"" +
                                           dir / "missing.root" + "\"\nscrub_interval_hours = 0\n");
  auto r = testing::Run({testing::CairnNodeBin(), "check-config", dir / "bad.toml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::HasSubstr("bad.toml:2: node.listen"));
  EXPECT_THAT(r.err, ::testing::HasSubstr("bad.toml:4: node.scrub_interval_hours"));
  // The file's syntax errors first; then what it names is loaded.
  testing::WriteFile(dir / "names.toml", "[node]\ntrust = \"" + dir / "missing.root" + "\"\n");
  r = testing::Run({testing::CairnNodeBin(), "check-config", dir / "names.toml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::HasSubstr("names.toml: node.trust: trust file: cannot open"));
  TrustFixture t = TrustFixture::Make("acme");
  t.Save(dir.path());
  testing::WriteFile(dir / "good.toml",
                     "[node]\ntrust = \"" + dir / "trust.root" + "\"\nlisten = \"0.0.0.0:7070\"\n");
  r = testing::Run({testing::CairnNodeBin(), "check-config", dir / "good.toml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::HasSubstr("good.toml: OK (data "));
  r = testing::Run({testing::CairnNodeBin(), "serve", "--log-level", "verbose", "--trust",
                    dir / "trust.root", "--data", dir / "d"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::HasSubstr("log level verbose is not one of"));
}

}  // namespace
}  // namespace cairn::node

namespace cairn::node {
namespace {

// [node] log_file: the node's log in a file it rotates itself; a file that
// cannot be opened is one clear error and the logger in place stays.
TEST(NodeLoggingTest, TheLogFileIsRotatedAtItsSizeAndOnlySoManyAreKept) {
  testing::TempDir dir;
  LogOptions o;
  o.file = dir / "node.log";
  o.max_bytes = 65536;
  o.files = 2;
  ASSERT_TRUE(SetUpLogging(o).ok());
  const std::string line(200, 'x');
  for (int i = 0; i < 2000; ++i) spdlog::info("line {} {}", i, line);  // ~420 KB
  spdlog::info("the last line");
  auto size = [&](const std::string& name) {
    struct stat st;
    return ::stat((dir / name).c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
  };
  EXPECT_GT(size("node.log"), 0);
  EXPECT_LE(size("node.log"), 65536);
  EXPECT_GT(size("node.1.log"), 60000);
  EXPECT_LE(size("node.1.log"), 65536);
  EXPECT_GT(size("node.2.log"), 60000);
  EXPECT_EQ(size("node.3.log"), -1);  // the oldest were dropped
  std::ifstream f(dir / "node.log");
  std::string all((std::istreambuf_iterator<char>(f)), {});
  EXPECT_NE(all.find("the last line"), std::string::npos);  // flushed at once

  LogOptions bad = o;
  bad.file = dir / "missing/dir/node.log";
  absl::Status st = SetUpLogging(bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("missing/dir/node.log"), std::string::npos) << st;
  spdlog::info("still here");
  std::ifstream g(dir / "node.log");
  std::string again((std::istreambuf_iterator<char>(g)), {});
  EXPECT_NE(again.find("still here"), std::string::npos);
  ASSERT_TRUE(SetUpLogging(LogOptions{}).ok());  // back to standard error
}

TEST(NodeLoggingTest, LogSettingsAreRead) {
  testing::TempDir dir;
  const std::string path = dir / "n.toml";
  std::ofstream(path) << "[node]\nlog_file = \"/var/log/cairn/node.log\"\nlog_max_bytes = "
                         "1048576\nlog_files = 3\n";
  ServeConfig c;
  ASSERT_TRUE(LoadConfig(path, &c).ok());
  EXPECT_EQ(c.log_file, "/var/log/cairn/node.log");
  EXPECT_EQ(c.log_max_bytes, 1048576);
  EXPECT_EQ(c.log_files, 3);
  std::ofstream(path) << "[node]\nlog_max_bytes = 100\n";
  absl::Status st = LoadConfig(path, &c);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("log_max_bytes"), std::string::npos) << st;
}

TEST(NodeLoggingTest, CapacitySettingsAreReadAndBadPinsNamed) {
  testing::TempDir dir;
  const std::string path = dir / "c.toml";
  std::ofstream(path) << "[node]\nmax_bytes = 5000\npin = [\"acme/*\", \"acme/m@1.0\"]\n"
                         "[namespace_limits]\nacme = 3000\n";
  ServeConfig c;
  ASSERT_TRUE(LoadConfig(path, &c).ok());
  EXPECT_EQ(c.max_bytes, 5000u);
  EXPECT_EQ(c.pins, (std::vector<std::string>{"acme/*", "acme/m@1.0"}));
  ASSERT_EQ(c.namespace_limits.size(), 1u);
  EXPECT_EQ(c.namespace_limits[0].second, 3000u);
  std::ofstream(path) << "[node]\npin = [\"acme/m:latest\"]\n[namespace_limits]\n\"a/b\" = 1\n";
  ServeConfig bad;
  absl::Status st = LoadConfig(path, &bad);
  EXPECT_NE(st.message().find("acme/m:latest"), std::string::npos) << st;
  EXPECT_NE(st.message().find("not a namespace"), std::string::npos) << st;
}

}  // namespace
}  // namespace cairn::node
