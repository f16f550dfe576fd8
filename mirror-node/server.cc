#include "server.h"

#include <deque>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cairn/chunker.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/v1/service.grpc.pb.h"
#include "client.h"
#include "spdlog/spdlog.h"
#include "work_pool.h"

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

namespace {

// Blocking work (disk, hashing, fdatasync) runs on this many threads; at most
// kMaxQueuedWork tasks wait before calls are refused with RESOURCE_EXHAUSTED.
constexpr int kWorkThreads = 8;
constexpr size_t kMaxQueuedWork = 1024;

const grpc::Status kBusy(grpc::StatusCode::RESOURCE_EXHAUSTED,
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

class RegistryImpl final : public Registry::CallbackService {
 public:
  RegistryImpl(Repository* repo, WorkPool* pool) : repo_(repo), pool_(pool) {}
  grpc::ServerUnaryReactor* Resolve(grpc::CallbackServerContext* ctx, const ResolveRequest* req,
                                    ResolveResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return repo_->Resolve(req->ref()); });
  }
  grpc::ServerUnaryReactor* GetObject(grpc::CallbackServerContext* ctx, const GetObjectRequest* req,
                                      GetObjectResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<GetObjectResponse> {
      CAIRN_ASSIGN_OR_RETURN(std::string data, repo_->GetObject(req->digest()));
      GetObjectResponse out;
      out.set_data(std::move(data));
      return out;
    });
  }
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx, const ListRequest* req,
                                 ListResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return repo_->List(req->prefix()); });
  }
  grpc::ServerUnaryReactor* Lineage(grpc::CallbackServerContext* ctx, const LineageRequest* req,
                                    LineageResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return repo_->Lineage(req->ref()); });
  }

 private:
  Repository* repo_;
  WorkPool* pool_;
};

absl::StatusOr<HasManyResponse> HasMany(Repository* repo, const HasManyRequest& req) {
  if (req.digests_size() > 65536) {
    return absl::InvalidArgumentError("at most 65536 digests per HasMany");
  }
  HasManyResponse out;
  for (const auto& raw : req.digests()) {
    CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(raw));
    CAIRN_ASSIGN_OR_RETURN(bool has, repo->chunks()->Has(d));
    out.add_present(has);
  }
  return out;
}

