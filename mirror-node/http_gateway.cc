#include "http_gateway.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "cairn/hash.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/address.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using Request = http::request<http::string_body>;

// Percent-decodes a path segment; nullopt for a bad escape or a NUL.
std::optional<std::string> Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int v = 0;
    for (int k = 1; k <= 2; ++k) {
      const char c = s[i + k];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v |= c - 'A' + 10;
      } else {
        return std::nullopt;
      }
    }
    if (v == 0) return std::nullopt;
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

// The request target's path split into decoded segments (query dropped);
// nullopt when a segment is empty, ".", "..", holds a '/' once decoded, or
// does not decode.
std::optional<std::vector<std::string>> Segments(std::string_view target) {
  target = target.substr(0, target.find('?'));
  if (target.empty() || target[0] != '/') return std::nullopt;
  std::vector<std::string> out;
  std::string_view rest = target.substr(1);
  for (;;) {
    const size_t slash = rest.find('/');
    auto seg = Unescape(rest.substr(0, slash));
    if (!seg || seg->empty() || *seg == "." || *seg == ".." ||
        seg->find('/') != std::string::npos) {
      return std::nullopt;
    }
    out.push_back(std::move(*seg));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return out;
}

std::string_view SV(beast::string_view s) { return std::string_view(s.data(), s.size()); }

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        // Control bytes, and bytes of a name that may not be UTF-8 (the
        // answer stays valid JSON whatever a client put in its path).
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x80) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

struct Answer {
  http::status status = http::status::ok;
  std::string body;
  std::string content_type = "application/json";
  std::string allow;  // for 405
};

Answer Error(http::status st, std::string_view message) {
  return Answer{st, StrCat("{\"error\":", JsonString(message), "}\n"), "application/json", ""};
}

Answer FromStatus(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return Error(http::status::not_found, std::string(s.message()));
    case absl::StatusCode::kInvalidArgument:
      return Error(http::status::bad_request, std::string(s.message()));
    default:
      return Error(http::status::internal_server_error, std::string(s.message()));
  }
}

// A byte range of a file of `size` bytes: [first, last]. nullopt when there
// is none to honour (no header, or a unit other than bytes: RFC 9110 says
// ignore it); InvalidArgument for a malformed one, OutOfRange for one that
// cannot be satisfied.
struct Range {
  uint64_t first = 0, last = 0;
};
// Digits only; a value past 2^64-1 reads as the largest (a range end past
// the file is clamped anyway).
bool ParseBound(std::string_view s, uint64_t* out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) *out = UINT64_MAX;
  return true;
}
absl::StatusOr<std::optional<Range>> ParseRange(std::string_view h, uint64_t size) {
  if (h.empty()) return std::optional<Range>();
  const size_t eq = h.find('=');
  std::string unit(h.substr(0, eq));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (eq == std::string_view::npos || unit != "bytes") return std::optional<Range>();
  h.remove_prefix(eq + 1);
  if (h.find(',') != std::string_view::npos) {
    return absl::InvalidArgumentError("one range per request");
  }
  const size_t dash = h.find('-');
  if (dash == std::string_view::npos) return absl::InvalidArgumentError("bad range");
  std::string_view a = h.substr(0, dash), b = h.substr(dash + 1);
  uint64_t x = 0, y = 0;
  Range r;
  if (a.empty()) {  // the last y bytes
    if (!ParseBound(b, &y)) return absl::InvalidArgumentError("bad suffix range");
    if (y == 0 || size == 0) return absl::OutOfRangeError("empty suffix range");
    r.first = y >= size ? 0 : size - y;
    r.last = size - 1;
    return std::optional<Range>(r);
  }
  if (!ParseBound(a, &x)) return absl::InvalidArgumentError("bad range");
  if (!b.empty() && (!ParseBound(b, &y) || y < x)) return absl::InvalidArgumentError("bad range");
  if (x >= size) return absl::OutOfRangeError("range starts past the end");
  r.first = x;
  r.last = b.empty() ? size - 1 : std::min(y, size - 1);
  return std::optional<Range>(r);
}

// If-None-Match: "*", or a list of entity tags (weak ones compare weakly).
bool NoneMatch(std::string_view h, std::string_view etag) {
  if (h.empty()) return false;
  size_t pos = 0;
  while (pos < h.size()) {
    size_t comma = h.find(',', pos);
    std::string_view t = h.substr(pos, comma == std::string_view::npos ? h.npos : comma - pos);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (t.substr(0, 2) == "W/") t.remove_prefix(2);
    if (t == "*" || t == etag) return true;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return false;
}

}  // namespace

