// Why a node cannot be reached, in one round trip: what gRPC only retries
// silently until the deadline (a refused port, a TLS node asked in plaintext
// or the reverse, a certificate from another CA, a name mismatch, a missing
// client certificate). One TCP connection and, for TLS, one handshake with
// the same credentials the channel uses.
#include "cairn/transport/probe.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "cairn/strings.h"

namespace cairn {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Connects within `ms`; "" on success, else why not. `seconds`, when given,
// gets the successful connect's time from its SYN (not the name lookup).
std::string Connect(const NodeAddress& a, int ms, Fd* out, double* seconds = nullptr) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(a.port);
  if (int rc = ::getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return StrCat("cannot resolve ", a.host, ": ", ::gai_strerror(rc));
  }
  std::string why = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, ms);
      int err = 0;
      socklen_t len = sizeof(err);
      if (rc == 0) {
        err = ETIMEDOUT;
      } else if (rc > 0) {
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      } else {
        err = errno;
      }
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc == 0) {
      if (seconds != nullptr) {
        *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      ::freeaddrinfo(res);
      out->fd = fd;
      return "";
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return absl::AsciiStrToLower(why);
}

// Reads up to n bytes within `ms`; -1 on error or timeout, 0 on close.
ssize_t ReadSome(int fd, char* buf, size_t n, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return -1;
  return ::recv(fd, buf, n, 0);
}

std::string OpenSslError() {
  unsigned long e = ERR_peek_last_error();
  if (e == 0) return "handshake failed";
  const char* r = ERR_reason_error_string(e);
  return r ? r : "handshake failed";
}

absl::Status ProbeTls(const NodeAddress& a, const TlsOptions& tls, int fd, int ms) {
  const std::string where = StrCat("node ", a.target());
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return absl::InternalError("TLS: cannot make a context");
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (tls.ca_pem.empty()) {
    SSL_CTX_set_default_verify_paths(ctx.get());
  } else {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(tls.ca_pem.data(), static_cast<int>(tls.ca_pem.size())), BIO_free);
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, c);
      X509_free(c);
    }
    ERR_clear_error();
  }
  if (!tls.cert_pem.empty()) {
    std::unique_ptr<BIO, decltype(&BIO_free)> cb(
        BIO_new_mem_buf(tls.cert_pem.data(), static_cast<int>(tls.cert_pem.size())), BIO_free);
    std::unique_ptr<BIO, decltype(&BIO_free)> kb(
        BIO_new_mem_buf(tls.key_pem.data(), static_cast<int>(tls.key_pem.size())), BIO_free);
    X509* c = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr);
    EVP_PKEY* k = PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr);
    if (c) SSL_CTX_use_certificate(ctx.get(), c);
    if (k) SSL_CTX_use_PrivateKey(ctx.get(), k);
    X509_free(c);
    EVP_PKEY_free(k);
    ERR_clear_error();
  }
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), fd);
  SSL_set_tlsext_host_name(ssl.get(), a.host.c_str());
  SSL_set1_host(ssl.get(), a.host.c_str());
  int rc;
  while ((rc = SSL_connect(ssl.get())) != 1) {
    int e = SSL_get_error(ssl.get(), rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      pollfd p{fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
      if (::poll(&p, 1, ms) <= 0) return absl::OkStatus();  // slow, not wrong: let gRPC wait
      continue;
    }
    long v = SSL_get_verify_result(ssl.get());
    if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      return absl::UnavailableError(
          StrCat("TLS name mismatch: ", where, "'s certificate does not name ", a.host,
                 " (connect by a name the certificate lists, or reissue it)"));
    }
    if (v != X509_V_OK) {
      return absl::UnavailableError(
          StrCat("TLS: ", where, "'s certificate does not verify against ",
                 tls.ca_pem.empty() ? "the system's CAs" : "--tls-ca",
                 " (unknown CA: ", X509_verify_cert_error_string(v), ")"));
    }
    std::string why = OpenSslError();
    if (why.find("wrong version number") != std::string::npos ||
        why.find("packet length too long") != std::string::npos ||
        why.find("record layer failure") != std::string::npos || e == SSL_ERROR_SYSCALL ||
        e == SSL_ERROR_ZERO_RETURN) {
      return absl::UnavailableError(
          StrCat(where, " does not speak TLS on this port (TLS handshake failed: ", why,
                 "); use plain://", a.target(), " or drop --tls-ca"));
    }
    if (why.find("certificate required") != std::string::npos) {
      return absl::UnavailableError(StrCat(where,
                                           " requires a client certificate (TLS alert: "
                                           "certificate required): give --tls-cert and --tls-key"));
    }
    return absl::UnavailableError(StrCat("TLS handshake with ", where, " failed: ", why));
  }
  // TLS 1.3: a server that wants a client certificate says so after the
  // client's side of the handshake is done; read once to hear it.
  char b[64];
  while (true) {
    int n = SSL_read(ssl.get(), b, sizeof(b));
    if (n > 0) break;  // the server's HTTP/2 settings: all is well
    int e = SSL_get_error(ssl.get(), n);
    if (e == SSL_ERROR_WANT_READ) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, ms) <= 0) break;
      continue;
    }
    // The handshake completed, then the node closed or alerted before any
    // HTTP/2 settings: it refused this client's certificate (or its absence).
    std::string why = e == SSL_ERROR_SSL ? OpenSslError() : "connection closed";
    if (tls.cert_pem.empty()) {
      return absl::UnavailableError(StrCat(where, " requires a client certificate (", why,
                                           "): give --tls-cert and --tls-key"));
    }
    return absl::UnavailableError(StrCat(where, " refused this client's certificate (", why,
                                         "): it is not signed by the node's CA"));
    break;
  }
  return absl::OkStatus();
}