// Serves GetMany: answers each request message with one response message, in
// order. Keeps at most kMaxQueued responses built ahead of the network.
// The client's address without its port ("ipv4:10.0.0.1"): what per-peer
// limits count.
std::string PeerAddress(const std::string& peer) {
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

// Finishes a streaming call at once with `status`.
template <typename Base>
class Refused final : public Base {
 public:
  explicit Refused(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

class GetManyReactor final : public grpc::ServerBidiReactor<GetChunksRequest, GetChunksResponse> {
 public:
  GetManyReactor(Repository* repo, WorkPool* pool, std::string peer, std::shared_ptr<void> slot)
      : repo_(repo), pool_(pool), peer_(std::move(peer)), slot_(std::move(slot)) {
    StartRead(&req_);
  }

  // The next read starts only after this request's response is built, so at
  // most one build per stream is in flight and responses stay in order.
  void OnReadDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (!ok) {
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    building_ = true;
    if (!pool_->TrySubmit([this] { BuildAndQueue(); })) {
      building_ = false;
      error_ = kBusy;
      reads_done_ = true;
      MaybeFinishLocked();
    }
  }

  void BuildAndQueue() {
    GetChunksResponse resp;
    absl::Status st = Build(req_, &resp);  // req_ is not touched until the next StartRead
    absl::MutexLock l(&mu_);
    building_ = false;
    if (!st.ok()) {
      error_ = ToGrpc(st);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    queue_.push_back(std::move(resp));
    if (!writing_) WriteNextLocked();
    if (queue_.size() < kMaxQueued) {
      StartRead(&req_);
    } else {
      read_paused_ = true;
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) {
      // The client went away: nothing more to send.
      error_ = grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading");
      queue_.clear();
    }
    if (read_paused_ && ok) {
      read_paused_ = false;
      StartRead(&req_);
    }
    if (!queue_.empty()) {
      WriteNextLocked();
    } else if (!ok) {
      reads_done_ = true;
      MaybeFinishLocked();
    } else {
      MaybeFinishLocked();
    }
  }

  void OnDone() override {
    spdlog::info("GetMany from {}: served {} chunks, {} bytes", peer_, chunks_served_,
                 bytes_served_);
    delete this;
  }
  void OnCancel() override {}

 private:
  static constexpr size_t kMaxQueued = 4;

  absl::Status Build(const GetChunksRequest& req, GetChunksResponse* resp) {
    if (req.digests_size() > kMaxChunksPerMessage) {
      return absl::InvalidArgumentError(
          StrCat("at most ", kMaxChunksPerMessage, " digests per GetMany message"));
    }
    for (const auto& raw : req.digests()) {
      CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(raw));
      ChunkData* c = resp->add_chunks();
      c->set_digest(raw);
      absl::Status st = repo_->chunks()->Get(d, c->mutable_data());
      if (absl::IsNotFound(st)) {
        c->clear_data();
        c->set_missing(true);
      } else if (absl::IsDataLoss(st)) {
        // A corrupt stored chunk is never served; say "missing" so the client
        // looks elsewhere, and log it for the operator.
        spdlog::error("refusing to serve corrupt chunk {}", DigestName(d));
        c->clear_data();
        c->set_missing(true);
      } else if (!st.ok()) {
        return st;
      } else {
        chunks_served_++;
        bytes_served_ += c->data().size();
      }
    }
    return absl::OkStatus();
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    StartWrite(&queue_.front());
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reads_done_ && !writing_ && !building_ && queue_.empty() && !finished_) {
      finished_ = true;
      Finish(error_);
    }
  }

  Repository* repo_;
  WorkPool* pool_;
  const std::string peer_;
  std::shared_ptr<void> slot_;  // this stream's place in its peer's limit
  uint64_t chunks_served_ = 0;  // touched only by the one build in flight
  uint64_t bytes_served_ = 0;
  absl::Mutex mu_;
  GetChunksRequest req_;
  std::deque<GetChunksResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool building_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status error_ ABSL_GUARDED_BY(mu_);
};

class ChunksImpl final : public Chunks::CallbackService {
 public:
  ChunksImpl(Repository* repo, WorkPool* pool, PeerStreams* streams)
      : repo_(repo), pool_(pool), streams_(streams) {}
  grpc::ServerUnaryReactor* HasMany(grpc::CallbackServerContext* ctx, const HasManyRequest* req,
                                    HasManyResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return node::HasMany(repo_, *req); });
  }
  grpc::ServerBidiReactor<GetChunksRequest, GetChunksResponse>* GetMany(
      grpc::CallbackServerContext* ctx) override {
    auto slot = streams_->Acquire(ctx->peer());
    if (!slot) {
      return new Refused<grpc::ServerBidiReactor<GetChunksRequest, GetChunksResponse>>(
          streams_->Refusal());
    }
    return new GetManyReactor(repo_, pool_, ctx->peer(), std::move(slot));
  }

 private:
  Repository* repo_;
  WorkPool* pool_;
  PeerStreams* streams_;
};

// Receives a stream of chunks in an authenticated session; verifies and stores
// each. Reads are sequential, so no lock is needed.
class PutChunksReactor final : public grpc::ServerReadReactor<PutChunksRequest> {
 public:
  PutChunksReactor(Repository* repo, WorkPool* pool, PutChunksResponse* resp,
                   std::shared_ptr<void> slot)
      : repo_(repo), pool_(pool), resp_(resp), slot_(std::move(slot)) {
    StartRead(&req_);
  }
  // Verifying and storing run on the pool; the next read starts after.
  void OnReadDone(bool ok) override {
    bool queued = pool_->TrySubmit([this, ok] {
      if (!ok) {
        Finish(ToGrpc(repo_->chunks()->Flush()));
        return;
      }
      absl::Status st = Store();
      if (!st.ok()) {
        Finish(ToGrpc(st));
        return;
      }
      StartRead(&req_);
    });
    if (!queued) Finish(kBusy);
  }
  void OnDone() override { delete this; }

