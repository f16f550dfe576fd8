#include "h2_stall.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

namespace cairn::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Frame types, flags and settings (RFC 9113 section 6).
constexpr uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kPing = 6, kGoaway = 7,
                  kWindowUpdate = 8;
constexpr uint8_t kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4;
constexpr uint16_t kEnablePush = 2, kMaxConcurrentStreams = 3, kInitialWindowSize = 4,
                   kMaxFrameSize = 5;
constexpr int64_t kMaxWindow = 0x7fffffff;
constexpr int kGrpcPrefix = 5;                        // compressed flag + 4-byte length
constexpr auto kNoWindowLimit = milliseconds(2000);   // stop when no window arrives this long
constexpr auto kSendStallLimit = milliseconds(5000);  // a half-written frame this long is fatal

// Appends the low `bytes` bytes of `v`, big-endian.
void PutBE(std::string* s, uint64_t v, int bytes) {
  while (bytes-- > 0) s->push_back(static_cast<char>(v >> (8 * bytes)));
}
void Put32(std::string* s, uint32_t v) { PutBE(s, v, 4); }
uint32_t Get32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} << 24 | uint32_t{u[1]} << 16 | uint32_t{u[2]} << 8 | u[3];
}

void AppendFrameHeader(std::string* s, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid) {
  PutBE(s, len, 3);
  PutBE(s, type, 1);
  PutBE(s, flags, 1);
  Put32(s, sid & 0x7fffffff);
}

// HPACK integer with a 7-bit prefix, H (Huffman) bit clear (RFC 7541 5.1).
void PutHpackInt(std::string* s, size_t n) {
  if (n < 127) return s->push_back(static_cast<char>(n));
  s->push_back(127);
  for (n -= 127; n >= 128; n /= 128) s->push_back(static_cast<char>(n % 128 + 128));
  s->push_back(static_cast<char>(n));
}

// "Literal header field without indexing, new name" (RFC 7541 6.2.2).
void PutHeader(std::string* s, const std::string& name, const std::string& value) {
  s->push_back(0);
  PutHpackInt(s, name.size());
  *s += name;
  PutHpackInt(s, value.size());
  *s += value;
}

}  // namespace

struct StallConnection::State {
  struct Stream {
    uint32_t id;
    int64_t window;     // the server's receive window for this stream
    uint64_t sent = 0;  // DATA payload bytes written, gRPC prefix included
    bool closed = false;
  };

  int fd = -1;
  StallResult* out = nullptr;  // the result the current call fills in
  bool dead = false;           // closed or failed: nothing more is sent
  std::string in;              // received bytes not yet parsed
  std::string outbuf;          // whole frames not yet written
  size_t out_off = 0;
  int64_t conn_window = 65535;
  int64_t initial_window = 65535;
  uint32_t max_frame = 16384;
  uint32_t max_streams = 0xffffffff;
  bool got_settings = false;
  std::vector<Stream> streams;

  ~State() {
    if (fd >= 0) close(fd);
  }

  void Fail(const std::string& why) {
    if (out->error.empty()) out->error = why;
    dead = true;
  }

  // Writes all of `outbuf`, reading (and answering) the server meanwhile so
  // neither side can block the other.
  bool Flush() {
    auto last_progress = Clock::now();
    while (!dead && out_off < outbuf.size()) {
      ssize_t n = send(fd, outbuf.data() + out_off, outbuf.size() - out_off, MSG_NOSIGNAL);
      if (n > 0) {
        out_off += n;
        last_progress = Clock::now();
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        if (errno == EPIPE || errno == ECONNRESET) out->connection_closed = true;
        Fail(std::string("send: ") + strerror(errno));
        break;
      }
      if (Clock::now() - last_progress > kSendStallLimit) {
        Fail("send stalled: the server stopped reading mid-frame");
        break;
      }
      pollfd p{fd, POLLIN | POLLOUT, 0};
      if (poll(&p, 1, 100) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) ReadAvailable();
    }
    if (out_off == outbuf.size()) {
      outbuf.clear();
      out_off = 0;
    }
    return !dead;
  }

  // Waits up to `timeout_ms` for input, handles it and writes any answers.
  void Pump(int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    if (!dead && poll(&p, 1, timeout_ms) > 0) ReadAvailable();
    Flush();
  }

