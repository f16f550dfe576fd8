#include "chunk_stream.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "cairn/limits.h"
#include "cairn/strings.h"
#include "cairn/transport/address.h"
#include "cairn/v1/service.grpc.pb.h"

namespace cairn {

namespace {

// ---- gRPC: Chunks.GetMany ----

class GrpcChunkStream final : public ChunkStream {
 public:
  explicit GrpcChunkStream(Connection* conn) {
    // A connection still being set up (a SYN lost on a lossy link) is waited
    // for; the fetcher's stall check bounds the wait. Corked: the call's
    // headers go out with the first request, so creating the stream never
    // blocks (with the link down it would block for ever, before any stall
    // check runs).
    ctx_.set_wait_for_ready(true);
    ctx_.set_initial_metadata_corked(true);
    stream_ = conn->chunks()->GetMany(&ctx_);
  }
  bool Ask(const cairn::v1::GetChunksRequest& req) override { return stream_->Write(req); }
  void DoneAsking() override { stream_->WritesDone(); }
  bool Next(cairn::v1::ChunkData* c) override {
    while (next_ == resp_.chunks_size()) {
      if (!stream_->Read(&resp_)) return false;
      next_ = 0;
    }
    c->Swap(resp_.mutable_chunks(next_++));
    return true;
  }
  absl::Status Finish() override {
    grpc::Status st = stream_->Finish();
    if (st.ok()) return absl::OkStatus();
    return absl::UnavailableError(StrCat("chunk stream failed: ", st.error_message()));
  }
  void Cancel() override { ctx_.TryCancel(); }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientReaderWriter<cairn::v1::GetChunksRequest, cairn::v1::GetChunksResponse>>
      stream_;
  cairn::v1::GetChunksResponse resp_;
  int next_ = 0;
};

// ---- HTTP/1.1: POST /v1/chunks, pipelined on one connection ----

constexpr size_t kMaxHead = 16 << 10;
constexpr uint32_t kMissing = 0xffffffffu;
constexpr int kConnectSeconds = 5;

class HttpChunkStream final : public ChunkStream {
 public:
  // `host`: to connect to; `host_header`: HOST:PORT as the Host header.
  HttpChunkStream(Connection* conn, std::string host, std::string host_header, int port)
      : conn_(conn), host_(std::move(host)), host_header_(std::move(host_header)), port_(port) {}
  ~HttpChunkStream() override {
    if (fd_ >= 0) ::close(fd_);
  }

  bool Ask(const cairn::v1::GetChunksRequest& req) override {
    absl::MutexLock a(&ask_mu_);
    if (ChunkStream* f = Fallback()) return f->Ask(req);
    if (fd_ < 0 && !Connect()) {
      // Unreachable (a firewall, a gateway bound elsewhere): GetMany then.
      {
        absl::MutexLock l(&mu_);
        if (cancelled_) return false;
        fallback_ = std::make_unique<GrpcChunkStream>(conn_);
        decided_ = true;
      }
      return Fallback()->Ask(req);
    }
    std::string body;
    for (const auto& d : req.digests()) body += d;
    std::string text =
        StrCat("POST /v1/chunks HTTP/1.1\r\nHost: ", host_header_,
               "\r\nContent-Type: application/octet-stream\r\nContent-Length: ", body.size(),
               "\r\n\r\n", body);
    {
      absl::MutexLock l(&mu_);
      if (cancelled_) return false;
      pending_.emplace_back(req.digests().begin(), req.digests().end());
      decided_ = true;
      if (broken_) return true;  // the reader moves it to GetMany
    }
    for (size_t at = 0; at < text.size();) {
      const ssize_t n = ::send(fd_, text.data() + at, text.size() - at, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // Asked all the same: the reader moves what is unanswered to GetMany.
        Broken(StrCat("cannot send to HTTP port ", port_, ": ", strerror(errno)));
        return true;
      }
      at += static_cast<size_t>(n);
    }
    return true;
  }

  void DoneAsking() override {
    absl::MutexLock a(&ask_mu_);
    if (ChunkStream* f = Fallback()) return f->DoneAsking();
    absl::MutexLock l(&mu_);
    asking_done_ = true;
    decided_ = true;
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);  // the node closes after its last answer
  }

