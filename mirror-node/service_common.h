// What every service of cairn-node shares: the unary helper that runs work
// on the bounded pool, per-peer stream limits, and the refusal reactors.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "stream_watchdog.h"
#include "work_pool.h"

namespace cairn::node {

inline const grpc::Status kBusy(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "node busy: too much work queued, retry shortly");

// Runs `fn` (returning absl::StatusOr<Resp>) on the work pool and finishes the
// unary call with its result. `fn` must capture by value: it runs after the
// handler returned (the request and response live until Finish).
template <typename Resp, typename Fn>
grpc::ServerUnaryReactor* Unary(WorkPool* pool, grpc::CallbackServerContext* ctx, Resp* resp,
                                Fn fn) {
  auto* r = ctx->DefaultReactor();
  bool queued = pool->TrySubmit([r, resp, fn = std::move(fn)] {
    auto result = fn();
    if (result.ok()) {
      *resp = std::move(*result);
      r->Finish(grpc::Status::OK);
    } else {
      r->Finish(ToGrpc(result.status()));
    }
  });
  if (!queued) r->Finish(kBusy);
  return r;
}

// The client's address without its port ("ipv4:10.0.0.1"): what per-peer
// limits count.
inline std::string PeerAddress(const std::string& peer) {
  size_t colon = peer.rfind(':');
  return colon == std::string::npos || colon < 5 ? peer : peer.substr(0, colon);
}

// Concurrent streams per client address. Thread-safe.
class PeerStreams {
 public:
  explicit PeerStreams(int max) : max_(max) {}
  // A slot, released when the returned guard dies; nullptr when `peer` holds
  // `max` already.
  std::shared_ptr<void> Acquire(const std::string& peer) {
    std::string addr = PeerAddress(peer);
    absl::MutexLock l(&mu_);
    int& n = open_[addr];
    if (max_ > 0 && n >= max_) return nullptr;
    ++n;
    // Non-null (a null shared_ptr reads as "refused"); nothing is deleted.
    return std::shared_ptr<void>(this, [this, addr](void*) {
      absl::MutexLock l(&mu_);
      if (--open_[addr] <= 0) open_.erase(addr);
    });
  }
  // Streams open from every address.
  int Open() {
    absl::MutexLock l(&mu_);
    int n = 0;
    for (const auto& [addr, count] : open_) n += count;
    return n;
  }
  grpc::Status Refusal() const {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        StrCat("too many concurrent chunk streams from your address (limit ", max_,
                               "); retry when some finish"));
  }

 private:
  const int max_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> open_ ABSL_GUARDED_BY(mu_);
};

// How long a chunk stream (GetMany, PutChunks) may go without progress
// before the node cancels it: `idle` waiting for the client's next message,
// plus, while an answer is being written, the time its bytes take at
// `min_rate` bytes/s (a client on a thin link is slow, not idle).
struct StreamLimits {
  StreamWatchdog* watchdog;
  SteadyDuration idle;
  uint64_t min_rate = 8 << 10;  // 64 kbit/s
  SteadyDuration TimeToSend(uint64_t bytes) const {
    return std::chrono::duration_cast<SteadyDuration>(
        std::chrono::duration<double>(static_cast<double>(bytes) / min_rate));
  }
};

// Finishes a streaming call at once with `status`.
template <typename Base>
class Refused final : public Base {
 public:
  explicit Refused(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace cairn::node