  // Reads whatever is available and handles every complete frame.
  void ReadAvailable() {
    char buf[65536];
    while (!dead) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        in.append(buf, n);
      } else if (n == 0) {
        out->connection_closed = true;
        dead = true;
      } else if (errno == EINTR) {
        continue;
      } else {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          if (errno == ECONNRESET) out->connection_closed = true;
          Fail(std::string("recv: ") + strerror(errno));
        }
        break;
      }
    }
    size_t pos = 0;
    while (in.size() - pos >= 9) {
      const auto* h = reinterpret_cast<const unsigned char*>(in.data() + pos);
      uint32_t len = uint32_t{h[0]} << 16 | uint32_t{h[1]} << 8 | h[2];
      if (in.size() - pos < 9 + len) break;
      HandleFrame(h[3], h[4], Get32(in.data() + pos + 5) & 0x7fffffff, in.data() + pos + 9, len);
      pos += 9 + len;
    }
    in.erase(0, pos);
  }

  Stream* Find(uint32_t sid) {
    size_t i = (sid - 1) / 2;
    return sid % 2 == 1 && i < streams.size() ? &streams[i] : nullptr;
  }

  void EndStream(uint32_t sid) {
    Stream* s = Find(sid);
    if (s == nullptr || s->closed) return;
    s->closed = true;
    out->streams_ended++;
  }

  void HandleFrame(uint8_t type, uint8_t flags, uint32_t sid, const char* p, uint32_t len) {
    switch (type) {
      case kData:  // a response: give the connection window straight back
        if (len > 0) {
          AppendFrameHeader(&outbuf, 4, kWindowUpdate, 0, 0);
          Put32(&outbuf, len);
        }
        if (flags & kEndStream) EndStream(sid);
        break;
      case kHeaders:  // response headers or trailers; never decoded
        if (flags & kEndStream) EndStream(sid);
        break;
      case kRstStream:
        out->streams_reset++;
        if (Stream* s = Find(sid)) s->closed = true;
        break;
      case kSettings:
        if (flags & kAck) break;
        for (uint32_t i = 0; i + 6 <= len; i += 6) {
          uint16_t id = static_cast<uint16_t>(uint8_t(p[i]) << 8 | uint8_t(p[i + 1]));
          uint32_t v = Get32(p + i + 2);
          if (id == kInitialWindowSize) {  // applies to open streams as a delta
            for (Stream& s : streams) s.window += int64_t{v} - initial_window;
            initial_window = v;
          } else if (id == kMaxFrameSize) {
            max_frame = std::clamp<uint32_t>(v, 16384, 1 << 20);
          } else if (id == kMaxConcurrentStreams) {
            max_streams = v;
          }
        }
        got_settings = true;
        AppendFrameHeader(&outbuf, 0, kSettings, kAck, 0);
        break;
      case kPing:
        if (!(flags & kAck) && len == 8) {
          AppendFrameHeader(&outbuf, 8, kPing, kAck, 0);
          outbuf.append(p, 8);
        }
        break;
      case kGoaway:
        out->goaway = true;
        if (len >= 8) {
          uint32_t last = Get32(p) & 0x7fffffff, code = Get32(p + 4);
          for (Stream& s : streams) s.closed |= s.id > last;  // never processed
          if (code != 0) {
            Fail("GOAWAY error " + std::to_string(code) + ": " + std::string(p + 8, len - 8));
          }
        }
        break;
      case kWindowUpdate:
        if (len == 4) {
          int64_t inc = Get32(p) & 0x7fffffff;
          if (sid == 0) {
            conn_window += inc;
          } else if (Stream* s = Find(sid)) {
            s->window += inc;
          }
        }
        break;
      default:  // PRIORITY, PUSH_PROMISE (disabled), CONTINUATION, unknown
        break;
    }
  }
};

StallConnection::StallConnection(std::unique_ptr<State> state) : s_(std::move(state)) {}
StallConnection::~StallConnection() = default;

