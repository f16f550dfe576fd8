// A node's change feed: every release and tag move it accepted, in order
// (kFeed), with its head and tail in kState. Appends ride in the commit's
// own batch, so the feed never names what the node does not hold.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cairn/store.h"
#include "cairn/v1/service.pb.h"

namespace cairn {

// Thread-safe. Appends must be serialized by the caller (one committer at a
// time); readers never wait for a commit's I/O: the lock guarding head and
// tail is never held across a store call.
class ChangeFeed {
 public:
  // Reads head and tail. A read error is returned, never taken as an empty
  // feed (the next commit would rewrite sequence 1 and the feed would go
  // backwards for every follower).
  static absl::StatusOr<std::unique_ptr<ChangeFeed>> Load(MetaStore* meta, uint64_t retain);

  uint64_t head() const;
  uint64_t tail() const;

  // An append in the making: Prepare adds the event and the trim to `ops`;
  // once the batch is durable, Publish makes it visible.
  struct Append {
    uint64_t seq = 0;
    uint64_t tail = 0;
  };
  Append Prepare(cairn::v1::FeedEvent ev, std::vector<WriteOp>* ops) const;
  void Publish(const Append& a);

  // Events after `after`, at most `max` (0: 1000, capped at 1000), into
  // *out (head, covered, events). `keep` may drop or edit an event; the
  // cursor still moves past a dropped one. OutOfRange when `after` is past
  // the head; FailedPrecondition "snapshot" when events after it were
  // trimmed (the caller sends a snapshot instead).
  absl::Status Read(uint64_t after, uint32_t max,
                    const std::function<bool(cairn::v1::FeedEvent*)>& keep,
                    cairn::v1::FeedResponse* out) const;
  // True when the events right after `after` are trimmed.
  bool NeedsSnapshot(uint64_t after) const;

  // Blocks until the head passes `after` or `timeout` passes; returns the head.
  uint64_t WaitPast(uint64_t after, absl::Duration timeout) const;

 private:
  ChangeFeed(MetaStore* meta, uint64_t retain) : meta_(meta), retain_(retain) {}
  MetaStore* const meta_;
  const uint64_t retain_;
  mutable absl::Mutex mu_;
  uint64_t head_ ABSL_GUARDED_BY(mu_) = 0;  // last seq written
  uint64_t tail_ ABSL_GUARDED_BY(mu_) = 1;  // oldest seq kept
};

}  // namespace cairn