  bool Next(cairn::v1::ChunkData* c) override {
    {
      // Until the writer asked (or gave up): which stream answers is decided
      // by the first Ask.
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &HttpChunkStream::Decided));
    }
    for (;;) {
      if (ChunkStream* f = Fallback()) return f->Next(c);
      bool failed = false;
      if (NextHttp(c, &failed)) return true;
      // A port that answers other than as documented (503 when its
      // connection limits are reached, a proxy's error page, a close while
      // the node stops) costs this stream its HTTP connection, not the
      // node: what is unanswered is asked again over GetMany, in order.
      if (!failed || !SwitchToGrpc()) return false;
    }
  }

  absl::Status Finish() override {
    if (ChunkStream* f = Fallback()) return f->Finish();
    absl::MutexLock l(&mu_);
    if (!pending_.empty() && !cancelled_) {
      return absl::UnavailableError(
          StrCat("HTTP port ", port_, " left ", pending_.size(), " request(s) unanswered"));
    }
    return absl::OkStatus();
  }

  void Cancel() override {
    ChunkStream* f = nullptr;
    {
      absl::MutexLock l(&mu_);
      cancelled_ = true;
      if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
      f = fallback_.get();
    }
    if (f != nullptr) f->Cancel();
  }

 private:
  bool Decided() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return decided_ || cancelled_; }
  bool AnswerDueOrEnd() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pending_.empty() || asking_done_ || cancelled_ || broken_;
  }
  ChunkStream* Fallback() {
    absl::MutexLock l(&mu_);
    return fallback_.get();
  }

  // The next chunk over HTTP. False with *failed unset at the end of the
  // stream (or once cancelled), with *failed set when the port broke.
  bool NextHttp(cairn::v1::ChunkData* c, bool* failed) {
    if (!current_ || got_ == answers_.size()) {
      absl::MutexLock l(&mu_);
      if (current_) pending_.pop_front();  // that answer is done
      current_ = false;
      mu_.Await(absl::Condition(this, &HttpChunkStream::AnswerDueOrEnd));
      if (cancelled_) return false;
      if (broken_ || pending_.empty()) {
        *failed = broken_;
        return false;
      }
      answers_ = pending_.front();
      current_ = true;
      got_ = 0;
    }
    if (got_ == 0 && lengths_.size() != answers_.size() && !ReadHead()) {
      *failed = true;
      return false;
    }
    const uint32_t len = lengths_[got_];
    c->Clear();
    c->set_digest(answers_[got_]);
    if (len == kMissing) {
      c->set_missing(true);
    } else {
      std::string* data = c->mutable_data();
      data->resize(len);
      if (!ReadExactly(data->data(), len)) {
        *failed = true;
        return false;
      }
    }
    if (++got_ == answers_.size()) lengths_.clear();  // the next answer reads its head
    return true;
  }

  // Moves this stream to GetMany: the requests not yet answered, from the
  // first chunk not handed out, are asked again there. False once cancelled.
  bool SwitchToGrpc() {
    {
      absl::MutexLock l(&mu_);
      if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);  // a writer blocked in send returns
    }
    absl::MutexLock a(&ask_mu_);  // no Ask in progress from here on
    std::vector<std::string> again;
    bool done_asking;
    {
      absl::MutexLock l(&mu_);
      if (cancelled_) return false;
      for (size_t i = 0; i < pending_.size(); ++i) {
        const auto& r = pending_[i];
        for (size_t k = (i == 0 && current_) ? got_ : 0; k < r.size(); ++k) again.push_back(r[k]);
      }
      pending_.clear();
      current_ = false;
      fallback_ = std::make_unique<GrpcChunkStream>(conn_);
      done_asking = asking_done_;
    }
    ChunkStream* f = Fallback();
    for (size_t at = 0; at < again.size(); at += kMaxChunksPerMessage) {
      cairn::v1::GetChunksRequest req;
      for (size_t k = at; k < again.size() && k < at + kMaxChunksPerMessage; ++k) {
        req.add_digests(again[k]);
      }
      if (!f->Ask(req)) break;  // its Next then reports how it ended
    }
    if (done_asking) f->DoneAsking();
    return true;
  }

  bool Broken(std::string why) {
    absl::MutexLock l(&mu_);
    if (error_.empty() && !cancelled_) error_ = std::move(why);
    broken_ = true;
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    return false;
  }

  // Connects within kConnectSeconds (or until cancelled).
  bool Connect() {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res) != 0) {
      return false;
    }
    int fd = -1;
    for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
      fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) continue;
      bool ok = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
      if (!ok && errno == EINPROGRESS) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(kConnectSeconds);
        while (!ok && std::chrono::steady_clock::now() < until) {
          {
            absl::MutexLock l(&mu_);
            if (cancelled_) break;
          }
          pollfd p{fd, POLLOUT, 0};
          if (::poll(&p, 1, 100) > 0) {
            int err = 0;
            socklen_t n = sizeof(err);
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n);
            if (err != 0) break;
            ok = true;
          }
        }
      }
      if (!ok) {
        ::close(fd);
        fd = -1;
      }
    }
    ::freeaddrinfo(res);
    if (fd < 0) return false;
    const int flags = 0;
    ::ioctl(fd, FIONBIO, &flags);  // blocking from here on; Cancel shuts it down
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    absl::MutexLock l(&mu_);
    if (cancelled_) {
      ::close(fd);
      return false;
    }
    fd_ = fd;
    return true;
  }

  // Fills buf_ with at least one more byte. False at EOF or on an error.
  bool Fill() {
    if (buf_.capacity() < kReadBytes) buf_.reserve(kReadBytes);
    if (start_ > 0) {
      buf_.erase(0, start_);
      start_ = 0;
    }
    const size_t have = buf_.size();
    buf_.resize(kReadBytes);
    ssize_t n;
    do {
      n = ::recv(fd_, buf_.data() + have, kReadBytes - have, 0);
    } while (n < 0 && errno == EINTR);
    buf_.resize(have + static_cast<size_t>(std::max<ssize_t>(n, 0)));
    if (n > 0) return true;
    return Broken(n == 0 ? StrCat("HTTP port ", port_, " closed the connection mid-answer")
                         : StrCat("reading from HTTP port ", port_, ": ", strerror(errno)));
  }

  bool ReadExactly(char* out, size_t len) {
    const size_t buffered = std::min(len, buf_.size() - start_);
    std::memcpy(out, buf_.data() + start_, buffered);
    start_ += buffered;
    for (size_t got = buffered; got < len;) {
      const ssize_t n = ::recv(fd_, out + got, len - got, MSG_WAITALL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return Broken(n == 0 ? StrCat("HTTP port ", port_, " closed the connection mid-answer")
                             : StrCat("reading from HTTP port ", port_, ": ", strerror(errno)));
      }
      got += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads an answer's status line, headers and chunk lengths into lengths_.
  bool ReadHead() {
    size_t end;
    while ((end = buf_.find("\r\n\r\n", start_)) == std::string::npos) {
      if (buf_.size() - start_ > kMaxHead) return Broken("an HTTP answer head over 16 KiB");
      if (!Fill()) return false;
    }
    const absl::string_view head(buf_.data() + start_, end - start_);
    start_ = end + 4;
    const size_t eol = head.find("\r\n");
    const absl::string_view status = head.substr(0, eol);
    if (status.size() < 12 || status.substr(0, 5) != "HTTP/" || status.substr(8, 4) != " 200") {
      return Broken(StrCat("HTTP port ", port_, " answered ", OneLine(std::string(status))));
    }
    uint64_t content_length = 0;
    bool have_length = false;
    for (size_t at = eol; at != absl::string_view::npos && at < head.size();) {
      const size_t next = head.find("\r\n", at + 2);
      absl::string_view line = head.substr(
          at + 2, next == absl::string_view::npos ? absl::string_view::npos : next - at - 2);
      at = next;
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      if (absl::EqualsIgnoreCase(line.substr(0, colon), "content-length")) {
        have_length =
            absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &content_length);
      } else if (absl::EqualsIgnoreCase(line.substr(0, colon), "transfer-encoding")) {
        return Broken("an HTTP chunk answer without a plain length");
      }
    }
    const size_t n = answers_.size();
    if (!have_length) return Broken("an HTTP chunk answer without a Content-Length");
    std::string raw(4 * n, '\0');
    if (!ReadExactly(raw.data(), raw.size())) return false;
    lengths_.assign(n, 0);
    uint64_t total = raw.size();
    for (size_t i = 0; i < n; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(raw.data() + 4 * i);
      lengths_[i] = uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
      if (lengths_[i] != kMissing) {
        if (lengths_[i] > kMaxChunkSize)
          return Broken("an HTTP chunk answer names a chunk over 1 MiB");
        total += lengths_[i];
      }
    }
    if (total != content_length) {
      return Broken(StrCat("an HTTP chunk answer of ", content_length, " bytes names ", total));
    }
    return true;
  }

  static constexpr size_t kReadBytes = 256 << 10;
  Connection* const conn_;
  const std::string host_, host_header_;
  const int port_;
  int fd_ = -1;  // set once by the writer before it asks; closed by the destructor
  // Reader's own: the answer being read.
  std::string buf_;
  size_t start_ = 0;
  std::vector<std::string> answers_;  // digests of the request being answered
  std::vector<uint32_t> lengths_;     // their lengths, once its head is read
  bool current_ = false;              // pending_.front() is being read
  size_t got_ = 0;                    // of its chunks, handed out
  absl::Mutex ask_mu_;                // held by Ask, DoneAsking and the switch to GetMany
  absl::Mutex mu_;
  std::deque<std::vector<std::string>> pending_ ABSL_GUARDED_BY(mu_);  // asked, not yet answered
  std::unique_ptr<ChunkStream> fallback_ ABSL_GUARDED_BY(mu_);
  bool decided_ ABSL_GUARDED_BY(mu_) = false;
  bool asking_done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::string error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<ChunkStream> OpenChunkStream(Connection* conn) {
  const int port = conn->chunks_http_port();
  auto addr = ParseNodeAddress(conn->address());
  if (port > 0 && addr.ok() && !UsesTls(conn->address(), conn->tls())) {
    NodeAddress http = *addr;
    http.port = port;
    return std::make_unique<HttpChunkStream>(conn, addr->host, http.target(), port);
  }
  return std::make_unique<GrpcChunkStream>(conn);
}

}  // namespace cairn
