#include "replication_loop.h"

#include <chrono>

#include "cairn/status.h"
#include "cairn/transfer.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

namespace {
constexpr uint32_t kLongPollMs = 20000;
}  // namespace

ReplicationLoop::ReplicationLoop(Repository* repo, std::vector<UpstreamConfig> upstreams,
                                 int poll_seconds, std::vector<std::string> peers, TlsOptions tls)
    : repo_(repo),
      clock_(repo->clock()),
      poll_seconds_(poll_seconds),
      peers_(std::move(peers)),
      tls_(std::move(tls)) {
  {
    absl::MutexLock l(&mu_);
    status_.resize(upstreams.size());
    samples_.resize(upstreams.size());
    on_demand_.resize(upstreams.size());
    for (size_t i = 0; i < upstreams.size(); ++i) {
      status_[i].set_address(upstreams[i].address);
      status_[i].set_policy(upstreams[i].policy.ToString());
    }
  }
  for (size_t i = 0; i < upstreams.size(); ++i) {
    threads_.emplace_back([this, i, c = upstreams[i]] { Run(i, c); });
  }
}

void ReplicationLoop::Publish(size_t index, const ReplicationStats& rs,
                              const absl::Status* outcome) {
  absl::MutexLock l(&mu_);
  cairn::v1::UpstreamStatus& us = status_[index];
  us.set_cursor(rs.cursor);
  us.set_upstream_head(rs.upstream_head);
  us.set_releases_committed(rs.releases_committed);
  us.set_chunks_fetched(rs.chunks_fetched);
  us.set_bytes_fetched(rs.bytes_fetched);
  us.set_events_refused(rs.events_refused);
  us.set_events_outside_policy(rs.events_outside_policy);
  us.set_events_skipped_for_space(rs.events_skipped_for_space);
  us.set_events_skipped_yanked(rs.events_skipped_yanked);
  us.set_outside_window(rs.outside_window);
  us.set_tag_conflicts(rs.tag_conflicts);
  us.set_yank_conflicts(rs.yank_conflicts);
  us.set_trust_updates(rs.trust_updates);
  us.set_last_conflict(rs.last_conflict);
  us.set_tags_rolled_back(rs.tags_rolled_back);
  us.set_last_rollback(rs.last_rollback);
  us.set_events_quarantined(rs.events_quarantined);
  us.set_last_quarantined(rs.last_quarantined);
  us.set_bytes_behind(rs.bytes_pending);
  auto now = clock_->SteadyNow();
  auto& samples = samples_[index];
  if (samples.empty() || samples.back().second != rs.bytes_fetched) {
    samples.emplace_back(now, rs.bytes_fetched);
  }
  if (outcome == nullptr) return;  // progress within a sync
  us.set_last_error(outcome->ok() ? "" : std::string(outcome->message()));
  if (outcome->ok()) us.set_last_success_unix(clock_->NowUnix());
}

std::vector<cairn::v1::UpstreamStatus> ReplicationLoop::Status() {
  absl::MutexLock l(&mu_);
  const auto now = clock_->SteadyNow();
  const auto since = now - std::chrono::seconds(10);
  for (size_t i = 0; i < status_.size(); ++i) {
    // Keep one sample at or before the window's start as the baseline.
    auto& samples = samples_[i];
    while (samples.size() >= 2 && samples[1].first <= since) samples.pop_front();
    uint64_t rate = 0;
    if (samples.size() >= 2) {
      const auto from = std::max(samples.front().first, since);
      const double secs = std::chrono::duration<double>(now - from).count();
      if (secs > 0)
        rate = static_cast<uint64_t>((samples.back().second - samples.front().second) / secs);
    }
    status_[i].set_bytes_per_second(rate);
  }
  std::vector<cairn::v1::UpstreamStatus> out = status_;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].set_bytes_fetched(out[i].bytes_fetched() + on_demand_[i].bytes_fetched);
    out[i].set_chunks_fetched(out[i].chunks_fetched() + on_demand_[i].chunks_fetched);
    out[i].set_releases_committed(out[i].releases_committed() + on_demand_[i].releases_committed);
  }
  return out;
}