std::unique_ptr<StallConnection> StallConnection::Open(const StallOptions& o, StallResult* out) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(o.seconds_budget);

  // Connect (blocking), then switch to non-blocking for the exchange.
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  if (int rc = getaddrinfo(o.host.c_str(), std::to_string(o.port).c_str(), &hints, &ai); rc != 0) {
    out->error = std::string("getaddrinfo: ") + gai_strerror(rc);
    return nullptr;
  }
  auto st = std::make_unique<State>();
  st->out = out;
  for (addrinfo* a = ai; a && st->fd < 0; a = a->ai_next) {
    st->fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (st->fd >= 0 && connect(st->fd, a->ai_addr, a->ai_addrlen) != 0) {
      out->error = std::string("connect: ") + strerror(errno);
      close(st->fd);
      st->fd = -1;
    }
  }
  freeaddrinfo(ai);
  if (st->fd < 0) return nullptr;
  out->error.clear();
  int one = 1;
  setsockopt(st->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(st->fd, F_SETFL, fcntl(st->fd, F_GETFL) | O_NONBLOCK);

  // Preface, our SETTINGS (no push, huge stream windows so responses never
  // block) and a connection WINDOW_UPDATE to the maximum.
  std::string& ob = st->outbuf;
  ob = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  AppendFrameHeader(&ob, 12, kSettings, 0, 0);
  PutBE(&ob, kEnablePush, 2);  // each setting: 16-bit id, 32-bit value
  Put32(&ob, 0);
  PutBE(&ob, kInitialWindowSize, 2);
  Put32(&ob, kMaxWindow);
  AppendFrameHeader(&ob, 4, kWindowUpdate, 0, 0);
  Put32(&ob, kMaxWindow - 65535);
  st->Flush();

  // Learn the server's limits before opening any stream.
  while (!st->dead && !st->got_settings &&
         Clock::now() < std::min(deadline, start + kNoWindowLimit)) {
    st->Pump(100);
  }
  if (!st->dead && !st->got_settings) st->Fail("no SETTINGS from the server");

  // HEADERS for each stream (ids 1, 3, 5, ...), never ending the stream.
  const int n = st->dead ? 0 : static_cast<int>(std::clamp<int64_t>(o.streams, 0, st->max_streams));
  std::string block;
  PutHeader(&block, ":method", "POST");
  PutHeader(&block, ":scheme", "http");
  PutHeader(&block, ":path", o.path);
  PutHeader(&block, ":authority", o.host + ":" + std::to_string(o.port));
  PutHeader(&block, "content-type", "application/grpc");
  PutHeader(&block, "te", "trailers");
  for (int i = 0; i < n; ++i) {
    st->streams.push_back({static_cast<uint32_t>(2 * i + 1), st->initial_window});
    AppendFrameHeader(&ob, block.size(), kHeaders, kEndHeaders, 2 * i + 1);
    ob += block;
  }
  out->streams_opened = n;
  st->Flush();

  // DATA round-robin over the streams while the windows allow: the gRPC
  // prefix declaring `declared_bytes`, then zeros, never END_STREAM.
  std::string prefix(1, '\0');
  Put32(&prefix, o.declared_bytes);
  const uint64_t total = kGrpcPrefix + o.send_bytes;  // DATA payload per stream
  size_t next = 0;
  auto last_progress = Clock::now();
  while (!st->dead && Clock::now() < deadline) {
    State::Stream* pick = nullptr;
    bool unfinished = false;
    for (int k = 0; k < n && !pick; ++k) {
      State::Stream& s = st->streams[(next + k) % n];
      if (s.closed || s.sent >= total) continue;
      unfinished = true;
      if (s.window > 0) {
        pick = &s;
        next = (next + k + 1) % n;
      }
    }
    if (!unfinished) break;  // every stream has sent everything, or is closed
    if (!pick || st->conn_window <= 0) {
      if (Clock::now() - last_progress > kNoWindowLimit) break;  // stalled by the server
      st->Pump(100);
      continue;
    }
    const uint64_t len = std::min<uint64_t>(
        {total - pick->sent, uint64_t(pick->window), uint64_t(st->conn_window), st->max_frame});
    AppendFrameHeader(&ob, len, kData, 0, pick->id);
    const uint64_t from_prefix =
        pick->sent < kGrpcPrefix ? std::min<uint64_t>(len, kGrpcPrefix - pick->sent) : 0;
    if (from_prefix > 0) ob.append(prefix, pick->sent, from_prefix);
    ob.append(len - from_prefix, '\0');
    pick->window -= len;
    st->conn_window -= len;
    if (!st->Flush()) break;  // a frame not fully written is not counted
    pick->sent += len;
    out->bytes_sent += len - from_prefix;
    last_progress = Clock::now();
    st->Pump(0);  // take in window updates, settings and pings as they come
  }
  return std::unique_ptr<StallConnection>(new StallConnection(std::move(st)));
}

void StallConnection::Poll(int timeout_ms, StallResult* out) {
  s_->out = out;
  const auto until = Clock::now() + milliseconds(timeout_ms);
  do {
    auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
    s_->Pump(static_cast<int>(std::clamp<int64_t>(left, 0, 100)));
  } while (!s_->dead && Clock::now() < until);
}

}  // namespace cairn::testing
