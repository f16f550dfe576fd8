// The Hugging Face Hub API of the gateway, held to what the real clients
// need (headers, revisions, errors, pagination, paths-info), /v1/chunks, and
// the gateway under hostile load, over real sockets.
#include <sys/resource.h>

#include <chrono>
#include <regex>

#include "hf_model.h"
#include "http_fixture.h"
#include "nlohmann/json.hpp"

namespace cairn {
namespace {

using ::testing::HasSubstr;
using testing::Reply;
using json = nlohmann::json;
namespace asio = testing::asio;
namespace beast = testing::beast;
namespace http = testing::http;
using tcp = testing::tcp;

class HfGatewayTest : public testing::HttpGatewayFixture {
 protected:
  std::string Commit() { return json::parse(Get("/api/models/acme/m").body)["sha"]; }
  static bool hf_sha_ok(const json& j) {
    return j.is_string() && node::hf::IsCommitId(j.get<std::string>());
  }
  cairn::v1::FileEntry File(const std::string& path) {
    auto r = repo_->Resolve("acme/m@" + manifest_);
    auto m = ParseManifest(ParseEnvelope(r->manifest_envelope(), 1 << 20)->payload());
    for (const auto& f : m->files()) {
      if (f.path() == path) return f;
    }
    ADD_FAILURE() << "no " << path;
    return {};
  }
  cairn::v1::FileEntry w_entry() { return File("weights.bin"); }
  std::string json_root() { return File("sub/config.json").root(); }
  void PublishAgain(const std::string& version, const std::string& bytes) {
    testing::WriteFile(dir_ / ("m" + version + "/weights.bin"), bytes);
    auto conn = std::move(Connection::Open(server_->address(), 10)).value();
    client::PublishOptions o;
    o.dir = dir_ / ("m" + version);
    o.name = "acme/m";
    o.version = version;
    o.key_paths = {dir_ / "keys/publisher.key"};
    ASSERT_TRUE(client::Publish(*conn, o).ok());
  }
};

TEST_F(HfGatewayTest, ModelInfoHasWhatTheClientsParse) {
  for (const char* t : {"/api/models/acme/m", "/api/models/acme/m/revision/main",
                        "/api/models/acme/m/revision/HEAD", "/api/models/acme/m/revision/1"}) {
    Reply r = Get(t);
    ASSERT_EQ(r.status, 200) << t << r.body;
    json j = json::parse(r.body);
    EXPECT_EQ(j["id"], "acme/m");
    EXPECT_TRUE(hf_sha_ok(j["sha"]));
    EXPECT_TRUE(std::regex_match(std::string(j["lastModified"]),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
    EXPECT_EQ(j["private"], false);
    EXPECT_EQ(j["gated"], false);
    ASSERT_EQ(j["siblings"].size(), 3u);
    EXPECT_EQ(j["siblings"][0]["rfilename"], "empty");
  }
  json blobs = json::parse(Get("/api/models/acme/m?blobs=True").body);
  const json& w = blobs["siblings"][2];
  EXPECT_EQ(w["rfilename"], "weights.bin");
  EXPECT_EQ(w["size"], data_.size());
  EXPECT_EQ(w["lfs"]["sha256"], DigestName(Sha256Of(data_)).substr(7));
  EXPECT_EQ(w["lfs"]["pointerSize"], node::hf::LfsPointer(w_entry()).size());
  EXPECT_EQ(blobs["siblings"][1]["blobId"], node::hf::GitBlobId("{\"a\":1}"));
}

TEST_F(HfGatewayTest, ResolveSendsTheHubsHeadersAndNoXet) {
  const std::string sha = Commit();
  Reply small = Get("/acme/m/resolve/main/sub/config.json", {}, http::verb::head);
  EXPECT_EQ(small.status, 200);
  const std::string blob = "\"" + node::hf::GitBlobId("{\"a\":1}") + "\"";
  EXPECT_EQ(small.headers["ETag"], blob);  // git blob id: not in LFS
  EXPECT_EQ(small.headers["X-Linked-Etag"], blob);
  EXPECT_EQ(small.headers["X-Repo-Commit"], sha);
  EXPECT_EQ(small.headers["Content-Length"], "7");
  Reply big = Get("/acme/m/resolve/" + sha + "/weights.bin", {{"Range", "bytes=0-0"}});
  EXPECT_EQ(big.status, 206);  // the JavaScript client's probe
  EXPECT_EQ(big.headers["Content-Range"], "bytes 0-0/" + std::to_string(data_.size()));
  const std::string sha256 = "\"" + DigestName(Sha256Of(data_)).substr(7) + "\"";
  EXPECT_EQ(big.headers["ETag"], sha256);  // LFS: the SHA-256
  EXPECT_EQ(big.headers["X-Linked-Etag"], sha256);
  EXPECT_EQ(big.headers["X-Linked-Size"], std::to_string(data_.size()));
  EXPECT_EQ(big.headers["Accept-Ranges"], "bytes");
  EXPECT_TRUE(Get("/acme/m/resolve/main/weights.bin").body == data_);
  EXPECT_EQ(Get("/acme/m/resolve/main/weights.bin", {{"If-None-Match", sha256}}).status, 304);
  Reply empty = Get("/acme/m/resolve/main/empty", {{"Range", "bytes=0-0"}});
  EXPECT_EQ(empty.status, 206);
  EXPECT_EQ(empty.headers["Content-Range"], "bytes */0");
  // raw: a small file's bytes; an LFS file's pointer.
  EXPECT_EQ(Get("/acme/m/raw/main/sub/config.json").body, "{\"a\":1}");
  EXPECT_THAT(Get("/acme/m/raw/main/weights.bin").body,
              HasSubstr("oid sha256:" + DigestName(Sha256Of(data_)).substr(7)));
  EXPECT_EQ(Get("/acme/m/raw/main/nope", {}, http::verb::head).status, 404);
  for (const auto& r : {small, big, empty}) {
    for (const auto& [k, v] : r.headers) EXPECT_EQ(k.find("Xet"), std::string::npos) << k;
  }
  EXPECT_EQ(Get("/api/models/acme/m?blobs=true").body.find("xet"), std::string::npos);
}

TEST_F(HfGatewayTest, ErrorsCarryTheHubsErrorCodes) {
  const std::string sha = Commit();
  Reply repo = Get("/acme/zz/resolve/main/weights.bin");
  EXPECT_EQ(repo.status, 404);
  EXPECT_EQ(repo.headers["X-Error-Code"], "RepoNotFound");
  EXPECT_NO_THROW(json::parse(repo.body)["error"].get<std::string>());
  Reply rev = Get("/acme/m/resolve/v9/weights.bin");
  EXPECT_EQ(rev.headers["X-Error-Code"], "RevisionNotFound");
  EXPECT_EQ(Get("/api/models/acme/m/revision/refs%2Fpr%2F1").headers["X-Error-Code"],
            "RevisionNotFound");  // Python encodes every '/' of a ref
  Reply entry = Get("/acme/m/resolve/main/nope.bin");
  EXPECT_EQ(entry.headers["X-Error-Code"], "EntryNotFound");
  EXPECT_EQ(entry.headers["X-Repo-Commit"], sha);
  EXPECT_FALSE(entry.headers["X-Error-Message"].empty());
  EXPECT_EQ(Get("/api/models/nobody/nothing").headers["X-Error-Code"], "RepoNotFound");
}

TEST_F(HfGatewayTest, ACommitIdNeverChangesWhatItNames) {
  const std::string first = Commit();
  EXPECT_EQ(first, node::hf::DerivedCommitId(manifest_));
  PublishAgain("2", "second release");
  const std::string second = Commit();
  EXPECT_NE(first, second);  // main moved with latest
  EXPECT_TRUE(Get("/acme/m/resolve/" + first + "/weights.bin").body == data_);
  EXPECT_EQ(Get("/acme/m/resolve/" + second + "/weights.bin").body, "second release");
  EXPECT_EQ(Get("/acme/m/resolve/main/weights.bin").headers["X-Repo-Commit"], second);
  EXPECT_EQ(json::parse(Get("/api/models/acme/m/revision/" + first).body)["sha"], first);
}

TEST_F(HfGatewayTest, TreePagesWithAbsoluteLinksAndPathsInfoTakesBothBodies) {
  node::HttpOptions o;
  o.tree_page_size = 2;
  auto gw = std::move(node::HttpGateway::Start(repo_.get(), "127.0.0.1:0", o)).value();
  std::vector<std::string> paths;
  std::string next = "/api/models/acme/m/tree/main?recursive=True";
  int pages = 0;
  while (!next.empty() && pages < 10) {
    Reply r = Get(next, {}, http::verb::get, gw->port());
    ASSERT_EQ(r.status, 200) << r.body;
    ++pages;
    for (const auto& e : json::parse(r.body)) paths.push_back(e["path"]);
    next.clear();
    if (auto l = r.headers.find("Link"); l != r.headers.end()) {
      std::smatch m;
      ASSERT_TRUE(std::regex_search(l->second, m,
                                    std::regex(R"(<http://127\.0\.0\.1(/[^>]+)>; rel="next")")))
          << l->second;  // absolute, from the Host header
      next = m[1];
    }
  }
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(paths, (std::vector<std::string>{"empty", "sub", "sub/config.json", "weights.bin"}));
  json top = json::parse(Get("/api/models/acme/m/tree/main?recursive=false").body);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[1]["type"], "directory");
  EXPECT_EQ(top[2]["lfs"]["oid"], DigestName(Sha256Of(data_)).substr(7));
  json sub = json::parse(Get("/api/models/acme/m/tree/1/sub").body);
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0]["oid"], node::hf::GitBlobId("{\"a\":1}"));
  EXPECT_EQ(Get("/api/models/acme/m/tree/main/nodir").headers["X-Error-Code"], "EntryNotFound");

