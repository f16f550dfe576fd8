// The verified file streamer every file endpoint uses: a file's chunks in
// batches read (and hashed) on the work pool ahead of the one being sent,
// sent with sendfile over plain HTTP, a body cut rather than ever wrong.
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <deque>
#include <sstream>

#include "cairn/crc32c.h"
#include "cairn/hash.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "http_gateway_impl.h"
#include "http_util.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using namespace gw;  // NOLINT: the gateway's own insides
using http_util::SV;

namespace {

// Bytes read and verified per trip to the work pool.
constexpr uint64_t kBatchBytes = 1 << 20;
// Batches in flight: the one being sent and the next two, read (and hashed,
// on both pool threads) meanwhile.
constexpr size_t kInFlight = 3;
// Batches up to this size are read on the I/O thread instead.
constexpr uint64_t kInlineBytes = 64 << 10;

// A run of chunks read and sent together.
struct Batch {
  uint64_t offset = 0, bytes = 0;                        // file offset of the first chunk
  std::vector<std::pair<std::string, uint64_t>> chunks;  // digest bytes, length
};
struct Piece {
  std::string data;    // the chunk's bytes, unless `extent` names where they lie
  ChunkExtent extent;  // fd >= 0: sent from the file with sendfile
  Digest digest;
  uint64_t from = 0, to = 0;  // the part of the chunk to send
};
// How a batch is read: `hash` re-hashes what the store hands over with Get;
// `zero_copy` takes chunks the store holds in files as extents, sent later
// with sendfile, re-hashed here first when `hash_extents`.
struct ReadMode {
  bool hash = false, zero_copy = false, hash_extents = false;
  bool crc = false;  // extents with a recorded CRC-32C are checked with it
};
absl::Status ChunkMismatch(ChunkStore* store, const Digest& d) {
  // Checked again by the store, which drops it: a repair refetches it.
  store->Check(d).IgnoreError();
  return absl::DataLossError("chunk " + DigestName(d) + " does not match its digest");
}
// Reads (or locates) a batch, each chunk checked against its digest (by
// the store when it verifies reads, else here, unless the operator trusts
// the hash made on arrival), trimmed to [first, last] of the file.
absl::StatusOr<std::vector<Piece>> ReadBatch(ChunkStore* store, ReadMode mode, const Batch& b,
                                             uint64_t first, uint64_t last,
                                             HttpCounters* counters) {
  std::vector<Piece> out;
  uint64_t at = b.offset;
  for (const auto& [digest, length] : b.chunks) {
    Piece p;
    CAIRN_ASSIGN_OR_RETURN(p.digest, DigestFromBytes(digest));
    const Digest& d = p.digest;
    absl::StatusOr<ChunkExtent> e = absl::UnimplementedError("");
    if (mode.zero_copy) e = store->Locate(d);
    if (e.ok()) {
      if (e->length != length) return ChunkMismatch(store, d);
      if (mode.hash_extents) {
        // Hashed from a reused buffer; sendfile then sends the same
        // page-cache pages.
        thread_local std::string buf;
        if (buf.size() < length) buf.resize(length);
        for (uint64_t got = 0; got < length;) {
          const ssize_t r = ::pread(e->fd, buf.data() + got, length - got, e->offset + got);
          if (r < 0 && errno == EINTR) continue;
          if (r <= 0) return ChunkMismatch(store, d);
          got += r;
        }
        const std::string_view bytes(buf.data(), length);
        // The recorded CRC settles it when it matches; when it does not
        // (rot, or a damaged index entry), the SHA-256 decides.
        if (mode.crc && e->has_crc32c && Crc32c(bytes) == e->crc32c) {
          counters->chunks_checked_crc++;
        } else {
          counters->chunks_checked_sha256++;
          if (Sha256Of(bytes) != d) return ChunkMismatch(store, d);
        }
      } else {
        // Into the page cache here, so the send on the I/O thread does not
        // wait for the disk.
        ::readahead(e->fd, static_cast<off64_t>(e->offset), length);
      }
      p.extent = *std::move(e);
    } else if (!absl::IsUnimplemented(e.status())) {
      return e.status();
    } else {
      CAIRN_RETURN_IF_ERROR(store->Get(d, &p.data));
      if (mode.hash) counters->chunks_checked_sha256++;
      if (p.data.size() != length || (mode.hash && Sha256Of(p.data) != d)) {
        return ChunkMismatch(store, d);
      }
    }
    p.from = std::max(first, at) - at;
    p.to = std::min(last + 1, at + length) - at;
    at += length;
    out.push_back(std::move(p));
  }
  return out;
}
// Where a batch read on the pool lands; `timer` wakes the waiting coroutine.
struct ReadSlot {
  explicit ReadSlot(const asio::any_io_executor& ex)
      : timer(ex, std::chrono::steady_clock::time_point::max()) {}
  bool done = false;
  absl::StatusOr<std::vector<Piece>> result;
  asio::steady_timer timer;
};

}  // namespace