 private:
  absl::Status Store() {
    if (session_.empty()) {
      CAIRN_RETURN_IF_ERROR(repo_->CheckSession(req_.session_id()).status());
      session_ = req_.session_id();
    }
    if (req_.chunks_size() > kMaxChunksPerMessage) {
      return absl::InvalidArgumentError("too many chunks in one message");
    }
    for (const auto& c : req_.chunks()) {
      CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
      if (c.data().empty() || c.data().size() > kMaxChunkSize) {
        return absl::InvalidArgumentError(
            StrCat("chunk ", DigestName(d), " has size ", c.data().size(), ", out of range"));
      }
      CAIRN_ASSIGN_OR_RETURN(bool had, repo_->chunks()->Has(d));
      if (had) {
        resp_->set_chunks_already_present(resp_->chunks_already_present() + 1);
        continue;
      }
      // The publisher key's daily quota is charged before anything is stored.
      CAIRN_RETURN_IF_ERROR(repo_->ChargeUpload(session_, c.data().size()));
      CAIRN_RETURN_IF_ERROR(repo_->chunks()->Put(d, c.data()));  // verifies the hash
      resp_->set_chunks_stored(resp_->chunks_stored() + 1);
      resp_->set_bytes_stored(resp_->bytes_stored() + c.data().size());
    }
    return absl::OkStatus();
  }

  Repository* repo_;
  WorkPool* pool_;
  PutChunksResponse* resp_;
  PutChunksRequest req_;
  std::shared_ptr<void> slot_;
  std::string session_;  // set once the first message's session checked out
};

class PublishImpl final : public Publish::CallbackService {
 public:
  PublishImpl(Repository* repo, WorkPool* pool, PeerStreams* streams)
      : repo_(repo), pool_(pool), streams_(streams) {}
  grpc::ServerUnaryReactor* Challenge(grpc::CallbackServerContext* ctx, const ChallengeRequest* req,
                                      ChallengeResponse* resp) override {
    return Unary(pool_, ctx, resp,
                 [=, this] { return repo_->Challenge(req->name(), PeerAddress(ctx->peer())); });
  }
  grpc::ServerUnaryReactor* OpenSession(grpc::CallbackServerContext* ctx,
                                        const OpenSessionRequest* req,
                                        OpenSessionResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] {
      auto r = repo_->OpenSession(*req, PeerAddress(ctx->peer()));
      if (r.ok())
        spdlog::info("publish session opened for {} from {}", req->name(), ctx->peer());
      else
        spdlog::warn("publish session refused for {}: {}", req->name(), r.status().ToString());
      return r;
    });
  }
  grpc::ServerUnaryReactor* MissingChunks(grpc::CallbackServerContext* ctx,
                                          const HasManyRequest* req,
                                          HasManyResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return node::HasMany(repo_, *req); });
  }
  grpc::ServerReadReactor<PutChunksRequest>* PutChunks(grpc::CallbackServerContext* ctx,
                                                       PutChunksResponse* resp) override {
    auto slot = streams_->Acquire(ctx->peer());
    if (!slot) return new Refused<grpc::ServerReadReactor<PutChunksRequest>>(streams_->Refusal());
    return new PutChunksReactor(repo_, pool_, resp, std::move(slot));
  }
  grpc::ServerUnaryReactor* PutObject(grpc::CallbackServerContext* ctx, const PutObjectRequest* req,
                                      PutObjectResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<PutObjectResponse> {
      CAIRN_ASSIGN_OR_RETURN(std::string d, repo_->StageChunkList(req->session_id(), req->data()));
      PutObjectResponse out;
      out.set_digest(d);
      return out;
    });
  }
  grpc::ServerUnaryReactor* Commit(grpc::CallbackServerContext* ctx, const CommitRequest* req,
                                   CommitResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] {
      auto r = repo_->Commit(req->session_id(), req->manifest_envelope(), req->tag_envelope());
      if (r.ok() && r->pending())
        spdlog::info("release {} pending: {} of {} signatures", r->manifest_digest(),
                     r->signatures(), r->signatures_needed());
      else if (r.ok())
        spdlog::info("committed release {}", r->manifest_digest());
      else
        spdlog::warn("commit refused: {}", r.status().ToString());
      return r;
    });
  }
  grpc::ServerUnaryReactor* GetPending(grpc::CallbackServerContext* ctx, const PendingRequest* req,
                                       PendingResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return repo_->GetPending(req->manifest_digest()); });
  }
  grpc::ServerUnaryReactor* CoSign(grpc::CallbackServerContext* ctx, const CoSignRequest* req,
                                   CommitResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] {
      auto r = repo_->CoSign(*req);
      if (r.ok() && !r->pending())
        spdlog::info("committed co-signed release {}", r->manifest_digest());
      else if (!r.ok())
        spdlog::warn("co-signature refused: {}", r.status().ToString());
      return r;
    });
  }

 private:
  Repository* repo_;
  WorkPool* pool_;
  PeerStreams* streams_;
};

