#include "fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <sstream>

namespace cairn::testing {
namespace {

constexpr size_t kMaxHead = 64 << 10;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The value of header `name` (lower case) in `head`, or "".
std::string Header(const std::string& head, const std::string& name) {
  std::istringstream in(head);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || Lower(line.substr(0, colon)) != name) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.pop_back();
    return v;
  }
  return "";
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Waits up to 100 ms for `fd` to be readable; false on timeout.
bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 100) > 0;
}

}  // namespace

absl::StatusOr<FaultProxy::Rule> FaultProxy::ParseRule(const std::string& text) {
  std::istringstream in(text);
  std::string name;
  Rule r;
  in >> name >> r.method >> r.path_part;
  if (r.method == "*") r.method.clear();
  if (name.empty() || name == "none") {
    r.fault = Fault::kNone;
  } else if (name == "503") {
    r.fault = Fault::kUnavailable;
  } else if (name == "drop") {
    r.fault = Fault::kDrop;
  } else if (name.rfind("delay:", 0) == 0) {
    r.fault = Fault::kDelay;
    r.delay_ms = std::atoi(name.c_str() + 6);
  } else if (name == "flip") {
    r.fault = Fault::kFlip;
  } else if (name == "cut") {
    r.fault = Fault::kCut;
  } else {
    return absl::InvalidArgumentError("unknown fault \"" + name +
                                      "\" (none, 503, drop, delay:MS, flip, cut)");
  }
  return r;
}

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Start(const std::string& upstream) {
  std::unique_ptr<FaultProxy> p(new FaultProxy());
  std::string hp = upstream;
  if (hp.rfind("http://", 0) == 0) hp = hp.substr(7);
  while (!hp.empty() && hp.back() == '/') hp.pop_back();
  const auto colon = hp.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("upstream needs a port");
  p->up_host_ = hp.substr(0, colon);
  p->up_port_ = std::atoi(hp.c_str() + colon + 1);
  p->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (p->listen_fd_ < 0 || bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(p->listen_fd_, 128) != 0 ||
      getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      pipe(p->wake_) != 0) {
    return absl::InternalError(std::string("proxy socket: ") + std::strerror(errno));
  }
  p->port_ = ntohs(a.sin_port);
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

FaultProxy::~FaultProxy() {
  stop_ = true;
  if (wake_[1] >= 0) (void)!write(wake_[1], "x", 1);
  if (acceptor_.joinable()) acceptor_.join();
  {
    absl::MutexLock l(&mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
    mu_.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &serving_));
  }
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void FaultProxy::Set(Rule r) {
  absl::MutexLock l(&mu_);
  rule_ = std::move(r);
}

FaultProxy::Fault FaultProxy::Decide(const std::string& method, const std::string& path,
                                     int* delay_ms) {
  ++requests_;
  absl::MutexLock l(&mu_);
  if (rule_.fault == Fault::kNone || rule_.count == 0) return Fault::kNone;
  if (!rule_.method.empty() && rule_.method != method) return Fault::kNone;
  if (path.find(rule_.path_part) == std::string::npos) return Fault::kNone;
  if (rule_.count > 0) --rule_.count;
  ++faults_;
  *delay_ms = rule_.delay_ms;
  return rule_.fault;
}

void FaultProxy::AcceptLoop() {
  while (!stop_) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(p, 2, -1) <= 0 || stop_) continue;
    const int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    absl::MutexLock l(&mu_);
    open_fds_.push_back(c);
    ++serving_;
    std::thread([this, c] {
      Serve(c);
      absl::MutexLock done(&mu_);
      --serving_;
    }).detach();
  }
}

