#include "http_gateway.h"

#include <sys/sendfile.h>

#include <array>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/ssl.hpp>
#include <csignal>
#include <future>
#include <sstream>

#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/address.h"
#include "http_gateway_impl.h"
#include "http_util.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using namespace gw;  // NOLINT: the gateway's own insides
using http_util::SV;

namespace gw {

Answer Error(http::status st, std::string_view message) {
  return Answer{
      st, StrCat("{\"error\":", http_util::JsonString(message), "}\n"), "application/json", {}};
}

Answer FromStatus(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return Error(http::status::not_found, std::string(s.message()));
    case absl::StatusCode::kInvalidArgument:
      return Error(http::status::bad_request, std::string(s.message()));
    case absl::StatusCode::kFailedPrecondition:  // yanked, withheld: on purpose, not a fault
      return Error(http::status::gone, std::string(s.message()));
    default:
      return Error(http::status::internal_server_error, std::string(s.message()));
  }
}

namespace {

constexpr auto kAwait = asio::use_awaitable;
inline auto Redirect(ErrorCode& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

template <typename Stream>
class ConnOf final : public Conn {
 public:
  template <typename... Args>
  explicit ConnOf(Args&&... args) : s_(std::forward<Args>(args)...) {}
  Stream& stream() { return s_; }
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(s_); }

  asio::awaitable<ErrorCode> ReadHeader(beast::flat_buffer& b,
                                        http::request_parser<http::string_body>& p,
                                        std::chrono::seconds timeout) override {
    ErrorCode ec;
    tcp().expires_after(timeout);
    co_await http::async_read_header(s_, b, p, Redirect(ec));
    co_return ec;
  }
  asio::awaitable<ErrorCode> ReadBody(beast::flat_buffer& b,
                                      http::request_parser<http::string_body>& p,
                                      std::chrono::seconds timeout) override {
    ErrorCode ec;
    tcp().expires_after(timeout);
    co_await http::async_read(s_, b, p, Redirect(ec));
    co_return ec;
  }
  asio::awaitable<Written> Write(std::vector<asio::const_buffer> bufs,
                                 std::chrono::seconds timeout) override {
    Written w;
    tcp().expires_after(timeout);
    w.bytes = co_await asio::async_write(s_, bufs, Redirect(w.ec));
    co_return w;
  }
  bool CanSendFile() const override { return kPlain; }
  asio::awaitable<Written> SendFile(int fd, uint64_t offset, uint64_t length,
                                    std::chrono::seconds timeout) override {
    Written w;
    if constexpr (!kPlain) {
      w.ec = asio::error::operation_not_supported;
      co_return w;
    } else {
      auto& sock = tcp().socket();
      sock.native_non_blocking(true, w.ec);
      off_t at = static_cast<off_t>(offset);
      while (!w.ec && w.bytes < length) {
        const ssize_t n = ::sendfile(sock.native_handle(), fd, &at,
                                     std::min<uint64_t>(length - w.bytes, 1 << 30));
        if (n > 0) {
          w.bytes += n;
        } else if (n == 0) {
          w.ec = asio::error::eof;  // the file ends before the extent does
        } else if (errno == EINTR) {
          continue;
        } else if (errno != EAGAIN) {
          w.ec = ErrorCode(errno, boost::system::system_category());
        } else {
          w.ec = co_await WaitWritable(timeout);
        }
      }
      co_return w;
    }
  }
  asio::awaitable<void> WaitSent(std::chrono::seconds timeout) override {
    co_await WaitAcknowledged(tcp().socket(), timeout);
  }
  bool HasInput() override {
    ErrorCode ec;
    return tcp().socket().available(ec) > 0 && !ec;
  }
  void Abort() override {
    ErrorCode ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().socket().close(ignored);
  }
  asio::awaitable<void> Close() override {
    ErrorCode ignored;
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
      tcp().expires_after(std::chrono::seconds(5));
      co_await s_.async_shutdown(Redirect(ignored));
    }
    tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
    // Lingering close: closing a socket with unread bytes (a request the
    // answer did not read, as with a refused connection) sends a reset, and
    // a reset can make the client drop the answer it has not read yet. So
    // read and discard until the client closes too, within a bound.
    std::array<char, 4096> sink;
    size_t drained = 0;
    tcp().expires_after(std::chrono::seconds(2));
    while (drained < (256u << 10)) {
      const size_t n = co_await tcp().async_read_some(asio::buffer(sink), Redirect(ignored));
      if (ignored || n == 0) break;
      drained += n;
    }
  }