class FederationImpl final : public Federation::CallbackService {
 public:
  FederationImpl(Repository* repo, WorkPool* pool) : repo_(repo), pool_(pool) {}
  static constexpr size_t kMaxWaiters = 4096;
  grpc::ServerUnaryReactor* Summary(grpc::CallbackServerContext* ctx, const SummaryRequest* req,
                                    SummaryResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return repo_->Summary(); });
  }
  grpc::ServerUnaryReactor* Feed(grpc::CallbackServerContext* ctx, const FeedRequest* req,
                                 FeedResponse* resp) override {
    if (req->wait_ms() > 0) {
      // Long poll: park the call when nothing follows the cursor; the waiter
      // thread answers it on the next commit or at its deadline.
      absl::MutexLock l(&wait_mu_);
      if (!stopping_ && repo_->WaitForFeed(req->after(), absl::ZeroDuration()) == req->after() &&
          waiters_.size() < kMaxWaiters) {
        auto* r = ctx->DefaultReactor();
        waiters_.push_back(
            Waiter{r, ctx, req, resp,
                   absl::Now() + absl::Milliseconds(std::min<uint32_t>(req->wait_ms(), 30000))});
        if (!waiter_thread_.joinable()) waiter_thread_ = std::thread([this] { WaitLoop(); });
        return r;
      }
    }
    return Unary(pool_, ctx, resp,
                 [=, this] { return repo_->Feed(req->after(), req->max_events()); });
  }
  // Answers every parked long poll now (the server is stopping).
  void StopWaiting() {
    {
      absl::MutexLock l(&wait_mu_);
      stopping_ = true;
    }
    if (waiter_thread_.joinable()) waiter_thread_.join();
  }
  ~FederationImpl() override { StopWaiting(); }
  grpc::ServerUnaryReactor* NodeInfo(grpc::CallbackServerContext* ctx, const NodeInfoRequest* req,
                                     NodeInfoResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<NodeInfoResponse> {
      CAIRN_ASSIGN_OR_RETURN(NodeInfoResponse out, repo_->NodeInfo());
      std::function<std::vector<UpstreamStatus>()> fn;
      {
        absl::MutexLock l(&mu_);
        fn = upstream_status_;
      }
      if (fn) {
        for (auto& u : fn()) *out.add_upstreams() = std::move(u);
      }
      return out;
    });
  }
  void SetUpstreamStatus(std::function<std::vector<UpstreamStatus>()> fn) {
    absl::MutexLock l(&mu_);
    upstream_status_ = std::move(fn);
  }
  grpc::ServerUnaryReactor* TrustRoot(grpc::CallbackServerContext* ctx, const TrustRootRequest* req,
                                      TrustRootResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<TrustRootResponse> {
      TrustRootResponse out;
      out.set_envelope(repo_->trust().envelope_bytes());
      if (req->after_version() > 0) {
        CAIRN_ASSIGN_OR_RETURN(auto chain, repo_->TrustChainAfter(req->after_version()));
        for (auto& r : chain) out.add_chain(std::move(r));
      }
      return out;
    });
  }
  grpc::ServerUnaryReactor* OfferTrustRoots(grpc::CallbackServerContext* ctx,
                                            const OfferTrustRootsRequest* req,
                                            OfferTrustRootsResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this]() -> absl::StatusOr<OfferTrustRootsResponse> {
      if (req->chain_size() > 64) {
        return absl::InvalidArgumentError("at most 64 trust roots per offer");
      }
      std::vector<std::string> chain(req->chain().begin(), req->chain().end());
      CAIRN_ASSIGN_OR_RETURN(int advanced, repo_->AdoptTrustChain(chain));
      if (advanced > 0) {
        spdlog::warn("trust root updated to v{} (offered by {})", repo_->trust().root().version(),
                     ctx->peer());
      }
      OfferTrustRootsResponse out;
      out.set_version(repo_->trust().root().version());
      out.set_advanced(static_cast<uint32_t>(advanced));
      return out;
    });
  }

 private:
  struct Waiter {
    grpc::ServerUnaryReactor* reactor;
    grpc::CallbackServerContext* ctx;
    const FeedRequest* req;
    FeedResponse* resp;
    absl::Time deadline;
  };
  // One thread for every parked call: wakes on each commit (or every 200 ms)
  // and answers those with news, past their deadline, or cancelled.
  void WaitLoop() {
    uint64_t head = repo_->WaitForFeed(UINT64_MAX - 1, absl::ZeroDuration());
    for (;;) {
      std::vector<Waiter> due;
      bool stopping;
      {
        absl::MutexLock l(&wait_mu_);
        stopping = stopping_;
        const absl::Time now = absl::Now();
        for (size_t i = 0; i < waiters_.size();) {
          Waiter& w = waiters_[i];
          if (stopping || w.req->after() < head || w.deadline <= now || w.ctx->IsCancelled()) {
            due.push_back(w);
            waiters_[i] = waiters_.back();
            waiters_.pop_back();
          } else {
            ++i;
          }
        }
      }
      for (const Waiter& w : due) {
        if (w.ctx->IsCancelled()) {
          w.reactor->Finish(grpc::Status::CANCELLED);
          continue;
        }
        auto r = repo_->Feed(w.req->after(), w.req->max_events());
        if (r.ok()) *w.resp = std::move(*r);
        w.reactor->Finish(ToGrpc(r.status()));
      }
      if (stopping) return;
      head = repo_->WaitForFeed(head, absl::Milliseconds(200));
    }
  }

  absl::Mutex wait_mu_;
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(wait_mu_);
  bool stopping_ ABSL_GUARDED_BY(wait_mu_) = false;
  std::thread waiter_thread_;
  absl::Mutex mu_;
  std::function<std::vector<UpstreamStatus>()> upstream_status_ ABSL_GUARDED_BY(mu_);
  Repository* repo_;
  WorkPool* pool_;
};

}  // namespace

