// Chunks over plain HTTP (POST /v1/chunks, docs/protocol.md): the gateway's
// answers, pipelining, and clients that use the port a node names in its
// Resolve answers, fall back to GetMany when it cannot be reached, and
// refuse what a hostile port sends.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "cairn/hash.h"
#include "http_fixture.h"

namespace cairn {
namespace {

using testing::HttpGatewayFixture;

std::string Be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  return s;
}

// A listening socket on 127.0.0.1 whose connections `serve` handles, one
// thread each, until the object goes.
class FakePort {
 public:
  explicit FakePort(std::function<void(int fd)> serve) : serve_(std::move(serve)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 16);
    socklen_t n = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n);
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        conns_.emplace_back([this, c] {
          serve_(c);
          ::close(c);
        });
      }
    });
  }
  ~FakePort() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    accept_.join();
    for (auto& t : conns_) t.join();
  }
  int port() const { return port_; }

 private:
  std::function<void(int)> serve_;
  int fd_ = -1, port_ = 0;
  std::thread accept_;
  std::vector<std::thread> conns_;
};

// Reads one POST /v1/chunks request from `fd`: its digests, or none at EOF.
std::vector<std::string> ReadChunkRequest(int fd, std::string* buf) {
  size_t end;
  while ((end = buf->find("\r\n\r\n")) == std::string::npos) {
    char b[4096];
    const ssize_t n = ::recv(fd, b, sizeof(b), 0);
    if (n <= 0) return {};
    buf->append(b, n);
  }
  const size_t cl = buf->find("Content-Length: ");
  const size_t len = std::stoul(buf->substr(cl + 16));
  while (buf->size() < end + 4 + len) {
    char b[4096];
    const ssize_t n = ::recv(fd, b, sizeof(b), 0);
    if (n <= 0) return {};
    buf->append(b, n);
  }
  std::vector<std::string> out;
  for (size_t at = end + 4; at < end + 4 + len; at += 32) out.push_back(buf->substr(at, 32));
  buf->erase(0, end + 4 + len);
  return out;
}

class HttpChunksTest : public HttpGatewayFixture {
 protected:
  // The answer an honest port gives to `digests`, with `filler` instead of
  // the bytes when not 0; empty when a digest is not stored.
  std::string Answer(const std::vector<std::string>& digests, char filler = 0) {
    std::string lengths, bytes;
    for (const auto& raw : digests) {
      std::string real;
      auto d = DigestFromBytes(raw);
      if (!d.ok() || !repo_->chunks()->Get(*d, &real).ok()) return "";
      lengths += Be32(real.size());
      bytes += filler != 0 ? std::string(real.size(), filler) : real;
    }
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(lengths.size() + bytes.size()) +
           "\r\n\r\n" + lengths + bytes;
  }
  std::vector<Digest> Stored() {
    std::vector<Digest> out;
    EXPECT_TRUE(repo_->chunks()->List(nullptr, 1000, &out).ok());
    return out;
  }
  // A node over repo_ that names `port` as its HTTP chunk port.
  std::unique_ptr<node::NodeServer> NodeNaming(int port) {
    node::ServerOptions so;
    so.chunks_http_port = std::make_shared<std::atomic<int>>(port);
    return std::move(node::NodeServer::Start(repo_.get(), "127.0.0.1:0", so)).value();
  }
  absl::StatusOr<client::PullResult> PullFrom(const std::vector<Connection*>& nodes,
                                              const std::string& out) {
    client::PullOptions po;
    po.ref = "acme/m";
    po.out = dir_ / out;
    po.store_dir = dir_ / (out + "-store");
    return client::Pull(nodes, trust_.view, po);
  }
};

TEST_F(HttpChunksTest, AnswersLengthsThenTheBytesOfTheChunksItHolds) {
  auto stored = Stored();
  ASSERT_GE(stored.size(), 2u);
  const Digest unknown = Sha256Of("not here");
  std::string body;
  for (const Digest& d : {stored[0], unknown, stored[1]}) body += DigestBytes(d);
  auto r = Post("/v1/chunks", "application/octet-stream", body);
  ASSERT_EQ(r.status, 200) << r.body;
  std::string a, b;
  ASSERT_TRUE(repo_->chunks()->Get(stored[0], &a).ok());
  ASSERT_TRUE(repo_->chunks()->Get(stored[1], &b).ok());
  EXPECT_EQ(r.body, Be32(a.size()) + Be32(0xffffffff) + Be32(b.size()) + a + b);
  // None held: only the lengths.
  r = Post("/v1/chunks", "application/octet-stream", std::string(DigestBytes(unknown)));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, Be32(0xffffffff));
}

