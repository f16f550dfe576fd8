#include "scrub.h"

#include <cstring>

#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

namespace {

// Node state keys (Repository cursors). The place is kept as the top bit set
// over the first 63 bits of the last digest checked: 0 means no pass is in
// progress, and a resumed pass re-checks at most the few chunks sharing them.
constexpr char kCursorKey[] = "scrub_cursor";
constexpr char kStartedKey[] = "scrub_started_unix";
constexpr char kLastFullKey[] = "scrub_last_full_pass_unix";
constexpr char kDamagedKey[] = "scrub_releases_damaged";  // found by the last whole pass
constexpr uint64_t kInPass = uint64_t{1} << 63;
constexpr size_t kBatch = 1024;
constexpr uint64_t kKeepPlaceEvery = 64;  // chunks

uint64_t PlaceOf(const Digest& d) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | d[i];
  return kInPass | (v >> 1);
}

Digest DigestAt(uint64_t place) {
  Digest d{};
  const uint64_t v = (place & ~kInPass) << 1;
  for (int i = 0; i < 8; ++i) d[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
  return d;
}

}  // namespace

Scrubber::Scrubber(Repository* repo, ScrubOptions opts)
    : repo_(repo), opts_(std::move(opts)), clock_(repo->clock()) {
  status_.set_bytes_per_second(opts_.bytes_per_second);
  auto last = repo_->GetCursor(kLastFullKey);
  if (last.ok()) status_.set_last_full_pass_unix(static_cast<int64_t>(*last));
}

Scrubber::~Scrubber() { Stop(); }

