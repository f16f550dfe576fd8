// A small HTTP/1.1 load generator for the gateway benchmarks: C keep-alive
// connections on one thread, each sending METHOD URL back to back for D
// seconds; prints requests/s and latency percentiles. (wrk cannot send HEAD:
// it then waits for a body that never comes.)
//   http_load --method HEAD --connections 64 --seconds 10 http://HOST:PORT/PATH
// clang-format off
#include <utility>  // before Boost 1.74 Asio, which uses std::exchange unincluded
// clang-format on
#include <algorithm>
#include <optional>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Stats {
  std::vector<double> ms;
  uint64_t errors = 0, non2xx = 0;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(asio::io_context& ioc, tcp::endpoint ep, http::verb verb, std::string host,
         std::string target, Clock::time_point end, Stats* stats)
      : stream_(ioc), ep_(ep), end_(end), stats_(stats) {
    req_ = {verb, target, 11};
    req_.set(http::field::host, host);
    req_.set(http::field::user_agent, "cairn-http-load");
  }
  void Start() {
    stream_.async_connect(ep_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        self->stats_->errors++;
        return;
      }
      self->stream_.socket().set_option(tcp::no_delay(true));
      self->Send();
    });
  }

 private:
  void Send() {
    if (Clock::now() >= end_) return;
    sent_ = Clock::now();
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        self->stats_->errors++;
        return;
      }
      self->parser_.emplace();
      self->parser_->body_limit(1ull << 34);
      if (self->req_.method() == http::verb::head) self->parser_->skip(true);
      http::async_read(self->stream_, self->buf_, *self->parser_,
                       [self](beast::error_code ec, size_t) { self->Done(ec); });
    });
  }
  void Done(beast::error_code ec) {
    if (ec) {
      stats_->errors++;
      return;
    }
    stats_->ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent_).count());
    if (parser_->get().result_int() / 100 != 2) stats_->non2xx++;
    Send();
  }
  beast::tcp_stream stream_;
  tcp::endpoint ep_;
  Clock::time_point end_, sent_;
  Stats* stats_;
  http::request<http::empty_body> req_;
  beast::flat_buffer buf_;
  std::optional<http::response_parser<http::string_body>> parser_;
};

int main(int argc, char** argv) {
  std::string method = "GET", url;
  int conns = 64;
  double seconds = 10;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--method" && i + 1 < argc)
      method = argv[++i];
    else if (a == "--connections" && i + 1 < argc)
      conns = std::atoi(argv[++i]);
    else if (a == "--seconds" && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else
      url = a;
  }
  if (url.rfind("http://", 0) != 0 || conns < 1 || seconds <= 0) {
    std::fprintf(
        stderr,
        "usage: http_load [--method M] [--connections C] [--seconds S] http://HOST:PORT/PATH\n");
    return 2;
  }
  const std::string rest = url.substr(7);
  const size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash),
                    target = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = hostport.rfind(':');
  asio::io_context ioc;
  tcp::endpoint ep(asio::ip::make_address(hostport.substr(0, colon)),
                   static_cast<unsigned short>(std::atoi(hostport.substr(colon + 1).c_str())));
  Stats stats;
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const http::verb verb = http::string_to_verb(method);
  for (int i = 0; i < conns; ++i) {
    std::make_shared<Client>(ioc, ep, verb, hostport, target, end, &stats)->Start();
  }
  ioc.run();
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(stats.ms.begin(), stats.ms.end());
  auto pct = [&](double p) {
    return stats.ms.empty() ? 0.0
                            : stats.ms[std::min(stats.ms.size() - 1, size_t(p * stats.ms.size()))];
  };
  std::printf(
      "%s %s: %zu requests in %.1f s, %.0f requests/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %lu "
      "non-2xx, %lu errors\n",
      method.c_str(), target.c_str(), stats.ms.size(), took, stats.ms.size() / took, pct(0.50),
      pct(0.99), stats.ms.empty() ? 0.0 : stats.ms.back(), (unsigned long)stats.non2xx,
      (unsigned long)stats.errors);
  return stats.errors == 0 && stats.non2xx == 0 ? 0 : 1;
}