  Reply js = Post("/api/models/acme/m/paths-info/main", "application/json",
                  R"({"paths":["sub/config.json","nope","sub"],"expand":true})");
  ASSERT_EQ(js.status, 200) << js.body;
  json a = json::parse(js.body);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0]["lastCommit"]["id"], Commit());
  EXPECT_EQ(a[1]["type"], "directory");
  Reply form = Post("/api/models/acme/m/paths-info/main", "application/x-www-form-urlencoded",
                    "paths=weights.bin&paths=sub%2Fconfig.json&expand=True");
  ASSERT_EQ(form.status, 200) << form.body;
  EXPECT_EQ(json::parse(form.body).size(), 2u);
  EXPECT_EQ(Post("/api/models/acme/m/paths-info/main", "application/json", "{bad").status, 400);
  EXPECT_EQ(Get("/api/models/acme/m/paths-info/main").status, 405);
}

TEST_F(HfGatewayTest, HostilePathsAndRevisionsAreRefused) {
  for (const char* t :
       {"/acme/m/resolve/main/../weights.bin", "/acme/m/resolve/main/%2e%2e/etc/passwd",
        "/acme/m/resolve/%2e%2e/weights.bin", "/acme/m/resolve/../weights.bin",
        "/api/models/acme/m/tree/main/%2e%2e", "/api/models/acme/m/revision/..",
        "/acme/m/resolve/main/sub%2f..%2fweights.bin", "/%2e%2e/m/resolve/main/weights.bin"}) {
    Reply r = Get(t);
    EXPECT_EQ(r.status, 400) << t << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr("bad path")) << t;
  }
}

