#include "upstream.h"

#include <random>

#include "cairn/status.h"
#include "fetcher.h"
#include "server.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using client::FromGrpc;

GrpcUpstream::GrpcUpstream(std::string address, int timeout_seconds, std::vector<std::string> peers,
                           int streams, const client::TlsOptions& tls)
    : address_(std::move(address)), timeout_seconds_(timeout_seconds) {
  channel_ = client::NewChannel(address_, tls, /*private_pool=*/false);
  federation_ = cairn::v1::Federation::NewStub(channel_);
  registry_ = cairn::v1::Registry::NewStub(channel_);
  chunks_ = cairn::v1::Chunks::NewStub(channel_);
  sources_.push_back(
      std::make_unique<client::Connection>(channel_, address_, timeout_seconds, tls));
  upstream_streams_ = static_cast<size_t>(std::clamp(streams, 1, 8));
  for (size_t k = 1; k < upstream_streams_; ++k) sources_.push_back(sources_[0]->Another());
  // Connect every chunk connection now: on a long link the handshakes would
  // otherwise delay the first release's chunks by a few round trips.
  for (auto& c : sources_) c->channel()->GetState(/*try_to_connect=*/true);
  for (auto& p : peers) {
    if (p == address_) continue;
    sources_.push_back(std::make_unique<client::Connection>(
        client::NewChannel(p, tls, /*private_pool=*/false), p, timeout_seconds, tls));
  }
}

std::unique_ptr<grpc::ClientContext> GrpcUpstream::Context(int seconds) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

absl::StatusOr<std::string> GrpcUpstream::NodeId() {
  cairn::v1::NodeInfoResponse r;
  auto ctx = Context(timeout_seconds_);
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(federation_->NodeInfo(ctx.get(), {}, &r), "node info of " + address_));
  if (r.node_id().empty()) return absl::DataLossError("upstream " + address_ + " has no node id");
  return r.node_id();
}

absl::StatusOr<cairn::v1::FeedResponse> GrpcUpstream::Feed(uint64_t after, uint32_t max_events) {
  cairn::v1::FeedRequest req;
  req.set_after(after);
  req.set_max_events(max_events);
  req.set_wait_ms(long_poll_ms_);
  cairn::v1::FeedResponse r;
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds_) +
                    std::chrono::milliseconds(long_poll_ms_));
  {
    absl::MutexLock l(&cancel_mu_);
    if (cancelled_) return absl::CancelledError("stopping");
    feed_ctx_ = ctx.get();
  }
  grpc::Status st = federation_->Feed(ctx.get(), req, &r);
  {
    absl::MutexLock l(&cancel_mu_);
    feed_ctx_ = nullptr;
  }
  CAIRN_RETURN_IF_ERROR(FromGrpc(st, "feed of " + address_));
  return r;
}

void GrpcUpstream::Cancel() {
  absl::MutexLock l(&cancel_mu_);
  cancelled_ = true;
  if (feed_ctx_) feed_ctx_->TryCancel();
}

absl::StatusOr<cairn::v1::SummaryResponse> GrpcUpstream::Summary() {
  cairn::v1::SummaryResponse r;
  auto ctx = Context(timeout_seconds_ * 4);
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(federation_->Summary(ctx.get(), {}, &r), "summary of " + address_));
  return r;
}

absl::StatusOr<cairn::v1::ResolveResponse> GrpcUpstream::Resolve(const std::string& ref) {
  cairn::v1::ResolveRequest req;
  req.set_ref(ref);
  cairn::v1::ResolveResponse r;
  auto ctx = Context(timeout_seconds_);
  CAIRN_RETURN_IF_ERROR(FromGrpc(registry_->Resolve(ctx.get(), req, &r), "resolve on " + address_));
  return r;
}

absl::StatusOr<std::string> GrpcUpstream::GetObject(const std::string& digest) {
  cairn::v1::GetObjectRequest req;
  req.set_digest(digest);
  cairn::v1::GetObjectResponse r;
  auto ctx = Context(timeout_seconds_);
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(registry_->GetObject(ctx.get(), req, &r), "object from " + address_));
  return std::move(*r.mutable_data());
}

absl::StatusOr<std::vector<std::string>> GrpcUpstream::TrustChain(uint64_t after_version) {
  cairn::v1::TrustRootRequest req;
  req.set_after_version(after_version);
  auto ask = [&](cairn::v1::Federation::Stub* stub,
                 const std::string& who) -> absl::StatusOr<std::vector<std::string>> {
    cairn::v1::TrustRootResponse r;
    auto ctx = Context(timeout_seconds_);
    CAIRN_RETURN_IF_ERROR(FromGrpc(stub->TrustRoot(ctx.get(), req, &r), "trust roots of " + who));
    return std::vector<std::string>(r.chain().begin(), r.chain().end());
  };
  auto mine = ask(federation_.get(), address_);
  if (mine.ok() && !mine->empty()) return mine;
  for (size_t i = upstream_streams_; i < sources_.size(); ++i) {
    auto state = sources_[i]->channel()->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) continue;
    auto stub = cairn::v1::Federation::NewStub(sources_[i]->channel());
    auto theirs = ask(stub.get(), sources_[i]->address());
    if (theirs.ok() && !theirs->empty()) return theirs;
  }
  return mine;
}