TEST_F(HttpChunksTest, MalformedRequestsAreRefusedWithOneLine) {
  for (const std::string& body : {std::string(), std::string(33, 'x'), std::string(65 * 32, 'x')}) {
    auto r = Post("/v1/chunks", "application/octet-stream", body);
    EXPECT_EQ(r.status, 400) << body.size();
    EXPECT_NE(r.body.find("SHA-256 digests"), std::string::npos) << r.body;
  }
}

TEST_F(HttpChunksTest, PipelinedRequestsAreAnsweredInOrderOnOneConnection) {
  auto stored = Stored();
  ASSERT_GE(stored.size(), 3u);
  testing::asio::io_context ioc;
  testing::beast::tcp_stream s(ioc);
  s.connect(testing::tcp::endpoint(testing::asio::ip::make_address("127.0.0.1"), gw_->port()));
  std::string both;
  for (int i = 0; i < 3; ++i) {
    const std::string d(DigestBytes(stored[i]));
    both += "POST /v1/chunks HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n" + d;
  }
  testing::asio::write(s, testing::asio::buffer(both));  // all three before any answer
  testing::beast::flat_buffer buf;
  for (int i = 0; i < 3; ++i) {
    testing::http::response<testing::http::string_body> resp;
    testing::http::read(s, buf, resp);
    ASSERT_EQ(resp.result_int(), 200);
    std::string want;
    ASSERT_TRUE(repo_->chunks()->Get(stored[i], &want).ok());
    EXPECT_EQ(resp.body(), Be32(want.size()) + want) << i;
  }
}

// A gateway that starts draining still answers the requests a client had
// already sent on its connection (pipelined), then closes it.
TEST_F(HttpChunksTest, ADrainingGatewayAnswersTheRequestsAlreadySent) {
  auto stored = Stored();
  ASSERT_GE(stored.size(), 3u);
  testing::asio::io_context ioc;
  testing::beast::tcp_stream s(ioc);
  s.connect(testing::tcp::endpoint(testing::asio::ip::make_address("127.0.0.1"), gw_->port()));
  std::string three;
  for (int i = 0; i < 3; ++i) {
    three += "POST /v1/chunks HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n" +
             std::string(DigestBytes(stored[i]));
  }
  testing::asio::write(s, testing::asio::buffer(three));
  // The drain starts once the first answer is here: the gateway has then read
  // the three requests (sent in one segment). Started earlier, it could close
  // before reading them, and the client sees a reset (a flaky 1 in 20 before).
  std::thread drain;
  struct Join {
    std::thread* t;
    ~Join() {
      if (t->joinable()) t->join();
    }
  } join{&drain};
  testing::beast::flat_buffer buf;
  for (int i = 0; i < 3; ++i) {
    testing::http::response<testing::http::string_body> resp;
    testing::beast::error_code ec;
    testing::http::read(s, buf, resp, ec);
    ASSERT_FALSE(ec) << "answer " << i << ": " << ec.message();
    if (i == 0) drain = std::thread([this] { gw_->Drain(absl::Now() + absl::Seconds(10)); });
    std::string want;
    ASSERT_TRUE(repo_->chunks()->Get(stored[i], &want).ok());
    EXPECT_EQ(resp.body(), Be32(want.size()) + want) << i;
  }
}

TEST_F(HttpChunksTest, APullUsesTheNamedPortAndWritesTheSameBytes) {
  auto node = NodeNaming(gw_->port());
  auto conn = std::move(Connection::Open(node->address(), 10)).value();
  const uint64_t before = gw_->counters().bytes_sent.load();
  auto r = PullFrom({conn.get()}, "out");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.bin"), data_);
  // The chunk bytes went through the gateway, not GetMany.
  EXPECT_GE(gw_->counters().bytes_sent.load() - before, data_.size());
}

TEST_F(HttpChunksTest, AnUnreachablePortFallsBackToGetMany) {
  int closed_port;
  {
    FakePort p([](int) {});
    closed_port = p.port();
  }  // closed: connections are refused
  auto node = NodeNaming(closed_port);
  auto conn = std::move(Connection::Open(node->address(), 10)).value();
  auto r = PullFrom({conn.get()}, "out");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.bin"), data_);
}

