#include "cairn/transport/fetcher.h"

#include <algorithm>
#include <bit>
#include <cstdio>

#include "absl/container/flat_hash_map.h"
#include "cairn/limits.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/probe.h"
#include "chunk_stream.h"

namespace cairn {

namespace {
constexpr int kChunksPerMessage = kChunksPerRequest;
constexpr size_t kBytesPerMessage = kBytesPerRequest;
constexpr size_t kMinWindow = 2 << 20;
constexpr int kMaxScan = 4096;  // queue entries a writer looks at per batch
}  // namespace

struct Fetcher::Source {
  struct Owed {
    uint64_t index;
    Digest digest;
    uint32_t length;
    SteadyTime asked;
    size_t ahead;  // bytes the stream owed before this chunk was asked for
  };
  size_t id = 0;
  uint64_t bit = 0;
  Connection* conn = nullptr;
  std::unique_ptr<ChunkStream> stream;  // HTTP or gRPC (chunk_stream.h)
  std::thread writer, reader;
  // Everything below is guarded by Fetcher::mu_.
  std::deque<Owed> owed;  // in request order; the node answers in that order
  size_t owed_bytes = 0;
  size_t window = 0;
  bool dead = false, writer_done = false, reader_done = false;
  std::string why;
  absl::StatusCode code = absl::StatusCode::kUnavailable;  // what the demotion means
  SteadyTime last_byte, rate_start, sample_start;
  SteadyTime last_chunk;  // the last chunk it delivered (never reset)
  uint64_t rate_bytes = 0, sample_bytes = 0;
  double rate_ewma = 0;
  // The path's round trip as this stream sees it (below; 1e9 until known).
  double delay = 1e9;
  uint64_t bytes = 0, chunks = 0;
};

Fetcher::Fetcher(std::vector<Connection*> sources, FetchOptions opts) : opts_(opts) {
  if (sources.size() > 64) sources.resize(64);
  for (size_t i = 0; i < sources.size(); ++i) {
    auto s = std::make_unique<Source>();
    s->id = i;
    s->bit = uint64_t{1} << i;
    s->conn = sources[i];
    s->window = kMinWindow;                // grows like TCP slow start until the rate is known
    s->stream = OpenChunkStream(s->conn);  // never blocks: it connects on the first Ask
    sources_.push_back(std::move(s));
  }
  for (auto& s : sources_) {
    Source* p = s.get();
    p->writer = std::thread([this, p] { WriteLoop(p); });
    p->reader = std::thread([this, p] { ReadLoop(p); });
    // A clean sample of the path's round trip, off the critical path (a
    // chunk's own times include slow start and the queue; ReadLoop reads it).
    CachedRoundTrip(p->conn->address());
  }
  if (opts_.cancel != nullptr) {
    // Cancelling ends every stream at once and wakes Next().
    cancel_callback_ = opts_.cancel->AddCallback([this] {
      absl::MutexLock l(&mu_);
      if (fatal_.ok()) fatal_ = absl::CancelledError("fetch cancelled");
      for (auto& s : sources_) s->stream->Cancel();
      WakeAll();
    });
  }
}

Fetcher::~Fetcher() {
  if (opts_.cancel != nullptr) opts_.cancel->RemoveCallback(cancel_callback_);
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    // Cancel rather than half-close: a hostile node could keep a half-closed
    // call open for ever.
    for (auto& s : sources_) s->stream->Cancel();
  }
  WakeAll();
  for (auto& s : sources_) {
    s->writer.join();
    s->reader.join();
  }
}

void Fetcher::Add(const std::vector<ChunkWant>& wants) {
  {
    absl::MutexLock l(&mu_);
    if (items_.empty()) head_since_ = opts_.clock->SteadyNow();
    for (const ChunkWant& w : wants) {
      uint64_t index = base_ + items_.size();
      Item it;
      it.digest = w.digest;
      it.length = w.length;
      items_.push_back(std::move(it));
      queue_.insert(index);
    }
  }
  WakeAll();
}