// Until the kernel's send queue is empty (acknowledged), no progress for
// `timeout`, or the client sends again. The last ends the wait at once: a
// client that asks again has read the answer (or pipelines, and the next
// answer's wait covers this one's bytes too). Without it, every answer to
// a client that waits for it before asking again (the ACK rides its next
// request) waited a full poll period: 10 ms per request, p50 10 ms with 8
// keep-alive clients.
asio::awaitable<void> gw::WaitAcknowledged(tcp::socket& sock, std::chrono::seconds timeout) {
  struct Wait {
    explicit Wait(const asio::any_io_executor& ex) : timer(ex) {}
    asio::steady_timer timer;
    bool readable = false;
  };
  auto w = std::make_shared<Wait>(co_await asio::this_coro::executor);
  int last = -1;
  auto since = std::chrono::steady_clock::now();
  bool watching = false;
  for (;;) {
    int queued = 0;
    if (w->readable || !sock.is_open() || ::ioctl(sock.native_handle(), SIOCOUTQ, &queued) != 0 ||
        queued <= 0) {
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (queued != last) {
      last = queued;
      since = now;
    } else if (now - since > timeout) {
      break;
    }
    if (!watching) {
      watching = true;
      sock.async_wait(tcp::socket::wait_read, [w](const ErrorCode& ec) {
        if (ec == asio::error::operation_aborted) return;
        w->readable = true;
        w->timer.cancel();
      });
    }
    ErrorCode ec;
    w->timer.expires_after(std::chrono::milliseconds(10));
    co_await w->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (watching && !w->readable && sock.is_open()) {
    ErrorCode ignored;
    sock.cancel(ignored);  // the readability wait; nothing else is pending here
  }
}

asio::awaitable<bool> HttpGateway::Impl::SendFile(Exchange& x, FileToSend f) {
  const Request& req = x.req;
  const uint64_t size = f.file.size();
  http::response_header<> head;
  head.version(req.version() == 10 ? 10 : 11);
  head.result(http::status::ok);
  head.set(http::field::content_type, "application/octet-stream");
  if (!f.chunks_for_client) {
    head.set(http::field::etag, f.etag);
    head.set(http::field::accept_ranges, "bytes");
  }
  for (auto& [k, v] : f.headers) head.set(k, v);
  if (!req.keep_alive()) head.set(http::field::connection, "close");
  if (!f.chunks_for_client && http_util::NoneMatch(SV(req[http::field::if_none_match]), f.etag)) {
    head.result(http::status::not_modified);
    co_return co_await SendHead(x, head);
  }
  uint64_t first = 0, last = size == 0 ? 0 : size - 1, length = size;
  // If-Range naming another version of the file (a tag moved since the
  // client's first part): the whole file, so a resume never splices two.
  const std::string_view if_range = SV(req[http::field::if_range]);
  auto range = f.chunks_for_client || (!if_range.empty() && if_range != f.etag)
                   ? absl::StatusOr<std::optional<http_util::Range>>(std::nullopt)
                   : http_util::ParseRange(SV(req[http::field::range]), size);
  if (!range.ok() && size == 0 && absl::IsOutOfRange(range.status())) {
    // An empty file: what the Hub answers (the JavaScript client's bytes=0-0
    // probe fails on a 416), 206 with nothing in it.
    head.result(http::status::partial_content);
    head.set(http::field::content_range, "bytes */0");
    head.set(http::field::content_length, "0");
    co_return co_await SendHead(x, head);
  }
  if (!range.ok()) {
    Answer a = FromStatus(range.status());
    if (absl::IsOutOfRange(range.status())) {
      a = Error(http::status::range_not_satisfiable, std::string(range.status().message()));
      a.headers.emplace_back("Content-Range", StrCat("bytes */", size));
    }
    for (auto& h : f.headers) a.headers.push_back(h);
    co_return co_await SendAnswer(x, std::move(a));
  }
  if (*range) {
    first = (*range)->first;
    last = (*range)->last;
    length = last - first + 1;
    head.result(http::status::partial_content);
    head.set(http::field::content_range, StrCat("bytes ", first, "-", last, "/", size));
  }
  head.set(http::field::content_length, std::to_string(f.prefix.size() + length));
  // The head goes with the first body bytes (one write, and an error answer
  // instead of a cut if those fail), except while chunks are still arriving
  // from upstream: then the client gets its headers at once.
  std::string head_text;
  if (req.method() == http::verb::head || length == 0 || f.fetch) {
    if (!co_await SendHead(x, head)) co_return false;
    if (req.method() == http::verb::head || length == 0) co_return true;
  } else {
    head.set(http::field::server, "cairn-node");
    std::ostringstream text;
    text << head;
    head_text = text.str() + f.prefix;  // the prefix rides with the head
  }

  // The body: the chunks overlapping [first, last] in batches of about
  // 1 MiB, each chunk checked against its digest before any of it is sent.
  // Batches are read (and hashed) on the work pool one ahead of the one
  // being written, so reading and sending overlap.
  const auto& chunks = f.chunks.chunks();
  // Past the node-wide read-ahead budget: small batches, none ahead.
  struct Held {
    std::atomic<uint64_t>* total;
    uint64_t mine = 0;
    void Add(uint64_t n) {
      *total += n;
      mine += n;
    }
    void Sub(uint64_t n) {
      *total -= n;
      mine -= n;
    }
    ~Held() { *total -= mine; }
  } held{&read_budget.held};
  const bool tight = read_budget.held.load() > opts.max_read_ahead_bytes;
  const uint64_t batch_limit = tight ? kInlineBytes : kBatchBytes;
  std::vector<Batch> batches;
  {
    int next = 0;
    uint64_t offset = 0;  // file offset of chunks(next)
    while (next < chunks.size() && offset + chunks[next].length() <= first) {
      offset += chunks[next++].length();
    }
    while (next < chunks.size() && offset <= last) {
      Batch b;
      b.offset = offset;
      while (next < chunks.size() && offset <= last && b.bytes < batch_limit) {
        b.chunks.emplace_back(chunks[next].digest(), chunks[next].length());
        b.bytes += chunks[next].length();
        offset += chunks[next++].length();
      }
      batches.push_back(std::move(b));
    }
  }
  const auto ex = co_await asio::this_coro::executor;
  ReadMode mode;
  mode.hash = opts.verify_reads && !opts.store_verifies_reads && !f.chunks_for_client;
  // Plain HTTP sends chunk bytes with sendfile, except while they arrive on
  // demand (read as each lands).
  mode.zero_copy = opts.zero_copy && x.conn.CanSendFile() && !f.fetch;
  mode.hash_extents = (opts.verify_reads && !f.chunks_for_client) || opts.store_verifies_reads;
  mode.crc = opts.verify_with_crc;
  ChunkStore* store = repo->chunks_for_reads();
  // Starts reading batch `i` on the pool; its slot fills on this strand.
  auto start = [&](size_t i) {
    held.Add(batches[i].bytes);
    auto slot = std::make_shared<ReadSlot>(ex);
    asio::post(work,
               [this, slot, ex, store, mode, b = batches[i], first, last, path = f.file.path()] {
                 auto r = ReadBatch(store, mode, b, first, last, &counters);
                 // Counted and logged here: a batch read ahead of a cut is never
                 // looked at again, though the store dropped what it found damaged.
                 if (absl::IsDataLoss(r.status())) NoteDamage(path, r.status());
                 asio::post(ex, [slot, r = std::move(r)]() mutable {
                   slot->result = std::move(r);
                   slot->done = true;
                   slot->timer.cancel();
                 });
               });
    return slot;
  };
  std::vector<std::shared_ptr<const void>> pins;  // of the extents sent
  std::deque<std::shared_ptr<ReadSlot>> ahead;    // batches i.. being read
  size_t started = 0;                             // batches handed to the pool
  for (size_t i = 0; i < batches.size(); ++i) {
    const Batch& b = batches[i];
    uint64_t on_demand_bytes = 0;  // of the batch, waited for from upstream
    if (f.fetch) {
      // Chunks still arriving from upstream: wait for each, then serve it.
      for (const auto& [digest, length] : b.chunks) {
        auto d = DigestFromBytes(digest);
        if (!d.ok()) break;
        auto held = [&] {
          auto h = store->Has(*d);
          return h.ok() && *h;
        };
        if (held()) {
          counters.chunk_hits++;
          continue;
        }
        counters.chunk_misses++;
        if (!co_await WaitFor(held, *f.fetch)) break;  // the read below reports it
        on_demand_bytes += length;
      }
    } else {
      counters.chunk_hits += b.chunks.size();
    }
    absl::StatusOr<std::vector<Piece>> pieces;
    if (ahead.empty() && b.bytes <= kInlineBytes) {
      // A small file (a config, a tokenizer): read here; a hop to the pool
      // and back costs more than reading 64 KiB from the page cache.
      held.Add(b.bytes);
      pieces = ReadBatch(store, mode, b, first, last, &counters);
      if (absl::IsDataLoss(pieces.status())) NoteDamage(f.file.path(), pieces.status());
      started = i + 1;
    } else {
      // kInFlight batches at a time; one while chunks arrive on demand or
      // the node is over its read-ahead budget.
      const size_t depth = f.fetch || tight ? 1 : kInFlight;
      while (started < batches.size() && started < i + depth) ahead.push_back(start(started++));
      std::shared_ptr<ReadSlot> slot = std::move(ahead.front());
      ahead.pop_front();
      while (!slot->done) {
        ErrorCode ec;
        co_await slot->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      pieces = std::move(slot->result);
    }
    if (!pieces.ok() && !head_text.empty()) {
      // Nothing sent yet: a plain error answer.
      if (!absl::IsDataLoss(pieces.status())) {  // damage was noted when read
        NoteError(StrCat(f.file.path(), ": ", pieces.status().message()));
      }
      spdlog::error("HTTP {}: {}: {}; answered 500", std::string(SV(req.target())), f.file.path(),
                    pieces.status().ToString());
      Answer a = Error(http::status::internal_server_error,
                       StrCat("cannot serve ", f.file.path(), ": ", pieces.status().message()));
      co_return co_await SendAnswer(x, std::move(a));
    }
    if (!pieces.ok()) {
      // Headers are out: the only honest answer is to cut the connection,
      // so the client sees a short body, never a wrong one.
      if (!f.fetch || !absl::IsNotFound(pieces.status())) {
        // The store dropped the bad chunk; a node with upstreams fetches it
        // again, so the next request (a resume) is served whole.
        if (opts.on_demand != nullptr && !f.release_name.empty()) {
          asio::post(fetch_pool, [od = opts.on_demand, n = f.release_name, d = f.release_digest] {
            od->Repair(n, d).IgnoreError();  // logged there
          });
        }
      }
      if (!absl::IsDataLoss(pieces.status())) {
        NoteError(StrCat(f.file.path(), ": ", pieces.status().message(), "; connection cut"));
      }
      spdlog::error("HTTP {}: {}: {}; connection aborted", std::string(SV(req.target())),
                    f.file.path(), pieces.status().ToString());
      x.conn.Abort();
      co_return false;
    }
    // Buffered pieces go out in one write; extents with sendfile, each
    // after what was buffered before it. The head rides the first write.
    const auto timeout = std::chrono::seconds(opts.idle_seconds);
    std::vector<asio::const_buffer> bufs;
    if (!head_text.empty()) {
      bufs.push_back(asio::buffer(head_text));
      x.status = head.result_int();
    }
    std::size_t head_bytes = head_text.size();
    uint64_t sent = 0;  // body bytes of this batch that reached the socket
    Written w;
    const Digest* cut_short = nullptr;  // a chunk whose file ended early
    for (size_t k = 0; k <= pieces->size() && !w.ec; ++k) {
      const Piece* p = k < pieces->size() ? &(*pieces)[k] : nullptr;
      if (p != nullptr && p->extent.fd < 0) {
        bufs.push_back(asio::buffer(p->data.data() + p->from, p->to - p->from));
        continue;
      }
      if (!bufs.empty()) {
        w = co_await x.conn.Write(std::move(bufs), timeout);
        bufs.clear();
        sent += w.bytes - std::min(w.bytes, head_bytes);
        head_bytes = 0;
        if (w.ec) break;
      }
      if (p == nullptr) break;
      // Held until the response ends: the bytes stay in place (no hole is
      // punched) while the kernel may still be sending those pages.
      if (std::find(pins.begin(), pins.end(), p->extent.pin) == pins.end()) {
        pins.push_back(p->extent.pin);
      }
      w = co_await x.conn.SendFile(p->extent.fd, p->extent.offset + p->from, p->to - p->from,
                                   timeout);
      sent += w.bytes;
      counters.bytes_sent_zero_copy += w.bytes;
      if (w.ec == asio::error::eof) cut_short = &p->digest;
    }
    head_text.clear();
    held.Sub(b.bytes);
    // A client that hangs up mid-write (aria2c does, once another mirror has
    // the rest) still took what reached the socket: count it.
    counters.bytes_sent += sent;
    counters.bytes_sent_on_demand += std::min(sent, on_demand_bytes);
    if (cut_short != nullptr) {
      // The pack file is shorter than its index says: cut, and let the
      // store drop the chunk so a repair (or the next upload) replaces it.
      counters.verification_failures++;
      asio::post(work, [store, d = *cut_short] { store->Check(d).IgnoreError(); });
      if (opts.on_demand != nullptr && !f.release_name.empty()) {
        asio::post(fetch_pool, [od = opts.on_demand, n = f.release_name, d = f.release_digest] {
          od->Repair(n, d).IgnoreError();  // logged there
        });
      }
      NoteError(StrCat(f.file.path(), ": chunk ", DigestName(*cut_short),
                       " is cut short on disk; connection cut"));
      spdlog::error("HTTP {}: {}: chunk {} is cut short on disk; connection aborted",
                    std::string(SV(req.target())), f.file.path(), DigestName(*cut_short));
      x.conn.Abort();
      co_return false;
    }
    if (w.ec) co_return false;
  }
  co_return true;
}

}  // namespace cairn::node