// Plaintext: send the HTTP/2 preface; a TLS server answers with an alert (or
// closes), a gRPC one with SETTINGS.
absl::Status ProbePlain(const NodeAddress& a, int fd, int ms) {
  static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
  if (::send(fd, kPreface, sizeof(kPreface) - 1, MSG_NOSIGNAL) < 0) return absl::OkStatus();
  char b[16];
  ssize_t n = ReadSome(fd, b, sizeof(b), ms);
  // A gRPC node answers the preface with SETTINGS; a TLS one with an alert,
  // or by closing at once.
  if (n == 0 || (n > 0 && (b[0] == 0x15 || b[0] == 0x16))) {
    return absl::UnavailableError(StrCat("node ", a.target(),
                                         " speaks TLS (it closed or sent a TLS alert when "
                                         "spoken to in plaintext): use tls://",
                                         a.target(), " or --tls-ca"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ProbeNode(const NodeAddress& a, bool use_tls, const TlsOptions& tls, int ms) {
  Fd fd;
  if (std::string why = Connect(a, ms, &fd); !why.empty()) {
    return absl::UnavailableError(StrCat("cannot connect to node ", a.target(), ": ", why));
  }
  return use_tls ? ProbeTls(a, tls, fd.fd, ms) : ProbePlain(a, fd.fd, ms);
}

double HandshakeSeconds(const std::string& address, int ms) {
  auto a = ParseNodeAddress(address);
  double seconds = 0;
  Fd fd;
  if (!a.ok() || !Connect(*a, ms, &fd, &seconds).empty()) return 0;
  return seconds;
}

namespace {
struct RttEntry {
  double rtt = 0;
  std::chrono::steady_clock::time_point at;
  bool probing = false;
};
// Never destroyed: a probe thread may still finish while the process exits.
absl::Mutex& RttMu() {
  static auto* mu = new absl::Mutex;
  return *mu;
}
std::map<std::string, RttEntry>& RttCache() {  // under RttMu()
  static auto* cache = new std::map<std::string, RttEntry>;
  return *cache;
}
}  // namespace

double CachedRoundTrip(const std::string& address) {
  constexpr auto kFresh = std::chrono::minutes(10);
  constexpr auto kRetry = std::chrono::seconds(10);
  const std::string host = address.substr(0, address.rfind(':'));
  const auto now = std::chrono::steady_clock::now();
  {
    absl::MutexLock l(&RttMu());
    auto& cache = RttCache();
    if (cache.size() >= 4096 && !cache.contains(host)) cache.clear();  // a bound, whatever is named
    RttEntry& e = cache[host];
    const bool fresh = e.at != std::chrono::steady_clock::time_point{} &&
                       now - e.at < (e.rtt > 0 ? kFresh : kRetry);
    if (fresh || e.probing) return e.rtt;
    e.probing = true;
  }
  // Detached: it touches only the cache, so nobody waits for a slow or
  // silent host (a name lookup has no timeout of ours).
  std::thread([address, host] {
    // Three handshakes, the shortest kept (published as each answers): a
    // lost SYN or SYN-ACK adds TCP's 1 s retransmission to one of them.
    double best = 0;
    for (int i = 0; i < 3; ++i) {
      const double rtt = HandshakeSeconds(address, 2000);
      if (rtt > 0 && (best == 0 || rtt < best)) best = rtt;
      absl::MutexLock l(&RttMu());
      RttEntry& e = RttCache()[host];
      e.rtt = best;
      e.at = std::chrono::steady_clock::now();
      e.probing = i < 2;
    }
  }).detach();
  return 0;
}

}  // namespace cairn