void ReplicationLoop::AddFetched(const std::string& address, const ReplicationStats& s) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < status_.size(); ++i) {
    if (status_[i].address() != address) continue;
    on_demand_[i].bytes_fetched += s.bytes_fetched;
    on_demand_[i].chunks_fetched += s.chunks_fetched;
    on_demand_[i].releases_committed += s.releases_committed;
    return;
  }
}

void ReplicationLoop::Stop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    // A long poll or a chunk transfer in flight ends now.
    for (Upstream* u : active_) u->Cancel();
  }
  cancel_.Cancel();  // pacing waits and the waits between syncs end now
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

ReplicationLoop::~ReplicationLoop() { Stop(); }

void ReplicationLoop::Run(size_t index, UpstreamConfig config) {
  const std::string address = config.address;
  auto upstream = std::make_unique<GrpcUpstream>(address, 15, peers_, config.streams, tls_);
  upstream->SetMinRate(config.min_bytes_per_second);
  upstream->SetClock(clock_);
  upstream->SetLog([](const std::string& line) { spdlog::warn("replication: {}", line); });
  Replicator rep(
      repo_, std::move(upstream),
      [address](const std::string& line) {
        spdlog::warn("replication from {}: {}", address, line);
      },
      std::move(config.policy));
  rep.set_long_poll_ms(kLongPollMs);
  rep.set_cancel(&cancel_);
  rep.set_progress([this, index](const ReplicationStats& s) { Publish(index, s, nullptr); });
  {
    absl::MutexLock l(&mu_);
    if (stop_) return;
    active_.push_back(rep.upstream());
  }
  struct Unregister {
    ReplicationLoop* loop;
    Upstream* u;
    ~Unregister() {
      absl::MutexLock l(&loop->mu_);
      std::erase(loop->active_, u);
    }
  } unregister{this, rep.upstream()};
  Backoff backoff;
  uint64_t logged_releases = 0;
  auto last_reconcile = SteadyTime();
  for (;;) {
    const auto t0 = clock_->SteadyNow();
    const uint64_t applied_before = rep.stats().events_applied;
    absl::Status st = rep.SyncOnce();
    const bool held = clock_->SteadyNow() - t0 > std::chrono::seconds(1);
    // Logged as soon as the feed's releases are committed, before any
    // anti-entropy round trip.
    if (rep.stats().releases_committed != logged_releases) {
      logged_releases = rep.stats().releases_committed;
      spdlog::info("replication from {}: cursor {} of {}, {} releases, {} bytes fetched so far",
                   address, rep.stats().cursor, rep.stats().upstream_head,
                   rep.stats().releases_committed, rep.stats().bytes_fetched);
    }
    if (st.ok() && clock_->SteadyNow() - last_reconcile > std::chrono::seconds(60)) {
      last_reconcile = clock_->SteadyNow();  // anti-entropy about once a minute
      auto fixed = rep.Reconcile();
      if (fixed.ok() && *fixed > 0) {
        spdlog::warn("anti-entropy with {}: repaired {} release(s)/tag(s) the feed missed", address,
                     *fixed);
      } else if (!fixed.ok()) {
        st = fixed.status();
      }
    }
    double wait;
    if (st.ok()) {
      backoff.Reset();
      // Again at once after news or a held long poll; an upstream that
      // answers at once with nothing (no long poll) is asked every
      // poll_seconds.
      wait = (rep.stats().events_applied != applied_before || held) ? 0 : poll_seconds_;
    } else {
      if (absl::IsCancelled(st)) {
        absl::MutexLock l(&mu_);
        if (stop_) return;
      }
      spdlog::warn("replication from {}: {} (retrying in ~{:.0f}s)", address, st.ToString(),
                   backoff.step());
      wait = backoff.Next();
    }
    Publish(index, rep.stats(), &st);
    if (!clock_->SleepFor(
            std::chrono::duration_cast<SteadyDuration>(std::chrono::duration<double>(wait)),
            &cancel_)) {
      return;
    }
  }
}

}  // namespace cairn::node