TEST_F(HfGatewayTest, ChunksAreServedByDigest) {
  auto list = ParseChunkList(*repo_->GetObject(json_root()));
  ASSERT_TRUE(list.ok());
  const std::string d = DigestName(*DigestFromBytes(list->chunks(0).digest()));
  Reply r = Get("/v1/chunks/" + d);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(DigestName(Sha256Of(r.body)), d);
  EXPECT_EQ(Get("/v1/chunks/" + d, {{"If-None-Match", "\"" + d + "\""}}).status, 304);
  EXPECT_EQ(Get("/v1/chunks/sha256:" + std::string(64, '0')).status, 404);
  EXPECT_EQ(Get("/v1/chunks/sha256:xyz").status, 400);
}

// 2,000 idle connections from one address, a request flood from another:
// each is refused clearly while a third client keeps downloading at speed.
TEST_F(HfGatewayTest, IdleConnectionsAndFloodsDoNotStarveOtherClients) {
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = std::max<rlim_t>(rl.rlim_cur, std::min<rlim_t>(rl.rlim_max, 8192));
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 4500) GTEST_SKIP() << "needs 4,500 file descriptors";
  node::HttpOptions o;
  o.requests_per_second_per_client = 50;
  auto gw = std::move(node::HttpGateway::Start(repo_.get(), "127.0.0.1:0", o)).value();
  auto timed_download = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    Reply r = Get("/acme/m/resolve/main/weights.bin", {}, http::verb::get, gw->port());
    EXPECT_TRUE(r.body == data_);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double before = timed_download();
  asio::io_context ioc;
  std::vector<std::unique_ptr<tcp::socket>> idle;
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    auto s = std::make_unique<tcp::socket>(ioc);
    s->open(tcp::v4());
    s->bind(tcp::endpoint(asio::ip::make_address("127.0.0.2"), 0));
    s->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), gw->port()));
    idle.push_back(std::move(s));
  }
  // Past the per-client cap (256) the gateway answers 503 and closes.
  for (auto& s : idle) {
    s->non_blocking(true);
  }
  ASSERT_TRUE(testing::WaitUntil([&] {
    refused = static_cast<int>(gw->counters().connections_refused.load());
    return refused >= 2000 - 256;
  })) << refused;
  const double during = timed_download();
  std::printf("3 MiB download: %.1f ms alone, %.1f ms beside 2,000 idle connections\n",
              before * 1e3, during * 1e3);
  EXPECT_LT(during, 5.0);
  // A flood from one client: 429 once its bucket (2 s of 50/s) is empty.
  int limited = 0;
  for (int i = 0; i < 150 && limited == 0; ++i) {
    if (Get("/api/models/acme/m", {}, http::verb::get, gw->port()).status == 429) ++limited;
  }
  EXPECT_EQ(limited, 1);
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