 private:
  static constexpr bool kPlain = std::is_same_v<Stream, beast::tcp_stream>;
  // Waits until the socket takes more bytes; timed_out past `timeout`. The
  // timer cancels the wait through shared state, so a late expiry touches
  // nothing once the wait is over (both run on the connection's strand).
  asio::awaitable<ErrorCode> WaitWritable(std::chrono::seconds timeout) {
    struct Waiting {
      bool active = true, expired = false;
    };
    auto state = std::make_shared<Waiting>();
    auto& sock = tcp().socket();
    asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
    timer.async_wait([state, &sock](ErrorCode e) {
      if (e || !state->active) return;
      state->expired = true;
      ErrorCode ignored;
      sock.cancel(ignored);
    });
    ErrorCode ec;
    co_await sock.async_wait(tcp::socket::wait_write, Redirect(ec));
    state->active = false;
    timer.cancel();
    if (state->expired) ec = beast::error::timeout;
    co_return ec;
  }
  Stream s_;
};

using PlainConn = ConnOf<beast::tcp_stream>;
using TlsConn = ConnOf<beast::ssl_stream<beast::tcp_stream>>;

}  // namespace
}  // namespace gw

asio::awaitable<void> HttpGateway::Impl::Accept() {
  for (;;) {
    ErrorCode ec;
    tcp::socket s = co_await acceptor.async_accept(Redirect(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // EMFILE and the like: the next accept may succeed
    }
    // A strand per connection: reads finishing on the pool land on it.
    asio::co_spawn(asio::make_strand(ioc), Serve(std::move(s)), asio::detached);
  }
}

asio::awaitable<void> HttpGateway::Impl::Serve(tcp::socket socket) {
  ErrorCode ec;
  // Heads and bodies go in separate writes: without this, Nagle holds the
  // second until the client's delayed ACK (40 ms a request).
  socket.set_option(tcp::no_delay(true), ec);
  std::string peer = socket.remote_endpoint(ec).address().to_string(ec);
  std::unique_ptr<Conn> conn;
  if (tls) {
    auto c = std::make_unique<TlsConn>(std::move(socket), *tls);
    c->tcp().expires_after(std::chrono::seconds(opts.header_timeout_seconds));
    co_await c->stream().async_handshake(asio::ssl::stream_base::server, Redirect(ec));
    if (ec) co_return;  // not TLS, or too slow: nothing to answer in
    conn = std::move(c);
  } else {
    conn = std::make_unique<PlainConn>(std::move(socket));
  }
  conn->peer = peer;
  // Counted from here until the coroutine ends, node-wide and per client.
  bool over = ++connections > opts.max_connections;
  {
    absl::MutexLock l(&peers_mu);
    PeerState& p = peers[peer];
    over = ++p.connections > opts.max_connections_per_client || over;
  }
  struct Count {
    Impl* impl;
    std::string peer;
    ~Count() {
      --impl->connections;
      absl::MutexLock l(&impl->peers_mu);
      auto it = impl->peers.find(peer);
      if (it != impl->peers.end()) --it->second.connections;
    }
  } count{this, peer};
  Request none;
  none.version(11);
  none.keep_alive(false);
  if (over) {
    counters.connections_refused++;
    Exchange x{*conn, none, "refused"};
    Answer a = Error(http::status::service_unavailable, "too many connections; retry later");
    a.headers.emplace_back("Retry-After", "5");
    co_await SendAnswer(x, std::move(a));
    co_await conn->Close();
    co_return;
  }
  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(opts.max_header_bytes);
    parser.body_limit(opts.max_body_bytes);
    // A new connection gets the header timeout; a kept-alive one may idle.
    ec = co_await conn->ReadHeader(
        buffer, parser,
        std::chrono::seconds(first ? opts.header_timeout_seconds : opts.idle_seconds));
    first = false;
    if (!ec) {
      ec = co_await conn->ReadBody(buffer, parser,
                                   std::chrono::seconds(opts.header_timeout_seconds));
    }
    if (ec == http::error::header_limit || ec == http::error::body_limit) {
      Exchange x{*conn, none, "refused"};
      {
        Answer answer_ =
            Error(ec == http::error::header_limit ? http::status::request_header_fields_too_large
                                                  : http::status::payload_too_large,
                  ec == http::error::header_limit ? "request headers too large"
                                                  : "request body too large");
        co_await SendAnswer(x, std::move(answer_));
      }
      break;
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      // Malformed HTTP/1.x (bare LF, a header without a colon, a bad
      // Content-Length, chunked bodies): say so before closing.
      Exchange x{*conn, none, "refused"};
      co_await SendAnswer(
          x, Error(http::status::bad_request, "malformed HTTP request: " + ec.message()));
      break;
    }
    if (ec) break;  // closed, timed out, or not HTTP
    const Request& req = parser.get();
    counters.requests++;
    Exchange x{*conn, req};
    x.https = tls != nullptr;
    bool keep = true;
    ++answering;
    // Chunk requests are bounded by their size and the connection limits,
    // like Chunks.GetMany, not by the request rate (a fast pull makes
    // hundreds a second).
    const bool chunks = req.method() == http::verb::post &&
                        SV(req.target()).substr(0, SV(req.target()).find('?')) == "/v1/chunks";
    if (!chunks && !TakeToken(peer)) {
      x.endpoint = "rate_limited";
      Answer a = Error(http::status::too_many_requests, "too many requests; slow down");
      a.headers.emplace_back("Retry-After", "1");
      keep = co_await SendAnswer(x, std::move(a));
    } else {
      keep = co_await Handle(x);
    }
    // The answer counts as in progress until the kernel sent it, unless the
    // client already asked again (pipelined chunk requests): that answer
    // follows this one, and waiting here would leave the link idle.
    if (buffer.size() == 0 && !conn->HasInput()) {
      co_await conn->WaitSent(std::chrono::seconds(opts.idle_seconds));
    }
    --answering;
    {
      absl::MutexLock l(&request_counts.mu);
      request_counts.by_endpoint[{x.endpoint, x.status}]++;
    }
    // While draining, requests the client already sent (pipelined chunk
    // requests) are still answered; then the connection closes.
    if (!keep || !req.keep_alive() || (draining && buffer.size() == 0 && !conn->HasInput())) break;
  }
  co_await conn->Close();
}

