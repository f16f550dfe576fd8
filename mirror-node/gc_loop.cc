#include "gc_loop.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "cairn/strings.h"

namespace cairn::node {

namespace {
// Node state: when the last background or asked-for pass ended (unix
// seconds), so the schedule survives restarts.
constexpr char kLastPassKey[] = "gc_last_pass_unix";

// For its lifetime the calling thread runs at the lowest CPU priority (nice
// 19): a pass takes the CPU pulls and replication leave. Linux applies it
// per thread. (Not the idle I/O class: a pass's synced index writes would
// wait behind a pull's writeback.)
class Background {
 public:
  Background() : tid_(static_cast<pid_t>(::syscall(SYS_gettid))) {
    errno = 0;
    nice_ = ::getpriority(PRIO_PROCESS, tid_);
    nice_known_ = errno == 0 && ::setpriority(PRIO_PROCESS, tid_, 19) == 0;
  }
  ~Background() {
    if (nice_known_) ::setpriority(PRIO_PROCESS, tid_, nice_);
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

 private:
  const pid_t tid_;
  int nice_ = 0;
  bool nice_known_ = false;
};

}  // namespace

GcLoop::GcLoop(Repository* repo, GcLoopOptions opts) : repo_(repo), opts_(std::move(opts)) {
  absl::MutexLock l(&mu_);
  status_.set_interval_seconds(opts_.interval_seconds);
  status_.set_last_pass_unix(static_cast<int64_t>(repo_->GetCursor(kLastPassKey).value_or(0)));
}

GcLoop::~GcLoop() { Stop(); }

void GcLoop::Start() {
  if (opts_.answer_seconds > 0 && !answers_.joinable()) {
    answers_ = std::thread([this] { AnswerLoop(); });
  }
  if (opts_.interval_seconds <= 0 || thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void GcLoop::Stop() {
  stop_.Cancel();
  if (thread_.joinable()) thread_.join();
  if (answers_.joinable()) answers_.join();
  absl::MutexLock l(&soon_mu_);
  if (soon_.joinable()) soon_.join();
}

// Two session lifetimes (GcGuardedStore's two generations) and a minute.
constexpr std::chrono::seconds kTouchedChunksKept(2 * 3600 + 60);
constexpr std::chrono::seconds kSoonSpacing(600);

void GcLoop::RunSoon() {
  absl::MutexLock l(&soon_mu_);
  if (stop_.cancelled() || soon_running_.exchange(true)) return;
  if (soon_.joinable()) soon_.join();  // the last one ended
  soon_ = std::thread([this] {
    // At most one such pass per kSoonSpacing: clients churning pull-through
    // on a full node (each fetch evicting) cannot keep it walking its store.
    Clock* clock = repo_->clock();
    if (last_soon_ != SteadyTime{} && !clock->SleepUntil(last_soon_ + kSoonSpacing, &stop_)) {
      soon_running_ = false;
      return;
    }
    last_soon_ = clock->SteadyNow();
    // Chunks a client was told of lately (a follower's or this node's own
    // replication asking what it holds) stay for up to two session lifetimes:
    // one more pass then frees them.
    for (int pass = 0; pass < 2; ++pass) {
      auto r = RunPass(/*dry_run=*/false);
      if (!r.ok() && !absl::IsFailedPrecondition(r.status())) {
        spdlog::warn("garbage collection after an eviction: {}", r.status().ToString());
      }
      if (!r.ok() || r->chunks_touched == 0) break;
      if (!repo_->clock()->SleepFor(kTouchedChunksKept, &stop_)) break;
    }
    soon_running_ = false;
  });
}

// Passes come an interval after the last one ended, counted from the node's
// first start when there was none, across restarts (a node restarted daily
// still collects). A failed pass is tried again after an hour at most.
void GcLoop::Loop() {
  Clock* clock = repo_->clock();
  auto last = repo_->GetCursor(kLastPassKey);
  if (last.ok() && *last == 0) {
    repo_->SetCursor(kLastPassKey, static_cast<uint64_t>(clock->NowUnix())).IgnoreError();
  }
  for (;;) {
    const int64_t ended = static_cast<int64_t>(repo_->GetCursor(kLastPassKey).value_or(0));
    int64_t wait = ended + opts_.interval_seconds - clock->NowUnix();
    wait = std::clamp<int64_t>(wait, 0, opts_.interval_seconds);
    if (!clock->SleepFor(std::chrono::seconds(wait), &stop_)) return;
    auto r = RunPass(/*dry_run=*/false);
    if (stop_.cancelled()) return;
    if (!r.ok() || !r->complete) {
      if (!absl::IsFailedPrecondition(r.status())) {
        spdlog::error("garbage collection: {}", r.status().ToString());
      }
      const int64_t retry = std::min<int64_t>(opts_.interval_seconds, 3600);
      if (!clock->SleepFor(std::chrono::seconds(retry), &stop_)) return;
    }
  }
}

void GcLoop::AnswerLoop() {
  std::string last_error;
  while (repo_->clock()->SleepFor(std::chrono::seconds(opts_.answer_seconds), &stop_)) {
    absl::Status st = repo_->AnswerCollection();
    std::string error = st.ok() ? "" : st.ToString();
    if (error != last_error && !error.empty()) {
      spdlog::warn("garbage collection: cannot answer the collector's round: {}", error);
    }
    last_error = error;
  }
}

absl::StatusOr<GcReport> GcLoop::RunPass(bool dry_run) {
  GcOptions o = opts_.gc;
  o.dry_run = dry_run;
  spdlog::info("garbage collection: {}pass started", dry_run ? "dry " : "");
  Background background;
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
  absl::Status kept = repo_->SetCursor(kLastPassKey, uint64_t(status_.last_pass_unix()));
  if (!kept.ok()) spdlog::warn("garbage collection: cannot record the pass: {}", kept.ToString());
  status_.set_last_seconds(r->seconds);
  status_.set_chunks(r->chunks);
  // Over a shared bucket what was found is not removed yet: the bytes a
  // round's end deleted count.
  const uint64_t chunks_removed = r->shared_store ? 0 : r->chunks_removed;
  const uint64_t bytes_removed = r->shared_store ? r->compact.bytes_freed : r->bytes_removed;
  status_.set_chunks_removed(chunks_removed);
  status_.set_bytes_removed(bytes_removed);
  status_.set_chunks_in_grace(r->chunks_in_grace);
  status_.set_chunks_touched(r->chunks_touched);
  status_.set_staged_dropped(r->staged_dropped);
  status_.set_pending_dropped(r->pending_dropped);
  status_.set_withheld_dropped(r->withheld_dropped);
  status_.set_yanked_dropped(r->yanked_dropped);
  status_.set_packs_rewritten(r->compact.packs_rewritten);
  status_.set_bytes_freed(r->compact.bytes_freed);
  status_.set_pack_files(r->compact.files);
  status_.set_disk_bytes(r->compact.disk_bytes);
  status_.set_live_bytes(r->compact.live_bytes);
  status_.set_chunks_removed_total(status_.chunks_removed_total() + chunks_removed);
  status_.set_bytes_removed_total(status_.bytes_removed_total() + bytes_removed);
  status_.clear_last_error();
  return r;
}

cairn::v1::GcStatus GcLoop::Status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

std::string DescribeGc(const GcReport& r, bool dry_run) {
  // Over a shared bucket the garbage found goes through collection rounds.
  std::string out =
      StrCat(r.shared_store ? "found "
             : dry_run      ? "would remove "
                            : "removed ",
             r.chunks_removed, " of ", r.chunks,
             r.shared_store ? " chunks no release here needs" : " chunks", " (", r.bytes_removed,
             " bytes); kept ", r.chunks_in_grace, " in their grace period and ", r.chunks_touched,
             " a client was told of lately; ", dry_run ? "would drop " : "dropped ",
             r.staged_dropped, " stale staged lists, ", r.pending_dropped,
             " expired pending releases, ", r.withheld_dropped, " releases withheld and ",
             r.yanked_dropped, " yanked past retention (", r.lists_dropped, " chunk lists)");
  if (!dry_run && !r.shared_store) {
    if (r.compact.packs_skipped > 0) {
      out += StrCat("; compaction skipped ", r.compact.packs_skipped,
                    " packs (too little free space to copy their live chunks)");
    }
    out += StrCat("; compaction rewrote ", r.compact.packs_rewritten, " packs (",
                  r.compact.bytes_freed, " bytes freed); the store holds ", r.compact.live_bytes,
                  " live bytes in ", r.compact.files, " pack files (", r.compact.disk_bytes,
                  " bytes on disk)");
  }
  if (!r.compact.shared.empty()) out += "; " + r.compact.shared;
  if (r.shared_store && dry_run) out += "; a dry pass neither opens nor ends a collection round";
  return StrCat(out, "; ", r.seconds, " s");
}

}  // namespace cairn::node