// What an outside review found: malformed requests get answers, not silence;
// absolute-form targets page correctly; paths-info says what it wants.
TEST_F(HfGatewayTest, MalformedRequestsAndAbsoluteTargetsAreAnswered) {
  auto raw = [&](const std::string& bytes) {
    asio::io_context ioc;
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), gw_->port()));
    asio::write(s, asio::buffer(bytes));
    std::string out;
    beast::error_code ec;
    char buf[4096];
    for (;;) {
      size_t n = s.read_some(asio::buffer(buf), ec);
      out.append(buf, n);
      if (ec) break;
    }
    return out;
  };
  EXPECT_EQ(raw("GET /api/models/acme/m HTTP/1.1\nHost: x\n\n").substr(0, 12), "HTTP/1.1 400");
  EXPECT_EQ(raw("GET /api/models/acme/m HTTP/1.1\r\nBad header\r\n\r\n").substr(0, 12),
            "HTTP/1.1 400");
  EXPECT_THAT(raw("GET /api/models/acme/m HTTP/1.1\r\nConnection: close\r\n\r\n"),
              HasSubstr("exactly one Host"));
  node::HttpOptions o;
  o.tree_page_size = 2;
  auto gw = std::move(node::HttpGateway::Start(repo_.get(), "127.0.0.1:0", o)).value();
  Reply r = Get("http://abs.example:9/api/models/acme/m/tree/main?recursive=True", {},
                http::verb::get, gw->port());
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(r.headers["Link"],
              ::testing::StartsWith("<http://127.0.0.1/api/models/acme/m/tree/main?"));
  // A JSON body without its Content-Type (curl -d) is still JSON; a form
  // without paths is refused.
  Reply js = Post("/api/models/acme/m/paths-info/main", "application/x-www-form-urlencoded",
                  R"({"paths":["weights.bin"]})");
  ASSERT_EQ(js.status, 200) << js.body;
  EXPECT_EQ(json::parse(js.body).size(), 1u);
  EXPECT_EQ(
      Post("/api/models/acme/m/paths-info/main", "application/x-www-form-urlencoded", "expand=true")
          .status,
      400);
  EXPECT_EQ(
      Post("/api/models/acme/m/paths-info/main", "application/x-www-form-urlencoded", "paths=%zz")
          .status,
      400);
  EXPECT_EQ(Get("/v1/files/acme/m/1/weights.bin", {}, http::verb::delete_).headers["Allow"],
            "GET, HEAD");
  EXPECT_EQ(Get("/v1/files/acme/m/1/weights.bin", {{"Range", "bytes= 1 - 2"}}).body,
            data_.substr(1, 2));
}

TEST_F(HfGatewayTest, NamesOutsideAsciiAreUtf8AndReadAheadHasANodeWideBudget) {
  testing::WriteFile(dir_ / "u/naïve café.txt", "utf8");
  auto conn = std::move(Connection::Open(server_->address(), 10)).value();
  client::PublishOptions po;
  po.dir = dir_ / "u";
  po.name = "acme/u";
  po.version = "1";
  po.key_paths = {dir_ / "keys/publisher.key"};
  ASSERT_TRUE(client::Publish(*conn, po).ok());
  json info = json::parse(Get("/api/models/acme/u").body);
  EXPECT_EQ(info["siblings"][0]["rfilename"], "naïve café.txt");
  EXPECT_EQ(Get("/acme/u/resolve/main/na%C3%AFve%20caf%C3%A9.txt").body, "utf8");
  // Over the budget (0 here) responses read 64 KiB at a time, none ahead.
  node::HttpOptions o;
  o.max_read_ahead_bytes = 0;
  auto gw = std::move(node::HttpGateway::Start(repo_.get(), "127.0.0.1:0", o)).value();
  EXPECT_TRUE(Get("/acme/m/resolve/main/weights.bin", {}, http::verb::get, gw->port()).body ==
              data_);
  Reply part = Get("/acme/m/resolve/main/weights.bin", {{"Range", "bytes=70000-1000000"}},
                   http::verb::get, gw->port());
  EXPECT_TRUE(part.body == data_.substr(70000, 930001));
}

}  // namespace
}  // namespace cairn