void Scrubber::Start() {
  absl::MutexLock l(&mu_);
  if (thread_.joinable() || stop_.cancelled()) return;
  wake_ = std::make_shared<Cancellation>();
  // Damage the last pass found (an offline scrub, say) is repaired at once.
  if (opts_.repair && repo_->GetCursor(kDamagedKey).value_or(0) > 0) now_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Scrubber::Stop() {
  stop_.Cancel();
  std::shared_ptr<Cancellation> wake;
  {
    absl::MutexLock l(&mu_);
    wake = wake_;
  }
  if (wake) wake->Cancel();
  if (thread_.joinable()) thread_.join();
}

void Scrubber::RunNow() {
  std::shared_ptr<Cancellation> wake;
  {
    absl::MutexLock l(&mu_);
    if (status_.running()) return;
    now_ = true;
    wake = wake_;
  }
  if (wake) wake->Cancel();
}

uint64_t Scrubber::passes() const {
  absl::MutexLock l(&mu_);
  return status_.passes();
}

cairn::v1::ScrubStatus Scrubber::Status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

void Scrubber::Loop() {
  while (!stop_.cancelled()) {
    std::shared_ptr<Cancellation> wake;
    bool now = false;
    {
      absl::MutexLock l(&mu_);
      now = now_;
      now_ = false;
      if (!now) {
        wake = std::make_shared<Cancellation>();
        wake_ = wake;
      }
      // Checked under the lock Stop() takes to cancel wake_: either Stop
      // sees this wake_ and cancels it, or this sees the stop.
      if (stop_.cancelled()) break;
    }
    if (!now) {
      // Due: a pass a restart cut short, or the interval since the last start.
      const uint64_t cursor = repo_->GetCursor(kCursorKey).value_or(0);
      const int64_t started = static_cast<int64_t>(repo_->GetCursor(kStartedKey).value_or(0));
      const bool due =
          opts_.bytes_per_second > 0 &&
          (cursor != 0 || started == 0 || clock_->NowUnix() >= started + opts_.interval_seconds);
      if (!due) {
        std::optional<SteadyTime> recheck;
        {
          absl::MutexLock l(&mu_);
          recheck = recheck_at_;
        }
        if (recheck && clock_->SteadyNow() >= *recheck) {
          Recheck();
          continue;
        }
        // Without a rate there is nothing to wait for but RunNow (and a
        // repair to look at again).
        const int64_t wait = opts_.bytes_per_second > 0
                                 ? started + opts_.interval_seconds - clock_->NowUnix()
                                 : int64_t{365} * 86400;
        SteadyTime until = clock_->SteadyNow() + std::chrono::seconds(std::max<int64_t>(wait, 0));
        if (recheck) until = std::min(until, *recheck);
        clock_->SleepUntil(until, wake.get());
        continue;  // woken by RunNow or Stop, or the time came: look again
      }
    }
    RunPass(/*paced=*/opts_.bytes_per_second > 0);
  }
}

void Scrubber::Recheck() {
  ScrubReport r;
  {
    absl::MutexLock l(&mu_);
    status_.clear_last_error();
  }
  absl::Status st = Releases(&r);
  absl::MutexLock l(&mu_);
  if (!st.ok()) status_.set_last_error(std::string(st.message()));
  // The gauges say what the last whole check found: never a zero in between.
  if (st.ok()) {
    status_.set_chunks_missing(r.chunks_missing);
    status_.set_releases_damaged(r.releases_damaged);
  }
  if (st.ok() && r.releases_damaged == 0) {
    spdlog::info("scrub: every release is whole again");
    recheck_at_.reset();
    recheck_backoff_ = std::chrono::seconds(opts_.repair_retry_seconds);
    return;
  }
  recheck_at_ = clock_->SteadyNow() + recheck_backoff_;
  recheck_backoff_ = std::min<SteadyDuration>(
      recheck_backoff_ * 2,
      std::max<SteadyDuration>(std::chrono::hours(1),
                               std::chrono::seconds(opts_.repair_retry_seconds)));
}

ScrubReport Scrubber::RunPass(bool paced) {
  ScrubReport r;
  {
    absl::MutexLock l(&mu_);
    status_.set_running(true);
    status_.clear_last_error();  // what this pass meets is said from here on
  }
  absl::Status st = Chunks(paced, &r);
  if (st.ok() && !stop_.cancelled()) st = Releases(&r);
  r.complete = st.ok() && !stop_.cancelled();
  if (r.complete) {
    const int64_t now = clock_->NowUnix();
    st = repo_->SetCursor(kLastFullKey, static_cast<uint64_t>(now));
    if (st.ok()) st = repo_->SetCursor(kDamagedKey, r.releases_damaged);
    if (st.ok()) st = repo_->SetCursor(kCursorKey, 0);
    spdlog::info(
        "scrub: pass done: {} chunks ({} bytes) re-hashed, {} bad; {} releases lack {} chunks; "
        "{} repairs asked for",
        r.chunks_checked, r.bytes_checked, r.chunks_bad, r.releases_damaged, r.chunks_missing,
        r.repairs_started);
    absl::MutexLock l(&mu_);
    status_.set_passes(status_.passes() + 1);
    status_.set_last_full_pass_unix(now);
    status_.set_chunks_missing(r.chunks_missing);
    status_.set_releases_damaged(r.releases_damaged);
  }
  absl::MutexLock l(&mu_);
  status_.set_running(false);
  if (r.complete && r.releases_damaged > 0 && opts_.repair) {
    recheck_backoff_ = std::chrono::seconds(opts_.repair_retry_seconds);
    recheck_at_ = clock_->SteadyNow() + recheck_backoff_;
    recheck_backoff_ *= 2;
  } else if (r.complete) {
    recheck_at_.reset();
  }
  if (!st.ok()) {
    status_.set_last_error(std::string(st.message()));
    spdlog::error("scrub: {}", st.ToString());
  }
  return r;
}

absl::Status Scrubber::Chunks(bool paced, ScrubReport* r) {
  CAIRN_ASSIGN_OR_RETURN(uint64_t place, repo_->GetCursor(kCursorKey));
  if (place == 0) {
    CAIRN_RETURN_IF_ERROR(repo_->SetCursor(kStartedKey, static_cast<uint64_t>(clock_->NowUnix())));
  } else {
    spdlog::info("scrub: resuming the pass a restart cut short");
  }
  std::optional<Digest> after;
  if (place != 0) after = DigestAt(place);
  const SteadyTime t0 = clock_->SteadyNow();
  const uint64_t rate = opts_.bytes_per_second;
  std::vector<Digest> batch;
  for (;;) {
    CAIRN_RETURN_IF_ERROR(repo_->chunks()->List(after ? &*after : nullptr, kBatch, &batch));
    for (const Digest& d : batch) {
      if (stop_.cancelled()) return absl::OkStatus();
      auto checked = repo_->chunks()->Check(d);
      if (!checked.ok() && !absl::IsDataLoss(checked.status()) &&
          !absl::IsNotFound(checked.status())) {
        return checked.status();  // an I/O error: stop here, the place is kept
      }
      const uint64_t bytes = checked.ok() ? *checked : 0;
      const bool bad = absl::IsDataLoss(checked.status());
      if (bad) spdlog::error("scrub: {}", std::string(checked.status().message()));
      ++r->chunks_checked;
      r->bytes_checked += bytes;
      r->chunks_bad += bad ? 1 : 0;
      {
        absl::MutexLock l(&mu_);
        status_.set_chunks_checked(status_.chunks_checked() + 1);
        status_.set_bytes_checked(status_.bytes_checked() + bytes);
        status_.set_chunks_bad(status_.chunks_bad() + (bad ? 1 : 0));
      }
      if (r->chunks_checked % kKeepPlaceEvery == 0) {
        CAIRN_RETURN_IF_ERROR(repo_->SetCursor(kCursorKey, PlaceOf(d)));
      }
      if (paced && rate > 0) {
        // Never ahead of the cap: the bytes read so far are paid for first.
        const std::chrono::duration<double> due(static_cast<double>(r->bytes_checked) / rate);
        clock_->SleepUntil(t0 + std::chrono::duration_cast<SteadyDuration>(due), &stop_);
      }
    }
    if (batch.empty()) return absl::OkStatus();
    after = batch.back();
    if (batch.size() < kBatch) return absl::OkStatus();
  }
}

absl::Status Scrubber::Releases(ScrubReport* r) {
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::SummaryResponse all, repo_->Summary());
  for (const auto& rel : all.releases()) {
    if (stop_.cancelled()) return absl::OkStatus();
    CAIRN_RETURN_IF_ERROR(CheckRelease(rel.name(), rel.version(), rel.manifest_digest(), r));
  }
  return absl::OkStatus();
}

