// A node with one published release (acme/m 1: weights.bin of 3 MiB,
// sub/config.json, empty) and its HTTP gateway, and a one-request HTTP
// client: shared by the gateway tests.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <memory>
#include <string>

#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/transport/channel.h"
#include "client.h"
#include "http_gateway.h"
#include "server.h"
#include "testing.h"

namespace cairn::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct Reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  bool complete = false;  // the body arrived whole
};

class HttpGatewayFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    trust_.Save(dir_ / "keys");
    repo_ = std::move(Repository::Open(dir_ / "node", trust_.view)).value();
    server_ = std::move(node::NodeServer::Start(repo_.get(), "127.0.0.1:0")).value();
    gw_ = std::move(node::HttpGateway::Start(repo_.get(), "127.0.0.1:0")).value();
    data_ = testing::RandomBytes(3 << 20, 42);
    testing::WriteFile(dir_ / "m/weights.bin", data_);
    testing::WriteFile(dir_ / "m/sub/config.json", "{\"a\":1}");
    testing::WriteFile(dir_ / "m/empty", "");
    auto conn = std::move(Connection::Open(server_->address(), 10)).value();
    client::PublishOptions o;
    o.dir = dir_ / "m";
    o.name = "acme/m";
    o.version = std::string(1, '1');
    o.key_paths = {dir_ / "keys/publisher.key"};
    auto p = client::Publish(*conn, o);
    ASSERT_TRUE(p.ok()) << p.status();
    manifest_ = p->manifest;
  }
  // One request on a fresh connection; `raw` replaces the whole request.
  // `port` 0: the fixture's gateway.
  Reply Get(const std::string& target, std::map<std::string, std::string> headers = {},
            http::verb verb = http::verb::get, int port = 0) {
    return Send(verb, target, std::move(headers), "", port);
  }
  Reply Post(const std::string& target, const std::string& content_type, const std::string& body) {
    return Send(http::verb::post, target, {{"Content-Type", content_type}}, body, 0);
  }
  Reply Send(http::verb verb, const std::string& target, std::map<std::string, std::string> headers,
             const std::string& body, int port) {
    asio::io_context ioc;
    beast::tcp_stream s(ioc);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port ? port : gw_->port()));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (auto& [k, v] : headers) req.set(k, v);
    if (!body.empty() || verb == http::verb::post) {
      req.body() = body;
      req.prepare_payload();
    }
    http::write(s, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> p;
    p.body_limit(64 << 20);
    if (verb == http::verb::head) p.skip(true);
    beast::error_code ec;
    http::read(s, buf, p, ec);
    Reply r;
    r.complete = !ec;
    r.status = p.get().result_int();
    r.body = p.get().body();
    for (const auto& f : p.get()) r.headers[std::string(f.name_string())] = std::string(f.value());
    return r;
  }

  testing::TempDir dir_;
  TrustFixture trust_;
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<node::NodeServer> server_;
  std::unique_ptr<node::HttpGateway> gw_;
  std::string data_, manifest_;
};

}  // namespace cairn::testing