// A port that answers with the right lengths and wrong bytes: the node is
// dropped for corrupt chunks, and an honest node completes the pull.
TEST_F(HttpChunksTest, CorruptBytesFromTheHttpPortDropTheNodeAndTheHonestOneCompletes) {
  FakePort liar([this](int fd) {
    std::string buf;
    for (;;) {
      const std::string all = Answer(ReadChunkRequest(fd, &buf), 'x');
      if (all.empty() || ::send(fd, all.data(), all.size(), MSG_NOSIGNAL) < 0) return;
    }
  });
  auto lying = NodeNaming(liar.port());
  auto honest = NodeNaming(0);
  auto a = std::move(Connection::Open(lying->address(), 10)).value();
  auto b = std::move(Connection::Open(honest->address(), 10)).value();
  auto r = PullFrom({a.get(), b.get()}, "out");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.bin"), data_);
  bool dropped = false;
  for (const auto& s : r->sources) {
    if (s.address == lying->address()) dropped = s.demoted.find("corrupt") != std::string::npos;
  }
  EXPECT_TRUE(dropped);
}

// Answers that break the framing (a 503 when the gateway's connection limits
// are reached, a proxy's page, a chunked or endless answer, a length over
// 1 MiB): the HTTP connection is given up, not the node, and what was not
// answered is asked again over GetMany.
TEST_F(HttpChunksTest, BrokenFramingFromTheHttpPortFallsBackToGetMany) {
  for (const std::string& answer :
       {std::string("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\x7f\xff\xff\xff"),
        std::string("HTTP/1.1 200 OK\r\n") + std::string(20000, 'x')}) {
    FakePort bad([&answer](int fd) {
      std::string buf;
      if (ReadChunkRequest(fd, &buf).empty()) return;
      (void)!::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_WR);
    });
    auto node = NodeNaming(bad.port());
    auto conn = std::move(Connection::Open(node->address(), 10)).value();
    const std::string out = "out-" + std::to_string(answer.size());
    auto r = PullFrom({conn.get()}, out);
    ASSERT_TRUE(r.ok()) << r.status() << " for " << answer.substr(0, 40);
    EXPECT_EQ(testing::ReadFile(dir_ / (out + "/weights.bin")), data_);
    for (const auto& s : r->sources) EXPECT_EQ(s.demoted, "") << s.address;
  }
}

// A good answer, then the port closes with requests still unanswered (a
// gateway that stops): the rest comes over GetMany, in order.
TEST_F(HttpChunksTest, APortClosingMidPullHandsTheRestToGetMany) {
  std::atomic<int> answered{0};
  FakePort once([this, &answered](int fd) {
    std::string buf;
    const std::string all = Answer(ReadChunkRequest(fd, &buf));
    if (!all.empty() && ::send(fd, all.data(), all.size(), MSG_NOSIGNAL) > 0) answered++;
  });  // then closes, whatever else was asked
  auto node = NodeNaming(once.port());
  auto conn = std::move(Connection::Open(node->address(), 10)).value();
  auto r = PullFrom({conn.get()}, "out");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.bin"), data_);
  EXPECT_GE(answered.load(), 1);
}

// A pull whose only node fails part way (here its HTTP port answers, then
// says nothing: dropped as stalled) keeps the verified chunks that arrived,
// and the same command against a working node fetches only the rest.
TEST_F(HttpChunksTest, AFailedPullKeepsWhatArrivedAndTheNextOneResumesFromIt) {
  // Answers until it sent 1 MiB (a third of weights.bin), then says nothing.
  FakePort once([this](int fd) {
    std::string buf;
    for (size_t sent = 0; sent < (1 << 20);) {
      const std::string all = Answer(ReadChunkRequest(fd, &buf));
      if (all.empty() || ::send(fd, all.data(), all.size(), MSG_NOSIGNAL) <= 0) return;
      sent += all.size();
    }
    char b[4096];
    while (::recv(fd, b, sizeof(b), 0) > 0) {
    }  // silent until the client goes
  });
  auto stalling = NodeNaming(once.port());
  auto a = std::move(Connection::Open(stalling->address(), 10)).value();
  client::PullOptions po;
  po.ref = "acme/m";
  po.out = dir_ / "out";
  po.store_dir = dir_ / "store";
  po.streams_per_node = 1;
  po.stall_seconds = 1;
  auto failed = client::Pull({a.get()}, trust_.view, po);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(std::string(failed.status().message()).find("the same command resumes"),
            std::string::npos)
      << failed.status();
  // Never under its name unless whole.
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out/weights.bin"));

  auto plain = NodeNaming(0);
  auto b = std::move(Connection::Open(plain->address(), 10)).value();
  auto resumed = client::Pull({b.get()}, trust_.view, po);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(testing::ReadFile(dir_ / "out/weights.bin"), data_);
  EXPECT_GT(resumed->chunks_local, 0u) << "what arrived before the failure was fetched again";
}

}  // namespace
}  // namespace cairn
