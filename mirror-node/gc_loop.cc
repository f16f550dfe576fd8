#include "gc_loop.h"

#include <spdlog/spdlog.h>

#include "cairn/strings.h"

namespace cairn::node {

GcLoop::GcLoop(Repository* repo, GcLoopOptions opts) : repo_(repo), opts_(std::move(opts)) {
  absl::MutexLock l(&mu_);
  status_.set_interval_seconds(opts_.interval_seconds);
}

GcLoop::~GcLoop() { Stop(); }

void GcLoop::Start() {
  if (opts_.interval_seconds <= 0 || thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void GcLoop::Stop() {
  stop_.Cancel();
  if (thread_.joinable()) thread_.join();
}

void GcLoop::Loop() {
  Clock* clock = repo_->clock();
  while (clock->SleepFor(std::chrono::seconds(opts_.interval_seconds), &stop_)) {
    auto r = RunPass(/*dry_run=*/false);
    if (!r.ok() && !absl::IsFailedPrecondition(r.status())) {
      spdlog::error("garbage collection: {}", r.status().ToString());
    }
  }
}

absl::StatusOr<GcReport> GcLoop::RunPass(bool dry_run) {
  GcOptions o = opts_.gc;
  o.dry_run = dry_run;
  spdlog::info("garbage collection: {}pass started", dry_run ? "dry " : "");
  if (!dry_run) {
    absl::MutexLock l(&mu_);
    status_.set_running(true);
  }
  auto r = repo_->CollectGarbage(o, &stop_);
  if (dry_run) return r;
  absl::MutexLock l(&mu_);
  status_.set_running(false);
  if (!r.ok()) {
    if (!absl::IsFailedPrecondition(r.status())) status_.set_last_error(r.status().ToString());
    return r;
  }
  if (!r->complete) return r;
  spdlog::info("garbage collection: {}", DescribeGc(*r, false));
  status_.set_passes(status_.passes() + 1);
  status_.set_last_pass_unix(repo_->clock()->NowUnix());
  status_.set_last_seconds(r->seconds);
  status_.set_chunks(r->chunks);
  status_.set_chunks_removed(r->chunks_removed);
  status_.set_bytes_removed(r->bytes_removed);
  status_.set_chunks_in_grace(r->chunks_in_grace);
  status_.set_chunks_touched(r->chunks_touched);
  status_.set_staged_dropped(r->staged_dropped);
  status_.set_pending_dropped(r->pending_dropped);
  status_.set_packs_rewritten(r->compact.packs_rewritten);
  status_.set_bytes_freed(r->compact.bytes_freed);
  status_.set_pack_files(r->compact.files);
  status_.set_disk_bytes(r->compact.disk_bytes);
  status_.set_live_bytes(r->compact.live_bytes);
  status_.set_chunks_removed_total(status_.chunks_removed_total() + r->chunks_removed);
  status_.set_bytes_removed_total(status_.bytes_removed_total() + r->bytes_removed);
  status_.clear_last_error();
  return r;
}

cairn::v1::GcStatus GcLoop::Status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

std::string DescribeGc(const GcReport& r, bool dry_run) {
  std::string out = StrCat(
      dry_run ? "would remove " : "removed ", r.chunks_removed, " of ", r.chunks, " chunks (",
      r.bytes_removed, " bytes); kept ", r.chunks_in_grace, " in their grace period and ",
      r.chunks_touched, " a client was told of lately; ", dry_run ? "would drop " : "dropped ",
      r.staged_dropped, " stale staged lists and ", r.pending_dropped, " expired pending releases");
  if (!dry_run) {
    out += StrCat("; compaction rewrote ", r.compact.packs_rewritten, " packs (",
                  r.compact.bytes_freed, " bytes freed); the store holds ", r.compact.live_bytes,
                  " live bytes in ", r.compact.files, " pack files (", r.compact.disk_bytes,
                  " bytes on disk)");
  }
  return StrCat(out, "; ", r.seconds, " s");
}

}  // namespace cairn::node