Fetcher::Item* Fetcher::ItemAt(uint64_t index) {
  if (index < base_ || index - base_ >= items_.size()) return nullptr;
  return &items_[index - base_];
}

size_t Fetcher::Live() const {
  size_t n = 0;
  for (const auto& s : sources_) n += s->dead ? 0 : 1;
  return n;
}

bool Fetcher::Usable(size_t source) const {
  absl::MutexLock l(&mu_);
  return source < sources_.size() && !sources_[source]->dead;
}

size_t Fetcher::PeakInFlight() const {
  absl::MutexLock l(&mu_);
  return peak_in_flight_;
}

std::vector<Fetcher::SourceStats> Fetcher::Stats() const {
  absl::MutexLock l(&mu_);
  std::vector<SourceStats> out;
  for (const auto& s : sources_) {
    out.push_back({s->conn->address(), s->bytes, s->chunks, s->why, s->delay < 1e9 ? s->delay : 0,
                   s->rate_ewma});
  }
  return out;
}

size_t Fetcher::InFlightCap() const {
  // Asked for, or arrived and waiting for their turn: at most four times the
  // live streams' windows (so one stream may run ahead of a slower one, and
  // a consumer slower than the network stops the asking instead of piling
  // chunks up; a cut loses at most this much), and never more than the
  // memory bound. Four, not two: with two a loopback pull was 5 % slower.
  size_t windows = 0;
  for (const auto& s : sources_) {
    if (!s->dead) windows += s->window;
  }
  return std::min(opts_.memory_bytes, std::max<size_t>(4 * windows, kMinWindow));
}

void Fetcher::Release(Source* s, uint64_t index) {
  Item* it = ItemAt(index);
  if (it == nullptr) return;
  it->owners &= ~s->bit;
  if (!it->done && it->owners == 0) queue_.insert(index);
}

void Fetcher::Demote(Source* s, absl::StatusCode code, std::string why) {
  if (s->dead) return;
  // Said once per node and reason: its other streams may say the same.
  bool said = false;
  for (const auto& other : sources_) {
    said |= other->dead && other->conn->address() == s->conn->address() && other->why == why;
  }
  s->dead = true;
  s->code = code;
  s->why = std::move(why);
  for (const auto& o : s->owed) Release(s, o.index);
  owed_bytes_ -= s->owed_bytes;
  s->owed_bytes = 0;
  s->owed.clear();
  s->stream->Cancel();
  // Bad bytes condemn the node, not just this connection to it.
  if (code == absl::StatusCode::kDataLoss) {
    for (auto& other : sources_) {
      if (!other->dead && other->conn->address() == s->conn->address()) {
        Demote(other.get(), code, s->why);
      }
    }
  }
  // (a stream the user's interrupt cancelled is not the node's fault)
  const bool interrupted = opts_.cancel != nullptr && opts_.cancel->cancelled();
  if (!stop_ && !said && !interrupted) {
    std::string line = StrCat("not using node ", s->conn->address(), " any more: ", s->why);
    if (opts_.log) {
      opts_.log(line);
    } else {
      std::fprintf(stderr, "cairn: %s\n", line.c_str());
    }
  }
  WakeAll();
}