struct NodeServer::Services {
  Services(Repository* repo, int max_streams_per_peer)
      : pool(kWorkThreads, kMaxQueuedWork),
        streams(max_streams_per_peer),
        registry(repo, &pool),
        chunks(repo, &pool, &streams),
        publish(repo, &pool, &streams),
        federation(repo, &pool) {}
  // Declared first: destroyed last, after the services and the server.
  WorkPool pool;
  PeerStreams streams;
  RegistryImpl registry;
  ChunksImpl chunks;
  PublishImpl publish;
  FederationImpl federation;
};

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Start(Repository* repo,
                                                              const std::string& listen,
                                                              const ServerOptions& options) {
  std::unique_ptr<NodeServer> s(new NodeServer());
  s->services_ = std::make_unique<Services>(repo, options.max_streams_per_peer);
  grpc::ServerBuilder b;
  b.SetMaxReceiveMessageSize(kMaxMessageBytes);
  b.SetMaxSendMessageSize(kMaxMessageBytes);
  // Accept the keepalive pings clients and followers send (client::kKeepaliveMs)
  // even on a call that is quiet, such as a long-polled feed.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                       client::kKeepaliveMs / 2);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions o(
        options.tls_ca_pem.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : (options.require_client_cert
                   ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                   : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY));
    o.pem_root_certs = options.tls_ca_pem;
    o.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
    creds = grpc::SslServerCredentials(o);
  } else if (!options.tls_ca_pem.empty()) {
    return absl::InvalidArgumentError("--tls-ca needs --tls-cert and --tls-key");
  }
  b.AddListeningPort(listen, creds, &s->port_);
  b.RegisterService(&s->services_->registry);
  b.RegisterService(&s->services_->chunks);
  b.RegisterService(&s->services_->publish);
  b.RegisterService(&s->services_->federation);
  s->server_ = b.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return absl::UnavailableError("cannot listen on " + listen +
                                  " (address in use or not valid HOST:PORT)");
  }
  std::string host = listen.substr(0, listen.rfind(':'));
  s->address_ = StrCat(host, ":", s->port_);
  return s;
}

NodeServer::~NodeServer() { Shutdown(0); }

void NodeServer::SetUpstreamStatus(std::function<std::vector<cairn::v1::UpstreamStatus>()> fn) {
  services_->federation.SetUpstreamStatus(std::move(fn));
}

void NodeServer::Shutdown(int grace_seconds) {
  if (services_) services_->federation.StopWaiting();  // parked long polls answer now
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(grace_seconds));
  }
}

void NodeServer::Wait() {
  if (server_) server_->Wait();
}

std::shared_ptr<grpc::Channel> NodeServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  return server_->InProcessChannel(args);
}

}  // namespace cairn::node
