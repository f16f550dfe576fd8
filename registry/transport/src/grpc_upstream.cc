#include "cairn/transport/grpc_upstream.h"

#include <atomic>

#include "cairn/status.h"
#include "cairn/transport/fetcher.h"
#include "cairn/transport/grpc_status.h"

namespace cairn {

GrpcUpstream::GrpcUpstream(std::string address, int timeout_seconds, std::vector<std::string> peers,
                           int streams, const TlsOptions& tls)
    : address_(std::move(address)), timeout_seconds_(timeout_seconds) {
  // sources_[0] carries the metadata calls as well as chunk streams.
  sources_.push_back(std::make_unique<Connection>(NewChannel(address_, tls, /*private_pool=*/false),
                                                  address_, timeout_seconds, tls));
  upstream_streams_ = static_cast<size_t>(std::clamp(streams, 1, 8));
  for (size_t k = 1; k < upstream_streams_; ++k) sources_.push_back(sources_[0]->Another());
  // Connect every chunk connection now: on a long link the handshakes would
  // otherwise delay the first release's chunks by a few round trips.
  for (auto& c : sources_) c->channel()->GetState(/*try_to_connect=*/true);
  for (auto& p : peers) {
    if (p == address_) continue;
    sources_.push_back(std::make_unique<Connection>(NewChannel(p, tls, /*private_pool=*/false), p,
                                                    timeout_seconds, tls));
  }
}

absl::StatusOr<std::string> GrpcUpstream::NodeId() {
  cairn::v1::NodeInfoResponse r;
  auto ctx = sources_[0]->Context();
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(sources_[0]->federation()->NodeInfo(ctx.get(), {}, &r), "node info of " + address_));
  if (r.node_id().empty()) return absl::DataLossError("upstream " + address_ + " has no node id");
  SetChunksHttpPort(r.chunks_http_port());
  return r.node_id();
}

absl::StatusOr<cairn::v1::FeedResponse> GrpcUpstream::Feed(uint64_t after, uint32_t max_events) {
  cairn::v1::FeedRequest req;
  req.set_after(after);
  req.set_max_events(max_events);
  req.set_wait_ms(long_poll_ms_);
  if (feed_trust_after_) req.set_trust_after(*feed_trust_after_);
  req.set_chunk_list_bytes(feed_list_bytes_);
  cairn::v1::FeedResponse r;
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds_) +
                    std::chrono::milliseconds(long_poll_ms_));
  {
    absl::MutexLock l(&cancel_mu_);
    if (cancelled_) return absl::CancelledError("stopping");
    feed_ctx_ = ctx.get();
  }
  grpc::Status st = sources_[0]->federation()->Feed(ctx.get(), req, &r);
  {
    absl::MutexLock l(&cancel_mu_);
    feed_ctx_ = nullptr;
  }
  CAIRN_RETURN_IF_ERROR(FromGrpc(st, "feed of " + address_));
  // An upstream that has nothing newer (or is behind, or hides a revocation)
  // does not end the search: peers are asked, as TrustChain does.
  if (feed_trust_after_ && r.has_trust() && r.trust().chain_size() == 0 &&
      sources_.size() > upstream_streams_) {
    for (auto& root : PeerTrustChain(*feed_trust_after_))
      r.mutable_trust()->add_chain(std::move(root));
  }
  // More lists than asked for are not kept (a hostile upstream could send
  // up to the message limit).
  size_t kept = 0, list_bytes = 0;
  for (auto& list : *r.mutable_chunk_lists()) {
    list_bytes += list.size();
    if (list_bytes > feed_list_bytes_) break;
    ++kept;
  }
  r.mutable_chunk_lists()->DeleteSubrange(static_cast<int>(kept),
                                          r.chunk_lists_size() - static_cast<int>(kept));
  return r;
}

void GrpcUpstream::Cancel() {
  {
    absl::MutexLock l(&cancel_mu_);
    cancelled_ = true;
    if (feed_ctx_) feed_ctx_->TryCancel();
  }
  cancel_.Cancel();  // a chunk transfer in progress ends now
}

absl::StatusOr<cairn::v1::SummaryResponse> GrpcUpstream::Summary() {
  cairn::v1::SummaryResponse r;
  auto ctx = sources_[0]->Context(timeout_seconds_ * 4);
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(sources_[0]->federation()->Summary(ctx.get(), {}, &r), "summary of " + address_));
  return r;
}

void GrpcUpstream::SetChunksHttpPort(uint32_t port) {
  // The upstream's chunk streams use its HTTP chunk port when it names one.
  for (size_t i = 0; i < upstream_streams_; ++i) {
    sources_[i]->set_chunks_http_port(port > 0 && port < 65536 ? static_cast<int>(port) : 0);
  }
}