bool HttpGateway::Impl::TakeToken(const std::string& peer) {
  if (opts.requests_per_second_per_client <= 0) return true;
  const auto now = std::chrono::steady_clock::now();
  absl::MutexLock l(&peers_mu);
  PeerState& p = peers[peer];
  const double rate = opts.requests_per_second_per_client;
  const double burst = 2 * rate;
  if (p.refilled == std::chrono::steady_clock::time_point()) p.tokens = burst;
  p.tokens =
      std::min(burst, p.tokens + rate * std::chrono::duration<double>(now - p.refilled).count());
  p.refilled = now;
  if (peers.size() > 65536) {  // forget clients that have gone
    for (auto it = peers.begin(); it != peers.end();) {
      if (it->second.connections == 0 && it->first != peer) {
        peers.erase(it++);
      } else {
        ++it;
      }
    }
  }
  if (p.tokens < 1) return false;
  p.tokens -= 1;
  return true;
}

asio::awaitable<bool> HttpGateway::Impl::SendHead(Exchange& x, http::response_header<>& head) {
  head.set(http::field::server, "cairn-node");
  x.status = head.result_int();
  std::ostringstream out;
  out << head;
  const std::string text = out.str();
  std::vector<asio::const_buffer> bufs(1, asio::buffer(text));
  const Written w = co_await x.conn.Write(std::move(bufs), std::chrono::seconds(opts.idle_seconds));
  co_return !w.ec;
}

