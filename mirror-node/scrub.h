// The node's scrub: a background pass that re-hashes every stored chunk at a
// capped rate and checks that every visible release still has all of its
// chunks. A chunk that fails its hash is dropped from the store (never served
// again); a release that lacks chunks is refetched from the upstreams and
// peers through the verified path. Chunks are verified when they enter a node
// (upload, replication, import); the scrub is what finds the disk rotting
// under them afterwards, before a client is refused.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "cairn/clock.h"
#include "cairn/repository.h"
#include "cairn/v1/service.pb.h"

namespace cairn::node {

struct ScrubOptions {
  // The cap on chunk bytes re-hashed per second by the background scrub;
  // 0: no background scrub (a pass asked for with RunNow still runs, at this
  // cap when set, unpaced when 0). Default: 32 MiB/s.
  uint64_t bytes_per_second = 32ULL << 20;
  // A pass starts this long after the previous one started. Default: 7 days.
  int64_t interval_seconds = 7 * 86400;
  // The first wait before releases still lacking chunks are looked at again
  // (and their repair asked for again). Default: 60.
  int64_t repair_retry_seconds = 60;
  // Asks for the chunks a release lacks from upstream (OnDemand::Repair);
  // empty: the node has no upstream, and damage is only reported.
  // An error (no upstream reachable) is counted, shown as the last error, and
  // the releases still lacking chunks are checked again after a backoff
  // (repair_retry_seconds, doubling to an hour) until they are whole.
  std::function<absl::Status(const std::string& name, const std::string& manifest_digest)> repair;
};

// What one pass found.
struct ScrubReport {
  uint64_t chunks_checked = 0, bytes_checked = 0, chunks_bad = 0;
  uint64_t chunks_missing = 0, releases_damaged = 0, repairs_started = 0;
  bool complete = false;  // false: stopped before the end
};

class Scrubber {
 public:
  // `repo` must outlive the scrubber; time runs on repo->clock().
  Scrubber(Repository* repo, ScrubOptions opts);
  ~Scrubber();  // Stop()
  Scrubber(const Scrubber&) = delete;
  Scrubber& operator=(const Scrubber&) = delete;

  // Starts the background thread: a pass left unfinished by a restart
  // resumes at once; otherwise one starts when the interval since the last
  // has passed (at once on a node never scrubbed). Without a rate, the
  // thread runs only the passes RunNow asks for.
  void Start();
  // Ends a pass in progress (its place is kept) and joins the thread.
  // Idempotent.
  void Stop();
  // Asks the background thread for a pass now (the node's SIGUSR1, `cairn-node
  // scrub --now`). A pass already running is not restarted.
  void RunNow();
  // One whole pass on the calling thread (the offline `cairn-node scrub`),
  // paced at the cap when `paced`. Stopped early by Stop().
  ScrubReport RunPass(bool paced);

  cairn::v1::ScrubStatus Status() const;
  // Passes ended since the start (tests wait on it).
  uint64_t passes() const;

 private:
  void Loop();
  // The releases-only check a repair left pending asks for: no re-hash.
  void Recheck();
  absl::Status Chunks(bool paced, ScrubReport* r);
  absl::Status Releases(ScrubReport* r);
  absl::Status CheckRelease(const std::string& name, const std::string& version,
                            const std::string& digest, ScrubReport* r);

  Repository* const repo_;
  const ScrubOptions opts_;
  Clock* const clock_;
  Cancellation stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::shared_ptr<Cancellation> wake_ ABSL_GUARDED_BY(mu_);  // cancelled by RunNow
  bool now_ ABSL_GUARDED_BY(mu_) = false;
  cairn::v1::ScrubStatus status_ ABSL_GUARDED_BY(mu_);
  // While releases lack chunks (and there is an upstream to ask): when to
  // look again, and the backoff after that.
  std::optional<SteadyTime> recheck_at_ ABSL_GUARDED_BY(mu_);
  SteadyDuration recheck_backoff_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::node