struct HttpGateway::Impl {
  Impl(Repository* r, const HttpOptions& o) : repo(r), opts(o), acceptor(ioc) {}
  Repository* repo;
  HttpOptions opts;
  asio::io_context ioc;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  std::atomic<size_t> connections{0};
  HttpCounters counters;
  std::string address;
  int port = 0;

  asio::awaitable<void> Accept();
  asio::awaitable<void> Serve(tcp::socket socket);
  // Answers one request; false when the connection must close.
  asio::awaitable<bool> Handle(beast::tcp_stream& stream, const Request& req);
  asio::awaitable<bool> SendAnswer(beast::tcp_stream& stream, const Request& req, Answer a);
  Answer Releases(const std::string& name);
  asio::awaitable<bool> File(beast::tcp_stream& stream, const Request& req, const std::string& name,
                             const std::string& ref, const std::string& path);
  absl::StatusOr<cairn::v1::ResolveResponse> ResolveRef(const std::string& name,
                                                        const std::string& ref);
};

asio::awaitable<void> HttpGateway::Impl::Accept() {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket s = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // EMFILE and the like: the next accept may succeed
    }
    asio::co_spawn(ioc, Serve(std::move(s)), asio::detached);
  }
}

asio::awaitable<void> HttpGateway::Impl::Serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  struct Count {
    std::atomic<size_t>* n;
    ~Count() { --*n; }
  } count{&connections};
  if (++connections > opts.max_connections) {
    counters.connections_refused++;
    http::response<http::string_body> res{http::status::service_unavailable, 11};
    res.set(http::field::connection, "close");
    res.set(http::field::retry_after, "5");
    res.body() = "{\"error\":\"too many connections\"}\n";
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(5));
    boost::system::error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return;
  }
  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(opts.max_header_bytes);
    parser.body_limit(64 << 10);
    // A new connection gets the header timeout; a kept-alive one may idle.
    stream.expires_after(
        std::chrono::seconds(first ? opts.header_timeout_seconds : opts.idle_seconds));
    first = false;
    boost::system::error_code ec;
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      stream.expires_after(std::chrono::seconds(opts.header_timeout_seconds));
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec == http::error::header_limit || ec == http::error::body_limit) {
      Request bad;
      bad.version(11);
      bad.keep_alive(false);
      co_await SendAnswer(
          stream, bad,
          Error(ec == http::error::header_limit ? http::status::request_header_fields_too_large
                                                : http::status::payload_too_large,
                ec == http::error::header_limit ? "request headers too large"
                                                : "request body too large"));
      break;
    }
    if (ec) break;  // closed, timed out, or not HTTP
    const Request& req = parser.get();
    counters.requests++;
    if (!co_await Handle(stream, req) || !req.keep_alive()) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<bool> HttpGateway::Impl::SendAnswer(beast::tcp_stream& stream, const Request& req,
                                                    Answer a) {
  http::response<http::string_body> res{a.status, req.version()};
  res.set(http::field::server, "cairn-node");
  res.set(http::field::content_type, a.content_type);
  res.keep_alive(req.keep_alive());
  if (!a.allow.empty()) res.set(http::field::allow, a.allow);
  const bool head = req.method() == http::verb::head;
  const size_t n = a.body.size();
  if (!head) res.body() = std::move(a.body);
  res.content_length(n);
  stream.expires_after(std::chrono::seconds(opts.idle_seconds));
  boost::system::error_code ec;
  http::response_serializer<http::string_body> sr(res);
  if (head) {
    co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await http::async_write(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return !ec;
}

asio::awaitable<bool> HttpGateway::Impl::Handle(beast::tcp_stream& stream, const Request& req) {
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    Answer a = Error(http::status::method_not_allowed, "GET or HEAD only");
    a.allow = "GET, HEAD";
    co_return co_await SendAnswer(stream, req, std::move(a));
  }
  std::string_view target = SV(req.target());
  // Absolute form (GET http://host/path), as proxies send it.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.substr(0, scheme.size()) == scheme) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  auto seg = target == "/" ? std::optional<std::vector<std::string>>(std::vector<std::string>{})
                           : Segments(target);
  if (!seg) {
    co_return co_await SendAnswer(
        stream, req,
        Error(http::status::bad_request,
              "bad path: empty, '.' or '..' segments and bad escapes are refused"));
  }
  const std::vector<std::string>& s = *seg;
  if (s.size() == 4 && s[0] == "v1" && s[1] == "releases") {
    co_return co_await SendAnswer(stream, req, Releases(s[2] + "/" + s[3]));
  }
  if (s.size() >= 6 && s[0] == "v1" && s[1] == "files") {
    std::string path = s[5];
    for (size_t i = 6; i < s.size(); ++i) path += "/" + s[i];
    co_return co_await File(stream, req, s[2] + "/" + s[3], s[4], path);
  }
  co_return co_await SendAnswer(stream, req, Error(http::status::not_found, "no such endpoint"));
}

Answer HttpGateway::Impl::Releases(const std::string& name) {
  if (absl::Status v = ValidateName(name); !v.ok()) return FromStatus(v);
  auto list = repo->List(name);
  if (!list.ok()) return FromStatus(list.status());
  for (const auto& e : list->entries()) {
    if (e.name() != name) continue;  // List matches prefixes
    std::string out = StrCat("{\"name\":", JsonString(name), ",\"releases\":[");
    for (int i = 0; i < e.releases_size(); ++i) {
      const auto& r = e.releases(i);
      out += StrCat(i ? "," : "", "{\"version\":", JsonString(r.version()),
                    ",\"manifest_digest\":", JsonString(r.manifest_digest()),
                    ",\"bytes\":", r.bytes(), ",\"files\":", r.files(), "}");
    }
    out += "],\"tags\":[";
    for (int i = 0; i < e.tags_size(); ++i) {
      const auto& t = e.tags(i);
      out += StrCat(i ? "," : "", "{\"tag\":", JsonString(t.tag()),
                    ",\"manifest_digest\":", JsonString(t.manifest_digest()),
                    ",\"version\":", t.version(), ",\"expires_unix\":", t.expires_unix(), "}");
    }
    return Answer{http::status::ok, out + "]}\n", "application/json", ""};
  }
  return Error(http::status::not_found, StrCat("no model ", name, " on this node"));
}

absl::StatusOr<cairn::v1::ResolveResponse> HttpGateway::Impl::ResolveRef(const std::string& name,
                                                                         const std::string& ref) {
  CAIRN_RETURN_IF_ERROR(ValidateName(name));
  if (!ref.empty() && ref[0] == '@') return repo->Resolve(name + ref);
  // A version first: it never changes, where a tag of the same name could
  // be moved onto another release.
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::ListResponse list, repo->List(name));
  for (const auto& e : list.entries()) {
    if (e.name() != name) continue;
    for (const auto& r : e.releases()) {
      if (r.version() == ref) return repo->Resolve(name + "@" + r.manifest_digest());
    }
  }
  auto byTag = repo->Resolve(name + ":" + ref);
  if (!absl::IsNotFound(byTag.status()) && !absl::IsInvalidArgument(byTag.status())) return byTag;
  return absl::NotFoundError(StrCat("no version or tag ", ref, " of ", name, " on this node"));
}

