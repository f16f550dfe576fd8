// The chunk store as the rest of a node sees it while garbage collection
// runs. A chunk a client was told is held (Has, HasIntact: a publisher's
// missing-chunks query, a commit's check) or offered again (Put of a held
// chunk) may be named by a commit that has not happened yet: such chunks are
// remembered for at least `window` (two generations of a Bloom filter,
// turned over every `window` while no pass runs), and the sweep never removes
// one. The sweep removes under the exclusive side of the same lock the
// queries hold shared, so a query either sees a chunk gone or is seen.
// Thread-safe.
#pragma once

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/store.h"
#include "digest_bloom.h"

namespace cairn {

class GcGuardedStore final : public ChunkStoreWrapper {
 public:
  GcGuardedStore(std::unique_ptr<ChunkStore> base, Clock* clock, int64_t window_seconds)
      : ChunkStoreWrapper(base.get()),
        base_(std::move(base)),
        clock_(clock),
        window_(window_seconds),
        turned_at_(clock->NowUnix()),
        current_(kTouchedBits / 10, 0x5eed1),
        previous_(kTouchedBits / 10, 0x5eed2) {}

  absl::Status Put(const Digest& d, std::string_view data,
                   PutMode mode = PutMode::kVerify) override {
    absl::ReaderMutexLock l(&sweep_mu_);
    Touch(d);
    return target()->Put(d, data, mode);
  }
  absl::StatusOr<bool> Has(const Digest& d) override {
    absl::ReaderMutexLock l(&sweep_mu_);
    Touch(d);
    return target()->Has(d);
  }
  absl::StatusOr<bool> HasIntact(const Digest& d) override {
    absl::ReaderMutexLock l(&sweep_mu_);
    Touch(d);
    return target()->HasIntact(d);
  }

  ChunkStore* base() { return base_.get(); }

  // A query named `d` within the last window or two (or a false positive).
  bool Touched(const Digest& d) {
    absl::MutexLock l(&touch_mu_);
    return current_.MayContain(d) || previous_.MayContain(d);
  }

  // Removes those of `candidates` no query touched within the window (dry:
  // only counts them). Adds them to *removed and the touched ones to *kept;
  // returns the bytes removed.
  absl::StatusOr<uint64_t> RemoveUntouched(const std::vector<StoredChunk>& candidates, bool dry_run,
                                           uint64_t* removed, uint64_t* kept);
  // While a pass runs the generations do not turn over, so a touch from up
  // to one window before it began is still known when it sweeps.
  void BeginPass();
  void EndPass();

 private:
  // Bits per generation (4 MiB): about 1 % false positives at 3.3 million
  // chunks queried per window.
  static constexpr uint64_t kTouchedBits = uint64_t{32} << 20;
  void Touch(const Digest& d);
  // The older generation is forgotten once a window has passed since the
  // last turn (never during a pass).
  void TurnOverLocked(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(touch_mu_);

  std::unique_ptr<ChunkStore> base_;
  Clock* const clock_;
  const int64_t window_;
  absl::Mutex sweep_mu_;  // shared: queries; exclusive: removals
  absl::Mutex touch_mu_;
  int64_t turned_at_ ABSL_GUARDED_BY(touch_mu_);
  bool in_pass_ ABSL_GUARDED_BY(touch_mu_) = false;
  DigestBloom current_ ABSL_GUARDED_BY(touch_mu_);
  DigestBloom previous_ ABSL_GUARDED_BY(touch_mu_);
};

}  // namespace cairn
