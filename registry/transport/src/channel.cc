#include "cairn/transport/channel.h"

#include <chrono>

#include "cairn/crypto.h"
#include "cairn/limits.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/probe.h"

namespace cairn {

Connection::Connection(std::shared_ptr<grpc::Channel> channel, std::string address,
                       int timeout_seconds, TlsOptions tls)
    : channel_(std::move(channel)),
      address_(std::move(address)),
      timeout_seconds_(timeout_seconds),
      tls_(std::move(tls)),
      registry_(cairn::v1::Registry::NewStub(channel_)),
      chunks_(cairn::v1::Chunks::NewStub(channel_)),
      publish_(cairn::v1::Publish::NewStub(channel_)),
      federation_(cairn::v1::Federation::NewStub(channel_)) {}

absl::StatusOr<TlsOptions> TlsOptions::Load(const std::string& ca, const std::string& cert,
                                            const std::string& key) {
  TlsOptions t;
  if (ca.empty()) {
    if (!cert.empty() || !key.empty()) {
      return absl::InvalidArgumentError("--tls-cert/--tls-key need --tls-ca (the CA to trust)");
    }
    return t;
  }
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  auto read = [](const std::string& path, const char* what) -> absl::StatusOr<std::string> {
    auto b = ReadFileLimited(path, 1 << 20);
    if (!b.ok()) return Annotate(b.status(), what);
    if (b->find("-----BEGIN ") == std::string::npos) {
      return absl::InvalidArgumentError(StrCat(what, " ", path, " is not PEM"));
    }
    return b;
  };
  CAIRN_ASSIGN_OR_RETURN(t.ca_pem, read(ca, "TLS CA file"));
  if (!cert.empty()) {
    CAIRN_ASSIGN_OR_RETURN(t.cert_pem, read(cert, "TLS certificate"));
    CAIRN_ASSIGN_OR_RETURN(t.key_pem, read(key, "TLS key"));
  }
  return t;
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, const TlsOptions& tls,
                                          bool private_pool) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxRequestBytes);  // what a node accepts
  // Don't let gRPC's reconnect backoff outlast our deadline.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (private_pool) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A link that goes dead (no FIN, no RST) is found by an unanswered ping
  // within kKeepaliveMs * 2, however slowly a live one delivers.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveMs);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  auto parsed = ParseNodeAddress(address);
  // Unparsable addresses were refused by Open and the config loaders; one
  // that gets here anyway is handed to gRPC as it is and fails to connect.
  std::string target = parsed.ok() ? parsed->target() : address;
  if (UsesTls(address, tls)) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = tls.ca_pem;  // empty (tls:// without --tls-ca): the system's roots
    o.pem_cert_chain = tls.cert_pem;
    o.pem_private_key = tls.key_pem;
    creds = grpc::SslCredentials(o);
  }
  return grpc::CreateCustomChannel(target, creds, args);
}

bool UsesTls(const std::string& address, const TlsOptions& tls) {
  auto parsed = ParseNodeAddress(address);
  if (!parsed.ok()) return tls.enabled();
  switch (parsed->scheme) {
    case NodeAddress::Scheme::kTls:
      return true;
    case NodeAddress::Scheme::kPlain:
      return false;
    case NodeAddress::Scheme::kDefault:
      break;
  }
  return tls.enabled();
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& address,
                                                             int timeout_seconds,
                                                             const TlsOptions& tls,
                                                             Cancellation* cancel) {
  CAIRN_ASSIGN_OR_RETURN(NodeAddress parsed, ParseNodeAddress(address));
  auto ch = NewChannel(address, tls);
  auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds);
  // The first failed attempt (about a round trip) is asked why: a refused
  // port or a TLS mismatch fails now, naming it, instead of at the deadline.
  bool probed = false;
  grpc_connectivity_state state = ch->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY && std::chrono::system_clock::now() < deadline) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && !probed) {
      probed = true;
      CAIRN_RETURN_IF_ERROR(
          ProbeNode(parsed, UsesTls(address, tls), tls, std::min(timeout_seconds, 5) * 1000));
    }
    if (cancel && cancel->cancelled()) {
      return absl::CancelledError("connecting to node " + address + " was given up");
    }
    ch->WaitForStateChange(state, std::min(deadline, std::chrono::system_clock::now() +
                                                         std::chrono::milliseconds(50)));
    state = ch->GetState(/*try_to_connect=*/true);
  }
  if (state != GRPC_CHANNEL_READY) {
    return absl::UnavailableError(StrCat(
        "cannot reach node ", address, " within ", timeout_seconds, "s",
        UsesTls(address, tls) ? " (over TLS: check the node's certificate, its name and --tls-ca)"
                              : ""));
  }
  return std::make_unique<Connection>(std::move(ch), address, timeout_seconds, tls);
}

std::unique_ptr<Connection> Connection::Another() const {
  auto c =
      std::make_unique<Connection>(NewChannel(address_, tls_), address_, timeout_seconds_, tls_);
  c->set_chunks_http_port(chunks_http_port());
  return c;
}

std::unique_ptr<grpc::ClientContext> Connection::Context() const {
  return Context(timeout_seconds_);
}

std::unique_ptr<grpc::ClientContext> Connection::Context(int seconds) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

}  // namespace cairn