absl::Status GrpcUpstream::GetChunks(
    const std::vector<Want>& wanted,
    const std::function<absl::Status(const Digest&, std::string_view)>& sink) {
  // Peers that cannot be reached right now are simply not asked this time.
  std::vector<client::Connection*> sources;
  for (size_t i = 0; i < upstream_streams_; ++i) sources.push_back(sources_[i].get());
  for (size_t i = upstream_streams_; i < sources_.size(); ++i) {
    auto state = sources_[i]->channel()->GetState(/*try_to_connect=*/true);
    if (state != GRPC_CHANNEL_TRANSIENT_FAILURE && state != GRPC_CHANNEL_SHUTDOWN) {
      sources.push_back(sources_[i].get());
    }
  }
  client::FetchOptions fo;
  fo.log = [](const std::string& line) { spdlog::warn("replication: {}", line); };
  fo.min_rate = min_rate_;
  // A thin lossy link can take this long to deliver one whole chunk (a
  // loss-based TCP sits out retransmission timeouts); a dead link is found
  // sooner by the channel's keepalive.
  fo.stall_seconds = kStallSeconds;
  if (buffer_limit_ > 0) {
    fo.memory_bytes = std::max<size_t>(buffer_limit_, 1 << 20);
    fo.window_bytes = fo.memory_bytes;
    // A bandwidth cap paces the upstream: never call it slow for obeying.
    fo.min_rate = std::min<uint64_t>(fo.min_rate, std::max<size_t>(1, buffer_limit_ / 2));
  }
  client::Fetcher fetcher(sources, /*cache=*/nullptr, fo);
  std::vector<client::Fetcher::Want> wants;
  wants.reserve(wanted.size());
  for (const auto& w : wanted) wants.push_back({w.digest, w.length});
  fetcher.Add(wants);
  std::string data;
  for (const auto& w : wanted) {
    absl::Status st = fetcher.Next(&data);
    if (!st.ok()) return Annotate(st, "chunks from " + address_);
    CAIRN_RETURN_IF_ERROR(sink(w.digest, data));
  }
  return absl::OkStatus();
}

namespace {
constexpr uint32_t kLongPollMs = 20000;
}  // namespace

ReplicationLoop::ReplicationLoop(Repository* repo, std::vector<UpstreamConfig> upstreams,
                                 int poll_seconds, std::vector<std::string> peers,
                                 client::TlsOptions tls)
    : repo_(repo), poll_seconds_(poll_seconds), peers_(std::move(peers)), tls_(std::move(tls)) {
  {
    absl::MutexLock l(&mu_);
    status_.resize(upstreams.size());
    samples_.resize(upstreams.size());
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
  us.set_outside_window(rs.outside_window);
  us.set_tag_conflicts(rs.tag_conflicts);
  us.set_trust_updates(rs.trust_updates);
  us.set_last_conflict(rs.last_conflict);
  us.set_bytes_behind(rs.bytes_pending);
  auto now = std::chrono::steady_clock::now();
  auto& samples = samples_[index];
  if (samples.empty() || samples.back().second != rs.bytes_fetched) {
    samples.emplace_back(now, rs.bytes_fetched);
  }
  if (outcome == nullptr) return;  // progress within a sync
  us.set_last_error(outcome->ok() ? "" : std::string(outcome->message()));
  if (outcome->ok()) us.set_last_success_unix(SystemNowUnix());
}

std::vector<cairn::v1::UpstreamStatus> ReplicationLoop::Status() {
  absl::MutexLock l(&mu_);
  const auto now = std::chrono::steady_clock::now();
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
  return status_;
}

ReplicationLoop::~ReplicationLoop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    for (Upstream* u : active_) u->Cancel();  // a long poll in flight ends now
  }
  for (auto& t : threads_) t.join();
}

void ReplicationLoop::Run(size_t index, UpstreamConfig config) {
  const std::string address = config.address;
  auto upstream = std::make_unique<GrpcUpstream>(address, 15, peers_, config.streams, tls_);
  upstream->SetMinRate(config.min_bytes_per_second);
  Replicator rep(
      repo_, std::move(upstream),
      [address](const std::string& line) {
        spdlog::warn("replication from {}: {}", address, line);
      },
      std::move(config.policy));
  rep.set_long_poll_ms(kLongPollMs);
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
  std::mt19937_64 rng(std::random_device{}());
  double backoff = 1;
  uint64_t logged_releases = 0;
  auto last_reconcile = std::chrono::steady_clock::time_point();
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t applied_before = rep.stats().events_applied;
    absl::Status st = rep.SyncOnce();
    const bool held = std::chrono::steady_clock::now() - t0 > std::chrono::seconds(1);
    if (st.ok() && std::chrono::steady_clock::now() - last_reconcile > std::chrono::seconds(60)) {
      last_reconcile = std::chrono::steady_clock::now();  // anti-entropy about once a minute
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
      backoff = 1;
      // Again at once after news or a held long poll; an upstream that
      // answers at once with nothing (no long poll) is asked every
      // poll_seconds.
      wait = (rep.stats().events_applied != applied_before || held) ? 0 : poll_seconds_;
      if (rep.stats().releases_committed != logged_releases) {
        logged_releases = rep.stats().releases_committed;
        spdlog::info("replication from {}: cursor {} of {}, {} releases, {} bytes fetched so far",
                     address, rep.stats().cursor, rep.stats().upstream_head,
                     rep.stats().releases_committed, rep.stats().bytes_fetched);
      }
    } else {
      if (absl::IsCancelled(st)) {
        absl::MutexLock l(&mu_);
        if (stop_) return;
      }
      spdlog::warn("replication from {}: {} (retrying in ~{:.0f}s)", address, st.ToString(),
                   backoff);
      wait = backoff * std::uniform_real_distribution<double>(0.5, 1.5)(rng);  // jitter
      backoff = std::min(backoff * 2, 60.0);
    }
    Publish(index, rep.stats(), &st);
    absl::MutexLock l(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(wait))) return;
  }
}

}  // namespace cairn::node