absl::Status Scrubber::CheckRelease(const std::string& name, const std::string& version,
                                    const std::string& digest, ScrubReport* r) {
  auto resolved = repo_->Resolve(StrCat(name, "@", digest));
  if (absl::IsNotFound(resolved.status())) return absl::OkStatus();  // gone since the listing
  CAIRN_RETURN_IF_ERROR(resolved.status());
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Envelope env,
                         ParseEnvelope(resolved->manifest_envelope(), kMaxEnvelopeBytes));
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Manifest m, ParseManifest(env.payload()));
  uint64_t missing = 0;
  for (const auto& f : m.files()) {
    auto list = repo_->GetObject(f.root());
    if (!list.ok()) {
      if (!absl::IsNotFound(list.status())) return list.status();
      // The chunk list itself is gone: every chunk of the file is unknown.
      missing += std::max<uint64_t>(1, f.size() / kMaxChunkSize);
      continue;
    }
    auto cl = CheckChunkList(*list, f.root(), f.size(), f.path());
    if (!cl.ok()) {
      ++missing;
      continue;
    }
    for (const auto& c : cl->chunks()) {
      Digest d;
      std::memcpy(d.data(), c.digest().data(), d.size());
      CAIRN_ASSIGN_OR_RETURN(bool held, repo_->chunks_for_reads()->Has(d));
      if (!held) ++missing;
    }
  }
  if (missing == 0) return absl::OkStatus();
  r->chunks_missing += missing;
  ++r->releases_damaged;
  bool repair = static_cast<bool>(opts_.repair);
  absl::Status repaired;
  if (repair) {
    ++r->repairs_started;
    spdlog::warn("scrub: {} {} ({}) lacks {} chunks; fetching them from upstream", name, version,
                 digest, missing);
    repaired = opts_.repair(name, digest);
  } else {
    spdlog::error(
        "scrub: {} {} ({}) lacks {} chunks and this node has no upstream to fetch them from; "
        "publish it again (cairn publish) or add an upstream that holds it",
        name, version, digest, missing);
  }
  absl::MutexLock l(&mu_);
  if (repair) status_.set_repairs_started(status_.repairs_started() + 1);
  if (!repaired.ok()) {
    status_.set_repairs_failed(status_.repairs_failed() + 1);
    status_.set_last_error(
        StrCat("repair of ", name, " ", version, ": ", repaired.message(), " (tried again later)"));
  }
  return absl::OkStatus();
}

}  // namespace cairn::node