bool Fetcher::TakeBatch(Source* s, std::vector<uint64_t>* batch) {
  if (s->dead || stop_ || s->reader_done || !fatal_.ok()) return false;
  size_t bytes = 0;
  int scanned = 0;
  // Until its rate is known, a source holds at most an equal share of the
  // work: which writer thread the scheduler wakes first must not decide that
  // one connection takes a whole small fetch and a peer none of it.
  size_t max_owed = SIZE_MAX;
  if (s->rate_ewma == 0) {
    size_t live = 0, outstanding = queue_.size();
    for (const auto& o : sources_) {
      if (o->dead) continue;
      ++live;
      outstanding += o->owed.size();
    }
    max_owed = std::max<size_t>(1, (outstanding + live - 1) / std::max<size_t>(live, 1));
  }
  // Asks in batches: while this node owes chunks, the next request waits
  // until the window has room for a quarter of it (at most a full request),
  // rather than following each chunk that arrives with a request for one
  // more (four chunks a request on loopback: every request costs a message,
  // a wake-up and a response on both sides).
  if (!s->owed.empty() && queue_.size() >= static_cast<size_t>(kChunksPerMessage)) {
    const size_t room = s->window > s->owed_bytes ? s->window - s->owed_bytes : 0;
    if (room < std::min(kBytesPerMessage, s->window / 4)) return false;
  }
  for (auto it = queue_.begin();
       it != queue_.end() && batch->size() < kChunksPerMessage && s->owed.size() < max_owed &&
       bytes < kBytesPerMessage && scanned < kMaxScan;
       ++scanned) {
    uint64_t index = *it;
    Item* item = ItemAt(index);
    if (item == nullptr || item->done) {
      it = queue_.erase(it);
      continue;
    }
    if ((item->missing | item->owners) & s->bit) {
      ++it;
      continue;
    }
    size_t len = item->length;
    bool idle = s->owed.empty() && batch->empty();
    if (!idle && s->owed_bytes + len > s->window) break;
    // The chunk the caller waits for is always allowed, so memory never
    // deadlocks the fetch.
    if (index != base_ && owed_bytes_ + buffered_bytes_ + len > InFlightCap()) break;
    if (s->owed.empty()) {
      auto now = opts_.clock->SteadyNow();
      s->last_byte = s->rate_start = s->sample_start = now;
      s->rate_bytes = s->sample_bytes = 0;
    }
    if (item->owners == 0) item->asked = opts_.clock->SteadyNow();
    item->owners |= s->bit;
    s->owed.push_back({index, item->digest, item->length, opts_.clock->SteadyNow(), s->owed_bytes});
    s->owed_bytes += len;
    owed_bytes_ += len;
    peak_in_flight_ = std::max(peak_in_flight_, owed_bytes_ + buffered_bytes_);
    bytes += len;
    batch->push_back(index);
    it = queue_.erase(it);
  }
  // Endgame: nothing left to hand out, yet this node is idle while others
  // still owe chunks. Ask it for those too (at most two copies in flight);
  // the first verified copy wins. Without this, the slowest connection's
  // share sets the finish time.
  if (batch->empty() && s->owed.empty() && queue_.empty()) {
    const auto late = opts_.clock->SteadyNow() - std::chrono::milliseconds(opts_.endgame_after_ms);
    int looked = 0;
    for (uint64_t index = base_; index < base_ + items_.size() && looked < kMaxScan &&
                                 batch->size() < kChunksPerMessage && bytes < kBytesPerMessage;
         ++index, ++looked) {
      Item* item = ItemAt(index);
      if (item->done || item->owners == 0 || ((item->missing | item->owners) & s->bit)) continue;
      if (std::popcount(item->owners) >= 2 || item->asked > late) continue;
      if (s->owed.empty()) {
        auto now = opts_.clock->SteadyNow();
        s->last_byte = s->rate_start = s->sample_start = now;
        s->rate_bytes = s->sample_bytes = 0;
      }
      item->owners |= s->bit;
      s->owed.push_back(
          {index, item->digest, item->length, opts_.clock->SteadyNow(), s->owed_bytes});
      s->owed_bytes += item->length;
      owed_bytes_ += item->length;
      peak_in_flight_ = std::max(peak_in_flight_, owed_bytes_ + buffered_bytes_);
      bytes += item->length;
      batch->push_back(index);
    }
  }
  return !batch->empty();
}