asio::awaitable<bool> HttpGateway::Impl::SendAnswer(Exchange& x, Answer a) {
  http::response_header<> head;
  head.result(a.status);
  head.version(x.req.version() == 10 ? 10 : 11);
  head.set(http::field::content_type, a.content_type);
  for (auto& [k, v] : a.headers) head.set(k, v);
  head.set(http::field::content_length, std::to_string(a.body.size()));
  if (!x.req.keep_alive()) head.set(http::field::connection, "close");
  // Head and body in one write (one packet for a small answer).
  head.set(http::field::server, "cairn-node");
  x.status = head.result_int();
  std::ostringstream out;
  out << head;
  const std::string text = out.str();
  std::vector<asio::const_buffer> bufs(1, asio::buffer(text));
  if (x.req.method() != http::verb::head && !a.body.empty()) bufs.push_back(asio::buffer(a.body));
  const Written w = co_await x.conn.Write(std::move(bufs), std::chrono::seconds(opts.idle_seconds));
  co_return !w.ec;
}

asio::awaitable<bool> HttpGateway::Impl::Handle(Exchange& x) {
  const Request& req = x.req;
  const bool post = req.method() == http::verb::post;
  // HTTP/1.1 names exactly one Host (RFC 9112 3.2).
  const auto hosts = req.count(http::field::host);
  if (hosts > 1 || (hosts == 0 && req.version() >= 11)) {
    Answer a =
        Error(http::status::bad_request, "an HTTP/1.1 request needs exactly one Host header");
    co_return co_await SendAnswer(x, std::move(a));
  }
  std::string_view target = SV(req.target());
  // Absolute form (GET http://host/path), as proxies send it.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.substr(0, scheme.size()) == scheme) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  x.target = target;
  if (target.substr(0, target.find('?')) == "/v1/chunks") {
    if (post) co_return co_await PostChunks(x);
    Answer a = Error(http::status::method_not_allowed, "POST only (docs/protocol.md)");
    a.headers.emplace_back("Allow", "POST");
    co_return co_await SendAnswer(x, std::move(a));
  }
  const bool api = target.substr(0, 12) == "/api/models/";
  if (req.method() != http::verb::get && req.method() != http::verb::head && !(post && api)) {
    Answer a = Error(http::status::method_not_allowed,
                     api ? "GET, HEAD, or POST for paths-info" : "GET or HEAD only");
    a.headers.emplace_back("Allow", api ? "GET, HEAD, POST" : "GET, HEAD");
    co_return co_await SendAnswer(x, std::move(a));
  }
  auto raw = http_util::RawSegments(target);
  if (!raw) {
    Answer answer_ = Error(http::status::bad_request, "bad request target");
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  const std::vector<std::string_view>& s = *raw;
  if (s.size() >= 2 && s[0] == "api" && s[1] == "models") co_return co_await HfApi(x, s);
  if (s.empty()) {
    x.endpoint = "status_page";
    {
      Answer answer_ = StatusPage();
      co_return co_await SendAnswer(x, std::move(answer_));
    }
  }
  if (s.size() == 1 && s[0] == "healthz") {  // container and load-balancer health checks
    x.endpoint = "healthz";
    Answer answer_ =
        draining ? Error(http::status::service_unavailable, "draining: stopping")
                 : Answer{http::status::ok, "{\"status\":\"ok\"}\n", "application/json", {}};
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  if (s.size() == 1 && s[0] == "metrics") {
    x.endpoint = "metrics";
    {
      Answer answer_ = Metrics();
      co_return co_await SendAnswer(x, std::move(answer_));
    }
  }
  if (s[0] == "v1") {
    std::vector<std::string> c;
    for (size_t i = 0; i < s.size(); ++i) {
      auto seg = http_util::CleanSegment(s[i]);
      if (!seg) {
        {
          Answer answer_ =
              Error(http::status::bad_request,
                    "bad path: empty, '.' or '..' segments and bad escapes are refused");
          co_return co_await SendAnswer(x, std::move(answer_));
        }
      }
      c.push_back(std::move(*seg));
    }
    if (c.size() == 4 && c[1] == "releases") {
      x.endpoint = "v1_releases";
      {
        Answer answer_ = Releases(c[2] + "/" + c[3]);
        co_return co_await SendAnswer(x, std::move(answer_));
      }
    }
    if (c.size() == 3 && c[1] == "chunks") {
      x.endpoint = "v1_chunks";
      co_return co_await V1Chunk(x, c[2]);
    }
    if (c.size() >= 6 && c[1] == "files") {
      x.endpoint = "v1_files";
      std::string path = c[5];
      for (size_t i = 6; i < c.size(); ++i) path += "/" + c[i];
      const std::string name = c[2] + "/" + c[3];
      co_return co_await V1File(x, name, c[4], path);
    }
  }
  if (s.size() >= 5 && (s[2] == "resolve" || s[2] == "raw")) co_return co_await HfFile(x, s);
  {
    Answer answer_ = Error(http::status::not_found, "no such endpoint");
    co_return co_await SendAnswer(x, std::move(answer_));
  }
}

HttpGateway::HttpGateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<HttpGateway>> HttpGateway::Start(Repository* repo,
                                                                const std::string& listen,
                                                                const HttpOptions& options) {
  // sendfile(2) takes no MSG_NOSIGNAL: a client hanging up mid-body would
  // kill the process with SIGPIPE (systemd ignores it for its units; a shell
  // or a container engine does not). Process-wide, once: EPIPE is the answer.
  static const bool sigpipe_ignored = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;
  CAIRN_ASSIGN_OR_RETURN(NodeAddress addr, ParseNodeAddress(listen, /*allow_port_zero=*/true));
  if (addr.scheme != NodeAddress::Scheme::kDefault) {
    return absl::InvalidArgumentError("http address " + listen + " takes no scheme");
  }
  auto impl = std::make_unique<Impl>(repo, options);
  if (!options.tls_cert_pem.empty()) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    ErrorCode ec;
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1,
                     ec);
    if (!ec) ctx->use_certificate_chain(asio::buffer(options.tls_cert_pem), ec);
    if (!ec) ctx->use_private_key(asio::buffer(options.tls_key_pem), asio::ssl::context::pem, ec);
    if (ec) return absl::InvalidArgumentError("http TLS certificate or key: " + ec.message());
    impl->tls = std::move(ctx);
  }
  ErrorCode ec;
  tcp::resolver resolver(impl->ioc);
  auto results = resolver.resolve(addr.host, std::to_string(addr.port), ec);
  if (ec || results.empty()) {
    return absl::UnavailableError(
        StrCat("cannot resolve http address ", listen, ": ", ec.message()));
  }
  const tcp::endpoint ep = results.begin()->endpoint();
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(StrCat("cannot listen on ", listen, ": ", ec.message()));
  impl->port = impl->acceptor.local_endpoint().port();
  addr.port = impl->port;
  impl->address = addr.target();
  asio::co_spawn(impl->ioc, impl->Accept(), asio::detached);
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    impl->threads.emplace_back([p = impl.get()] { p->ioc.run(); });
  }
  return std::unique_ptr<HttpGateway>(new HttpGateway(std::move(impl)));
}

HttpGateway::~HttpGateway() {
  if (!impl_) return;
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  // Drained, not abandoned: what they finish posts to the stopped io_context,
  // whose destruction then frees every parked coroutine once.
  impl_->work.join();
  impl_->fetch_pool.join();
}

size_t HttpGateway::Drain(absl::Time deadline) {
  impl_->draining = true;
  std::promise<void> closed;
  asio::post(impl_->ioc, [impl = impl_.get(), &closed] {
    ErrorCode ec;
    impl->acceptor.close(ec);
    closed.set_value();
  });
  closed.get_future().wait();
  spdlog::info("http: draining, no new connections; {} answers in progress",
               impl_->answering.load());
  while (impl_->answering > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  return impl_->answering;
}

void HttpGateway::SetUpstreamStatus(std::function<std::vector<cairn::v1::UpstreamStatus>()> fn) {
  absl::MutexLock l(&impl_->status_mu);
  impl_->upstream_status = std::move(fn);
}

int HttpGateway::port() const { return impl_->port; }
std::string HttpGateway::address() const { return impl_->address; }
const HttpCounters& HttpGateway::counters() const { return impl_->counters; }
size_t HttpGateway::open_connections() const { return impl_->connections.load(); }

}  // namespace cairn::node