asio::awaitable<bool> HttpGateway::Impl::File(beast::tcp_stream& stream, const Request& req,
                                              const std::string& name, const std::string& ref,
                                              const std::string& path) {
  auto resolved = ResolveRef(name, ref);
  if (!resolved.ok()) co_return co_await SendAnswer(stream, req, FromStatus(resolved.status()));
  auto env = ParseEnvelope(resolved->manifest_envelope(), kMaxEnvelopeBytes);
  if (!env.ok()) co_return co_await SendAnswer(stream, req, FromStatus(env.status()));
  auto m = ParseManifest(env->payload());
  if (!m.ok()) co_return co_await SendAnswer(stream, req, FromStatus(m.status()));
  auto it = std::lower_bound(m->files().begin(), m->files().end(), path,
                             [](const auto& f, const std::string& p) { return f.path() < p; });
  if (it == m->files().end() || it->path() != path) {
    co_return co_await SendAnswer(
        stream, req,
        Error(http::status::not_found, StrCat("no file ", path, " in ", name, " ", m->version())));
  }
  const cairn::v1::FileEntry& f = *it;
  auto list_bytes = repo->GetObject(f.root());
  if (!list_bytes.ok()) co_return co_await SendAnswer(stream, req, FromStatus(list_bytes.status()));
  auto cl = CheckChunkList(*list_bytes, f.root(), f.size(), f.path());
  if (!cl.ok()) co_return co_await SendAnswer(stream, req, FromStatus(cl.status()));

  const std::string etag = StrCat("\"", f.sha256().substr(f.sha256().find(':') + 1), "\"");
  http::response<http::empty_body> res{http::status::ok, req.version()};
  res.set(http::field::server, "cairn-node");
  res.set(http::field::content_type, "application/octet-stream");
  res.set(http::field::etag, etag);
  res.set(http::field::accept_ranges, "bytes");
  res.set("X-Cairn-Manifest", resolved->manifest_digest());
  res.keep_alive(req.keep_alive());
  if (NoneMatch(SV(req[http::field::if_none_match]), etag)) {
    res.result(http::status::not_modified);
    stream.expires_after(std::chrono::seconds(opts.idle_seconds));
    boost::system::error_code ec;
    http::response_serializer<http::empty_body> sr(res);
    co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }
  uint64_t first = 0, last = f.size() == 0 ? 0 : f.size() - 1, length = f.size();
  // If-Range naming another version of the file (a tag moved since the
  // client's first part): the whole file, so a resume never splices two.
  const std::string_view if_range = SV(req[http::field::if_range]);
  auto range = !if_range.empty() && if_range != etag
                   ? absl::StatusOr<std::optional<Range>>(std::optional<Range>())
                   : ParseRange(SV(req[http::field::range]), f.size());
  if (!range.ok()) {
    if (absl::IsOutOfRange(range.status())) {
      Answer a = Error(http::status::range_not_satisfiable, std::string(range.status().message()));
      http::response<http::string_body> r416{a.status, req.version()};
      r416.set(http::field::content_range, StrCat("bytes */", f.size()));
      r416.set(http::field::content_type, a.content_type);
      r416.keep_alive(req.keep_alive());
      r416.body() = a.body;
      r416.prepare_payload();
      stream.expires_after(std::chrono::seconds(opts.idle_seconds));
      boost::system::error_code ec;
      co_await http::async_write(stream, r416, asio::redirect_error(asio::use_awaitable, ec));
      co_return !ec;
    }
    co_return co_await SendAnswer(stream, req, FromStatus(range.status()));
  }
  if (*range) {
    first = (*range)->first;
    last = (*range)->last;
    length = last - first + 1;
    res.result(http::status::partial_content);
    res.set(http::field::content_range, StrCat("bytes ", first, "-", last, "/", f.size()));
  }
  res.content_length(length);
  boost::system::error_code ec;
  stream.expires_after(std::chrono::seconds(opts.idle_seconds));
  http::response_serializer<http::empty_body> sr(res);
  co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return false;
  if (req.method() == http::verb::head || length == 0) co_return true;
  // The body: each chunk overlapping [first, last], hashed before any of it
  // is sent.
  uint64_t offset = 0;
  std::string data;
  for (const auto& c : cl->chunks()) {
    const uint64_t begin = offset, end = offset + c.length();  // [begin, end)
    offset = end;
    if (end <= first) continue;
    if (begin > last) break;
    auto d = DigestFromBytes(c.digest());
    absl::Status got = d.ok() ? repo->chunks()->Get(*d, &data) : d.status();
    if (got.ok() && (data.size() != c.length() || Sha256Of(data) != *d)) {
      got = absl::DataLossError("chunk does not match its digest");
    }
    if (!got.ok()) {
      // Headers are out: the only honest answer is to cut the connection,
      // so the client sees a short body, never a wrong one.
      counters.verification_failures++;
      spdlog::error("HTTP {}: chunk {} of {}: {}; connection aborted", std::string(req.target()),
                    d.ok() ? DigestName(*d) : "?", path, got.ToString());
      boost::system::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream.socket().close(ignored);
      co_return false;
    }
    const uint64_t from = std::max(first, begin) - begin;
    const uint64_t to = std::min(last + 1, end) - begin;
    stream.expires_after(std::chrono::seconds(opts.idle_seconds));
    co_await asio::async_write(stream, asio::buffer(data.data() + from, to - from),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    counters.bytes_sent += to - from;
  }
  co_return true;
}

HttpGateway::HttpGateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<HttpGateway>> HttpGateway::Start(Repository* repo,
                                                                const std::string& listen,
                                                                const HttpOptions& options) {
  CAIRN_ASSIGN_OR_RETURN(NodeAddress addr, ParseNodeAddress(listen, /*allow_port_zero=*/true));
  if (addr.scheme != NodeAddress::Scheme::kDefault) {
    return absl::InvalidArgumentError("http address " + listen + " takes no scheme");
  }
  auto impl = std::make_unique<Impl>(repo, options);
  boost::system::error_code ec;
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
}

int HttpGateway::port() const { return impl_->port; }
std::string HttpGateway::address() const { return impl_->address; }
const HttpCounters& HttpGateway::counters() const { return impl_->counters; }

}  // namespace cairn::node
