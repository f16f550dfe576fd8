// Fetches chunks from several nodes at once, in the order the caller needs
// them, and never hands out a byte whose SHA-256 did not match.
//
// Each node gets one GetMany stream with a reader and a writer thread. Work is
// pulled, not pushed: a node's writer takes the next unassigned chunks when
// its window has room, and the window follows the node's measured throughput
// (ten times its bandwidth-delay product, 2 MiB at least), so faster nodes
// carry more of the load. A node
// that errors, stalls, falls below the minimum rate, sends more than it was
// asked or serves a chunk whose hash is wrong is demoted for the rest of the
// fetch, and its outstanding chunks go back to the others. When the chunk the
// caller waits for is held up by a slow node, an idle node is asked for it as
// well and the first verified copy wins.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/hash.h"
#include "cairn/transport/channel.h"

namespace cairn {

struct FetchOptions {
  size_t window_bytes = 16 << 20;  // most bytes one stream may owe us (10 x its BDP, 2 MiB floor)
  size_t memory_bytes = 64 << 20;  // owed + received-but-not-consumed, all nodes
  uint64_t min_rate = 32 << 10;    // bytes/s a node owing chunks must sustain...
  int rate_seconds = 10;           // ...measured over this long
  int stall_seconds = 10;          // no byte at all for this long while owing: demoted
  int duplicate_after_ms = 1000;   // head chunk late this long: one more stream may race it
  int endgame_after_ms = 500;      // tail chunk owed this long: an idle node may race it
  // Where "not using node X any more: why" goes; default: stderr.
  std::function<void(const std::string&)> log;
  // Time for rates, stalls and lateness (not owned). Default: the real clock.
  Clock* clock = Clock::Real();
  // Once it fires, Next() returns Cancelled and the streams are cancelled
  // (not owned; may be null).
  Cancellation* cancel = nullptr;
};

class Fetcher {
 public:
  struct SourceStats {
    std::string address;
    uint64_t bytes = 0, chunks = 0;
    std::string demoted;  // why, empty while in use
    double rtt = 0;       // seconds: the shorter of a TCP handshake and a clean chunk's time
    double rate = 0;      // bytes/s, the last smoothed estimate
  };

  // `sources` (at most 64, not owned) must outlive the fetcher.
  Fetcher(std::vector<Connection*> sources, FetchOptions opts);
  ~Fetcher();
  Fetcher(const Fetcher&) = delete;
  Fetcher& operator=(const Fetcher&) = delete;

  // Queues chunks; Next() returns them in the order they were added.
  void Add(const std::vector<ChunkWant>& wants);
  // The next chunk's verified bytes. Blocks until it arrived from some node.
  // NotFound when no remaining node has it; Unavailable when every node was
  // demoted (the message says why for each); Cancelled after Cancel().
  absl::Status Next(std::string* data);

  bool Usable(size_t source) const;
  // The error for "every node was dropped" when asking for `what`, each
  // node's reason included.
  absl::Status NoneLeft(const std::string& what) const;
  std::vector<SourceStats> Stats() const;
  // The most bytes asked for, or arrived and waiting for their turn, at once:
  // what a cut could have cost.
  size_t PeakInFlight() const;

 private:
  struct Item {
    Digest digest;
    uint32_t length = 0;
    bool done = false;
    uint64_t owners = 0;   // bit per source with it outstanding
    uint64_t missing = 0;  // bit per source that said it lacks it
    SteadyTime asked;      // first handed to a node
    std::string data;
  };
  struct Source;

  void WriteLoop(Source* s);
  void ReadLoop(Source* s);
  // All under mu_.
  Item* ItemAt(uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t InFlightCap() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Demote(Source* s, absl::StatusCode code, std::string why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(Source* s, uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TakeBatch(Source* s, std::vector<uint64_t>* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Monitor(SteadyTime now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t Live() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status NoneCanServe(const std::string& what) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  FetchOptions opts_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;          // the caller (Next) and readers waiting for their writer
  absl::CondVar writers_cv_;  // writers waiting for work, room or an end
  void WakeAll() {
    cv_.SignalAll();
    writers_cv_.SignalAll();
  }
  std::vector<std::unique_ptr<Source>> sources_ ABSL_GUARDED_BY(mu_);
  std::deque<Item> items_ ABSL_GUARDED_BY(mu_);     // index base_ + i
  uint64_t base_ ABSL_GUARDED_BY(mu_) = 0;          // index of items_.front() == next to hand out
  std::set<uint64_t> queue_ ABSL_GUARDED_BY(mu_);   // indices waiting for a node
  size_t owed_bytes_ ABSL_GUARDED_BY(mu_) = 0;      // requested and not yet answered, all nodes
  size_t buffered_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // received, not yet handed out
  size_t peak_in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // most of owed_bytes_ + buffered_bytes_
  SteadyTime head_since_ ABSL_GUARDED_BY(mu_);
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int cancel_callback_ = 0;
};

}  // namespace cairn