void Fetcher::WriteLoop(Source* s) {
  for (;;) {
    cairn::v1::GetChunksRequest req;
    size_t asked = 0;
    {
      absl::MutexLock l(&mu_);
      std::vector<uint64_t> batch;
      while (!(stop_ || s->dead || s->reader_done || TakeBatch(s, &batch))) writers_cv_.Wait(&mu_);
      if (batch.empty()) break;
      asked = batch.size();
      for (uint64_t index : batch) req.add_digests(std::string(DigestBytes(ItemAt(index)->digest)));
    }
    if (!s->stream->Ask(req)) break;
    // The round trip counts from here: the first Ask on a stream also waits
    // for its connection's handshakes.
    absl::MutexLock l(&mu_);
    const auto now = opts_.clock->SteadyNow();
    // This request's chunks are the last `asked` owed (some may have arrived).
    size_t k = 0;
    for (auto it = s->owed.rbegin(); it != s->owed.rend() && k < asked; ++it, ++k) it->asked = now;
  }
  bool graceful;
  {
    absl::MutexLock l(&mu_);
    graceful = !s->dead && !s->reader_done;
  }
  if (graceful) s->stream->DoneAsking();
  {
    absl::MutexLock l(&mu_);
    s->writer_done = true;
  }
  WakeAll();
}

void Fetcher::ReadLoop(Source* s) {
  cairn::v1::ChunkData c;
  std::string why;
  while (why.empty() && s->stream->Next(&c)) {
    Source::Owed o;
    {
      absl::MutexLock l(&mu_);
      if (s->dead) break;
      if (s->owed.empty()) {
        why = "sent more chunks than it was asked for";
        break;
      }
      o = s->owed.front();
    }
    if (c.digest() != DigestBytes(o.digest)) {
      why = "answered with a chunk it was not asked for";
      break;
    }
    if (c.missing()) {
      absl::MutexLock l(&mu_);
      if (s->dead) break;
      s->owed.pop_front();
      s->owed_bytes -= o.length;
      owed_bytes_ -= o.length;
      s->last_byte = opts_.clock->SteadyNow();
      if (Item* it = ItemAt(o.index)) it->missing |= s->bit;
      Release(s, o.index);
      WakeAll();
      continue;
    }
    if (c.data().size() != o.length) {
      why = StrCat("sent ", c.data().size(), " bytes for a chunk of ", o.length);
      break;
    }
    // Hash here, on this node's thread, so several nodes hash in parallel.
    if (Sha256Of(c.data()) != o.digest) {
      why = "served corrupt bytes for chunk " + DigestName(o.digest);
      break;
    }
    auto now = opts_.clock->SteadyNow();
    absl::MutexLock l(&mu_);
    if (s->dead) break;
    s->owed.pop_front();
    s->owed_bytes -= o.length;
    owed_bytes_ -= o.length;
    s->last_byte = s->last_chunk = now;
    s->rate_bytes += o.length;
    s->sample_bytes += o.length;
    const size_t max_window = std::max(opts_.window_bytes, kMinWindow);
    if (s->rate_ewma == 0) s->window = std::min(max_window, s->window + o.length);
    double dt = std::chrono::duration<double>(now - s->sample_start).count();
    // The path's round trip: the shortest of a TCP handshake's time (the
    // probe) and the time from asking (the request handed to the
    // connection) to having a chunk asked for while the stream owed
    // nothing. Chunks asked behind others also wait for those (the window's
    // own queue), so they would feed on the window and grow it; the first
    // chunk on a fresh connection also waits out TCP's slow start and
    // HTTP/2's first flow-control window (1.2-1.9 s on a 300 ms path).
    if (o.ahead == 0) {
      s->delay = std::min(s->delay, std::chrono::duration<double>(now - o.asked).count());
    }
    // The first rate sample comes after two round trips (at least 2 ms) or
    // a first window's worth of chunks, whichever is first, so that slow
    // start does not run on for a quarter second on a short path (the first
    // chunk's time includes the connection's handshakes); later ones every
    // four round trips, between 20 ms and 250 ms.
    const bool first = s->rate_ewma == 0;
    const double period =
        first ? std::max(0.002, 2 * s->delay) : std::clamp(4 * s->delay, 0.02, 0.25);
    if (dt > 0 && (dt >= period || (first && s->sample_bytes >= kMinWindow))) {
      double rate = s->sample_bytes / dt;
      s->rate_ewma = s->rate_ewma == 0 ? rate : 0.6 * s->rate_ewma + 0.4 * rate;
      // Ten times the bandwidth-delay product this node shows (its rate
      // times its round trip, above). Chunks reach us in order, so every
      // lost packet holds back what follows it for a round trip or more,
      // and at 2 % loss on a 300 ms path repairs overlap all the time: with
      // two BDPs a pull over such a link took 0.94x curl's time and a fresh
      // follower's replication about 0.76x (at ten, 1.03x and 0.90x).
      // Little enough that a slow node does not sit on chunks the others
      // could have sent and that a cut pull loses little in flight; a 2 MiB
      // floor keeps a few requests queued on short paths.
      const double probed = CachedRoundTrip(s->conn->address());
      if (probed > 0) s->delay = std::min(s->delay, probed);
      // An unknown round trip (no probe answer, no clean chunk) gives the
      // floor; computed in double so that no rate can overflow the cast.
      const double rtt = s->delay < 1e9 ? s->delay : 0;
      s->window =
          static_cast<size_t>(std::clamp(s->rate_ewma * 10 * rtt, static_cast<double>(kMinWindow),
                                         static_cast<double>(max_window)));
      s->sample_start = now;
      s->sample_bytes = 0;
    }
    if (Item* it = ItemAt(o.index)) {
      it->owners &= ~s->bit;
      if (!it->done) {  // the first verified copy wins; only it counts
        it->done = true;
        it->data = std::move(*c.mutable_data());
        buffered_bytes_ += o.length;
        s->bytes += o.length;
        s->chunks++;
      }
    }
    // Wake the others only when one of them can act on it (a wake-up costs
    // a system call on each side): the caller when this is the chunk it
    // waits for, this node's writer when its window has room for a batch
    // (TakeBatch), idle writers when nothing is left to hand out (the
    // endgame). Nothing else changes for them.
    const size_t room = s->window > s->owed_bytes ? s->window - s->owed_bytes : 0;
    if (o.index == base_) cv_.SignalAll();
    if (queue_.empty() || room >= std::min(kBytesPerMessage, s->window / 4)) {
      writers_cv_.SignalAll();
    }
  }
  {
    absl::MutexLock l(&mu_);
    if (!why.empty()) Demote(s, absl::StatusCode::kDataLoss, why);
    s->reader_done = true;
    WakeAll();
    // Finish() may only run once the writer is done with the stream.
    while (!s->writer_done) cv_.Wait(&mu_);
  }
  absl::Status st = s->stream->Finish();
  absl::MutexLock l(&mu_);
  if (!stop_) {
    Demote(s, absl::StatusCode::kUnavailable,
           st.ok() ? std::string("ended the chunk stream early") : std::string(st.message()));
  }
  WakeAll();
}

