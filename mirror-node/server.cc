#include "server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "cairn/limits.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/address.h"
#include "cairn/transport/channel.h"
#include "chunks_service.h"
#include "federation_service.h"
#include "publish_service.h"
#include "registry_service.h"
#include "service_common.h"
#include "work_pool.h"

namespace cairn::node {

namespace {
// Blocking work (disk, hashing, fdatasync) runs on this many threads; at most
// kMaxQueuedWork tasks wait before calls are refused with RESOURCE_EXHAUSTED.
constexpr int kWorkThreads = 8;
constexpr size_t kMaxQueuedWork = 1024;
// Why a listening socket cannot be bound on `a`, or "" when it can: binds a
// socket the way gRPC does and reports the errno (gRPC only logs it).
std::string WhyNoListen(const NodeAddress& a) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  std::string port = std::to_string(a.port);
  if (int rc = ::getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return StrCat("cannot resolve ", a.host, ": ", ::gai_strerror(rc));
  }
  std::string why;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = ::bind(fd, ai->ai_addr, ai->ai_addrlen);
    int err = errno;
    ::close(fd);
    if (rc != 0) {
      why = std::strerror(err);
      break;
    }
  }
  ::freeaddrinfo(res);
  return absl::AsciiStrToLower(why);
}

}  // namespace

struct NodeServer::Services {
  Services(Repository* repo, const ServerOptions& o)
      : pool(kWorkThreads, kMaxQueuedWork),
        streams(o.max_streams_per_peer),
        watchdog(o.clock ? o.clock : repo->clock()),
        registry(NewRegistryService(repo, &pool, Limits(o), o.on_demand, o.chunks_http_port)),
        chunks(NewChunksService(repo, &pool, &streams, Limits(o))),
        import_gate(o.import_from),
        publish(NewPublishService(repo, &pool, &streams, Limits(o), &import_gate)),
        federation(
            NewFederationService(repo, &pool, Limits(o), o.scrub, o.gc, o.chunks_http_port)) {}
  StreamLimits Limits(const ServerOptions& o) {
    return StreamLimits{&watchdog, std::chrono::seconds(o.stream_idle_seconds)};
  }
  // Declared first: destroyed last, after the services and the server.
  WorkPool pool;
  PeerStreams streams;
  StreamWatchdog watchdog;
  std::unique_ptr<cairn::v1::Registry::CallbackService> registry;
  std::unique_ptr<cairn::v1::Chunks::CallbackService> chunks;
  ImportGate import_gate;
  std::unique_ptr<cairn::v1::Publish::CallbackService> publish;
  std::unique_ptr<FederationService> federation;
};

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Start(Repository* repo,
                                                              const std::string& listen,
                                                              const ServerOptions& options) {
  CAIRN_ASSIGN_OR_RETURN(NodeAddress addr, ParseNodeAddress(listen, /*allow_port_zero=*/true));
  if (addr.scheme != NodeAddress::Scheme::kDefault) {
    return absl::InvalidArgumentError("listen address " + listen +
                                      " takes no scheme: TLS comes from --tls-cert and --tls-key");
  }
  if (std::string why = WhyNoListen(addr); !why.empty()) {
    return absl::UnavailableError("cannot listen on " + listen + ": " + why);
  }
  std::unique_ptr<NodeServer> s(new NodeServer());
  if (options.call_memory_bytes < (64u << 20) || options.max_streams_per_connection < 1) {
    return absl::InvalidArgumentError(
        "call memory must be at least 64 MiB and streams per connection at least 1");
  }
  if (options.stream_idle_seconds < 1 || options.stream_idle_seconds > 3600) {
    return absl::InvalidArgumentError("stream idle timeout must be 1..3600 seconds");
  }
  s->services_ = std::make_unique<Services>(repo, options);
  grpc::ServerBuilder b;
  // Requests are small by design (objects go in parts): a stream that
  // declares a request and stalls pins at most kMaxRequestBytes, and for at
  // most stream_idle_seconds (UnaryOverStream, StreamWatchdog).
  b.SetMaxReceiveMessageSize(kMaxRequestBytes);
  // Memory for calls in flight, node-wide: gRPC opens a stream's window to
  // the size its request declares, so without a quota every stalled partial
  // request is held in full. Under pressure gRPC resets the streams holding
  // the most, and refuses new ones.
  s->quota_ = std::make_unique<grpc::ResourceQuota>("cairn-node");
  s->quota_->Resize(options.call_memory_bytes);
  b.SetResourceQuota(*s->quota_);
  b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_streams_per_connection);
  b.SetMaxSendMessageSize(kMaxMessageBytes);
  // Accept the keepalive pings clients and followers send (kKeepaliveMs)
  // even on a call that is quiet, such as a long-polled feed.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, kKeepaliveMs / 2);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions o(
        options.tls_ca_pem.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : (options.require_client_cert
                   ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                   : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY));
    o.pem_root_certs = options.tls_ca_pem;
    o.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
    creds = grpc::SslServerCredentials(o);
  } else if (!options.tls_ca_pem.empty()) {
    return absl::InvalidArgumentError("--tls-ca needs --tls-cert and --tls-key");
  }
  b.AddListeningPort(addr.target(), creds, &s->port_);
  b.RegisterService(s->services_->registry.get());
  b.RegisterService(s->services_->chunks.get());
  b.RegisterService(s->services_->publish.get());
  b.RegisterService(s->services_->federation.get());
  // gRPC sets SO_REUSEPORT by default: a second node on a busy port would
  // then start and share the port's connections with the first.
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  s->server_ = b.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    std::string why = WhyNoListen(addr);
    return absl::UnavailableError("cannot listen on " + listen + ": " +
                                  (why.empty() ? "gRPC could not start the server" : why));
  }
  addr.port = s->port_;
  s->address_ = addr.target();
  return s;
}

NodeServer::~NodeServer() { Shutdown(0); }

void NodeServer::SetUpstreamStatus(std::function<std::vector<cairn::v1::UpstreamStatus>()> fn) {
  services_->federation->SetUpstreamStatus(std::move(fn));
}

void NodeServer::Shutdown(int grace_seconds) {
  if (services_) services_->federation->StopWaiting();  // parked long polls answer now
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(grace_seconds));
  }
}

uint64_t NodeServer::streams_timed_out() const {
  return services_ ? services_->watchdog.expired() : 0;
}

int NodeServer::open_chunk_streams() const { return services_ ? services_->streams.Open() : 0; }

size_t NodeServer::parked_feed_calls() const {
  return services_ ? services_->federation->parked() : 0;
}

void NodeServer::Wait() {
  if (server_) server_->Wait();
}

std::shared_ptr<grpc::Channel> NodeServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxRequestBytes);
  return server_->InProcessChannel(args);
}

}  // namespace cairn::node