void FaultProxy::Serve(int client) {
  int up = -1;
  auto close_all = [&] {
    absl::MutexLock l(&mu_);
    for (int fd : {client, up}) {
      if (fd < 0) continue;
      open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
      close(fd);
    }
  };
  // The request's head, and what of its body came with it.
  std::string in;
  size_t head_end = std::string::npos;
  char buf[64 << 10];
  while (!stop_ && head_end == std::string::npos && in.size() < kMaxHead) {
    if (!Readable(client)) continue;
    const ssize_t n = recv(client, buf, sizeof(buf), 0);
    if (n <= 0) return close_all();
    in.append(buf, static_cast<size_t>(n));
    head_end = in.find("\r\n\r\n");
  }
  if (head_end == std::string::npos) return close_all();
  head_end += 4;
  const std::string head = in.substr(0, head_end);
  std::string method, path;
  std::istringstream(head) >> method >> path;
  int delay_ms = 0;
  const Fault fault = Decide(method, path, &delay_ms);
  if (fault == Fault::kDrop) return close_all();
  if (fault == Fault::kUnavailable) {
    // Read the body first (unless the client waits for 100-continue), so
    // that the client sees the answer rather than a reset.
    if (Lower(Header(head, "expect")) != "100-continue") {
      size_t left = std::strtoull(Header(head, "content-length").c_str(), nullptr, 10);
      left -= std::min(left, in.size() - head_end);
      while (left > 0 && !stop_) {
        if (!Readable(client)) continue;
        const ssize_t n = recv(client, buf, std::min(sizeof(buf), left), 0);
        if (n <= 0) break;
        left -= static_cast<size_t>(n);
      }
    }
    static const char kAnswer[] =
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: 58\r\n"
        "Connection: close\r\n\r\n<Error><Code>SlowDown</Code><Message></Message></Error>   ";
    SendAll(client, kAnswer, sizeof(kAnswer) - 1);
    return close_all();
  }
  if (fault == Fault::kDelay) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    while (!stop_ && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  {
    absl::MutexLock l(&mu_);
    open_fds_.push_back(up);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(up_port_));
  inet_pton(AF_INET, up_host_.c_str(), &a.sin_addr);
  if (connect(up, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return close_all();
  // The head again, asking the server to close after its answer.
  std::string out;
  {
    std::istringstream lines(head);
    std::string line;
    while (std::getline(lines, line)) {
      if (line == "\r" || line.empty()) break;
      const auto colon = line.find(':');
      if (colon != std::string::npos && Lower(line.substr(0, colon)) == "connection") continue;
      out += line + "\n";
    }
    out += "Connection: close\r\n\r\n";
    out.append(in, head_end, std::string::npos);
  }
  if (!SendAll(up, out.data(), out.size())) return close_all();
  // Relay until the answer is whole; the fault applies to the final
  // answer's body (interim 100 Continue answers pass as they are).
  std::string resp_head;
  bool in_body = false;
  uint64_t body_seen = 0, body_len = UINT64_MAX;
  while (!stop_) {
    pollfd p[2] = {{client, POLLIN, 0}, {up, POLLIN, 0}};
    if (poll(p, 2, 100) <= 0) continue;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = recv(client, buf, sizeof(buf), 0);
      if (n <= 0) break;
      if (!SendAll(up, buf, static_cast<size_t>(n))) break;
    }
    if (!(p[1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    const ssize_t n = recv(up, buf, sizeof(buf), 0);
    if (n <= 0) break;
    std::string chunk(buf, static_cast<size_t>(n));
    while (!in_body && !chunk.empty()) {
      resp_head += chunk;
      chunk.clear();
      const auto e = resp_head.find("\r\n\r\n");
      if (e == std::string::npos) break;
      chunk = resp_head.substr(e + 4);
      const std::string h = resp_head.substr(0, e + 4);
      resp_head.clear();
      if (!SendAll(client, h.data(), h.size())) return close_all();
      if (h.rfind("HTTP/1.1 1", 0) == 0) continue;  // interim
      in_body = true;
      const std::string cl = Header(h, "content-length");
      if (!cl.empty()) body_len = std::strtoull(cl.c_str(), nullptr, 10);
    }
    if (!in_body || chunk.empty()) continue;
    if (fault == Fault::kFlip && body_seen == 0) chunk[0] ^= 0x01;
    if (fault == Fault::kCut && body_len != UINT64_MAX) {
      const uint64_t keep = body_len / 2;
      const size_t take = static_cast<size_t>(std::min<uint64_t>(chunk.size(), keep - body_seen));
      SendAll(client, chunk.data(), take);
      body_seen += take;
      if (body_seen >= keep) break;
      continue;
    }
    if (!SendAll(client, chunk.data(), chunk.size())) break;
    body_seen += chunk.size();
    if (body_seen >= body_len) break;
  }
  close_all();
}

}  // namespace cairn::testing