void Fetcher::Monitor(SteadyTime now) {
  // The minimum rate is a node's, not a connection's: its live streams share
  // it (four streams over one thin link each carry a quarter), and a node
  // stalls only when none of its streams moves (one stream of a loss-based
  // TCP sits out retransmission timeouts while the others carry on).
  struct NodeView {
    int live = 0;
    SteadyTime last_chunk;
  };
  absl::flat_hash_map<std::string, NodeView> nodes;
  for (auto& s : sources_) {
    if (s->dead) continue;
    NodeView& n = nodes[std::string(s->conn->address())];
    n.live++;
    if (!s->owed.empty()) n.last_chunk = std::max(n.last_chunk, s->last_byte);
  }
  for (auto& s : sources_) {
    if (s->dead || s->owed.empty()) continue;
    const NodeView& node = nodes[std::string(s->conn->address())];
    const double min_rate = std::max<double>(1.0, double(opts_.min_rate) / std::max(1, node.live));
    // A chunk arrives whole, so a stream busy with a large chunk shows no
    // progress until its last byte: allow the head chunk its time at the
    // node's minimum rate, up to twice the stall time, before calling it a
    // stall.
    const double allowance =
        opts_.stall_seconds +
        std::min<double>(opts_.stall_seconds,
                         s->owed.front().length / std::max<double>(1.0, double(opts_.min_rate)));
    double since_byte = std::chrono::duration<double>(now - s->last_byte).count();
    double node_since = std::chrono::duration<double>(now - node.last_chunk).count();
    if (since_byte > allowance && node_since > allowance) {
      Demote(s.get(), absl::StatusCode::kDeadlineExceeded,
             StrCat("stalled: no chunk for ", static_cast<int>(since_byte), "s"));
      continue;
    }
    double window = std::chrono::duration<double>(now - s->rate_start).count();
    if (window >= std::max<double>(opts_.rate_seconds, allowance)) {
      uint64_t rate = static_cast<uint64_t>(s->rate_bytes / window);
      if (rate < min_rate) {
        Demote(s.get(), absl::StatusCode::kDeadlineExceeded,
               StrCat("too slow: ", rate, " bytes/s over ", static_cast<int>(window),
                      "s, below the minimum of ", opts_.min_rate, " bytes/s per node"));
        continue;
      }
      s->rate_start = now;
      s->rate_bytes = 0;
    }
  }
  // Idle writers re-check for endgame work as chunks grow late.
  WakeAll();
  // The head chunk is late: let a stream that is idle, or that delivered
  // since the head was asked, race the one that owes it. Everything behind
  // the head waits for it (a kill then loses all of it): over a lossy link
  // a stream whose handshake lost a packet held a pull's first chunk for
  // 9 s while the other stream fetched a whole window ahead.
  Item& head = items_.front();
  if (!head.done && head.owners != 0 && !queue_.contains(base_) &&
      now - head_since_ > std::chrono::milliseconds(opts_.duplicate_after_ms)) {
    for (auto& s : sources_) {
      const bool moving = s->owed.empty() || s->last_chunk > head.asked;
      if (!s->dead && moving && std::popcount(head.owners) < 2 &&
          !((head.owners | head.missing) & s->bit)) {
        queue_.insert(base_);
        WakeAll();
        break;
      }
    }
  }
}