absl::StatusOr<cairn::v1::ResolveResponse> GrpcUpstream::Resolve(const std::string& ref) {
  cairn::v1::ResolveRequest req;
  req.set_ref(ref);
  cairn::v1::ResolveResponse r;
  auto ctx = sources_[0]->Context();
  if (on_demand_hops_ > 0) ctx->AddMetadata(kOnDemandHopsHeader, std::to_string(on_demand_hops_));
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(sources_[0]->registry()->Resolve(ctx.get(), req, &r), "resolve on " + address_));
  SetChunksHttpPort(r.chunks_http_port());
  return r;
}

absl::StatusOr<std::string> GrpcUpstream::GetObject(const std::string& digest) {
  cairn::v1::GetObjectRequest req;
  req.set_digest(digest);
  cairn::v1::GetObjectResponse r;
  auto ctx = sources_[0]->Context();
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(sources_[0]->registry()->GetObject(ctx.get(), req, &r), "object from " + address_));
  return std::move(*r.mutable_data());
}

absl::StatusOr<std::vector<std::string>> GrpcUpstream::TrustChain(uint64_t after_version) {
  cairn::v1::TrustRootRequest req;
  req.set_after_version(after_version);
  auto ask = [&](cairn::v1::Federation::Stub* stub,
                 const std::string& who) -> absl::StatusOr<std::vector<std::string>> {
    cairn::v1::TrustRootResponse r;
    auto ctx = sources_[0]->Context();
    CAIRN_RETURN_IF_ERROR(FromGrpc(stub->TrustRoot(ctx.get(), req, &r), "trust roots of " + who));
    return std::vector<std::string>(r.chain().begin(), r.chain().end());
  };
  auto mine = ask(sources_[0]->federation(), address_);
  if (mine.ok() && !mine->empty()) return mine;
  auto theirs = PeerTrustChain(after_version);
  if (!theirs.empty()) return theirs;
  return mine;
}

std::vector<std::string> GrpcUpstream::PeerTrustChain(uint64_t after_version) {
  cairn::v1::TrustRootRequest req;
  req.set_after_version(after_version);
  for (size_t i = upstream_streams_; i < sources_.size(); ++i) {
    auto state = sources_[i]->channel()->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) continue;
    cairn::v1::TrustRootResponse r;
    auto ctx = sources_[i]->Context();
    if (sources_[i]->federation()->TrustRoot(ctx.get(), req, &r).ok() && r.chain_size() > 0) {
      return std::vector<std::string>(r.chain().begin(), r.chain().end());
    }
  }
  return {};
}

std::vector<absl::StatusOr<std::string>> GrpcUpstream::GetObjects(
    const std::vector<std::string>& digests) {
  struct Call {
    grpc::ClientContext ctx;
    cairn::v1::GetObjectRequest req;
    cairn::v1::GetObjectResponse resp;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  absl::Mutex mu;
  size_t pending = digests.size();
  for (const auto& d : digests) {
    auto c = std::make_unique<Call>();
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds_));
    c->req.set_digest(d);
    Call* raw = c.get();
    calls.push_back(std::move(c));
    sources_[0]->registry()->async()->GetObject(&raw->ctx, &raw->req, &raw->resp,
                                                [raw, &mu, &pending](grpc::Status st) {
                                                  absl::MutexLock l(&mu);
                                                  raw->status = std::move(st);
                                                  --pending;
                                                });
  }
  {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(
        +[](size_t* n) { return *n == 0; }, &pending));
  }
  std::vector<absl::StatusOr<std::string>> out;
  for (auto& c : calls) {
    absl::Status st = FromGrpc(c->status, "object from " + address_);
    if (st.ok()) {
      out.push_back(std::move(*c->resp.mutable_data()));
    } else {
      out.push_back(st);
    }
  }
  return out;
}

absl::Status GrpcUpstream::GetChunks(const std::vector<ChunkWant>& wanted, const ChunkSink& sink) {
  // Peers that cannot be reached right now are simply not asked this time.
  std::vector<Connection*> sources;
  for (size_t i = 0; i < upstream_streams_; ++i) sources.push_back(sources_[i].get());
  for (size_t i = upstream_streams_; i < sources_.size(); ++i) {
    auto state = sources_[i]->channel()->GetState(/*try_to_connect=*/true);
    if (state != GRPC_CHANNEL_TRANSIENT_FAILURE && state != GRPC_CHANNEL_SHUTDOWN) {
      sources.push_back(sources_[i].get());
    }
  }
  FetchOptions fo;
  fo.cancel = &cancel_;
  fo.clock = clock_;
  if (log_) fo.log = log_;
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
  Fetcher fetcher(sources, fo);
  fetcher.Add(wanted);
  std::string data;
  for (const auto& w : wanted) {
    absl::Status st = fetcher.Next(&data);
    if (!st.ok()) return Annotate(st, "chunks from " + address_);
    CAIRN_RETURN_IF_ERROR(sink(w.digest, data));
  }
  return absl::OkStatus();
}

}  // namespace cairn