absl::Status Fetcher::NoneCanServe(const std::string& what) const {
  std::vector<std::string> why;  // once per node and reason (a node has several streams)
  for (const auto& s : sources_) {
    std::string line =
        StrCat(s->conn->address(), ": ", s->dead ? s->why : std::string("does not have it"));
    if (std::find(why.begin(), why.end(), line) == why.end()) why.push_back(std::move(line));
  }
  std::string msg = StrCat("no node can serve ", what, " (", StrJoin(why, "; "), ")");
  if (Live() > 0) return absl::NotFoundError(msg);
  // One cause for all (say, the only node served corrupt bytes): say which.
  absl::StatusCode code = sources_.empty() ? absl::StatusCode::kUnavailable : sources_[0]->code;
  for (const auto& s : sources_) {
    if (s->code != code) code = absl::StatusCode::kUnavailable;
  }
  return absl::Status(code, msg);
}

absl::Status Fetcher::NoneLeft(const std::string& what) const {
  absl::MutexLock l(&mu_);
  return NoneCanServe(what);
}

absl::Status Fetcher::Next(std::string* data) {
  absl::MutexLock l(&mu_);
  for (;;) {
    if (!fatal_.ok()) return fatal_;
    if (items_.empty()) return absl::InternalError("Fetcher::Next with nothing queued");
    Item& head = items_.front();
    if (head.done) {
      const uint32_t length = head.length;
      *data = std::move(head.data);
      buffered_bytes_ -= length;
      items_.pop_front();
      ++base_;
      head_since_ = opts_.clock->SteadyNow();
      // Writers held back by the memory bound may go on once a batch fits
      // again; every 16 chunks in any case (the endgame looks at the head).
      const size_t used = owed_bytes_ + buffered_bytes_;
      const size_t cap = InFlightCap();
      const size_t room = cap > used ? cap - used : 0;
      if ((room >= kBytesPerMessage && room - length < kBytesPerMessage) || base_ % 16 == 0) {
        writers_cv_.SignalAll();
      }
      return absl::OkStatus();
    }
    bool someone = false;
    for (const auto& s : sources_) someone |= !s->dead && !(head.missing & s->bit);
    if (!someone) return NoneCanServe("chunk " + DigestName(head.digest));
    Monitor(opts_.clock->SteadyNow());
    cv_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
  }
}

}  // namespace cairn
