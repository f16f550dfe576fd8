#include "publish_service.h"

#include <deque>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cairn/chunker.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/v1/service.grpc.pb.h"
#include "chunks_service.h"
#include "import_service.h"
#include "service_common.h"
#include "spdlog/spdlog.h"
#include "unary_over_stream.h"

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

namespace {

// Receives a stream of chunks in an authenticated session; verifies and stores
// each. Reads are sequential, so no lock is needed. A client that sends
// nothing for StreamLimits::idle is cancelled.
class PutChunksReactor final : public grpc::ServerReadReactor<PutChunksRequest> {
 public:
  PutChunksReactor(Repository* repo, WorkPool* pool, grpc::CallbackServerContext* ctx,
                   PutChunksResponse* resp, StreamLimits limits, std::shared_ptr<void> slot)
      : repo_(repo),
        pool_(pool),
        resp_(resp),
        limits_(limits),
        slot_(std::move(slot)),
        watch_(limits.watchdog->Watch([ctx, peer = ctx->peer(), idle = limits.idle] {
          spdlog::warn("PutChunks from {}: nothing sent for {}s, cancelled", peer,
                       std::chrono::duration_cast<std::chrono::seconds>(idle).count());
          ctx->TryCancel();
        })) {
    limits_.watchdog->Arm(watch_, limits_.idle);
    StartRead(&req_);
  }
  // Verifying and storing run on the pool; the next read starts after.
  void OnReadDone(bool ok) override {
    limits_.watchdog->Disarm(watch_);  // storing is the node's time, not the client's
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
      limits_.watchdog->Arm(watch_, limits_.idle);
      StartRead(&req_);
    });
    if (!queued) Finish(kBusy);
  }
  void OnDone() override {
    limits_.watchdog->Forget(watch_);
    delete this;
  }

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
  const StreamLimits limits_;
  std::shared_ptr<void> slot_;
  const uint64_t watch_;
  std::string session_;  // set once the first message's session checked out
};

class PublishImpl final : public UnaryOverStream<Publish::CallbackService> {
 public:
  PublishImpl(Repository* repo, WorkPool* pool, PeerStreams* streams, StreamLimits limits,
              ImportGate* import_gate)
      : UnaryOverStream("cairn.v1.Publish", limits),
        import_gate_(import_gate),
        repo_(repo),
        pool_(pool),
        streams_(streams),
        limits_(limits) {
    ServeOnPool<ChallengeRequest, ChallengeResponse>("Challenge", pool, [repo](auto* call) {
      return repo->Challenge(call->req().name(), PeerAddress(call->ctx()->peer()));
    });
    ServeOnPool<OpenSessionRequest, OpenSessionResponse>("OpenSession", pool, [repo](auto* call) {
      const OpenSessionRequest& req = call->req();
      auto r = repo->OpenSession(req, PeerAddress(call->ctx()->peer()));
      if (r.ok())
        spdlog::info("publish session opened for {} from {}", req.name(), call->ctx()->peer());
      else
        spdlog::warn("publish session refused for {}: {}", req.name(), r.status().ToString());
      return r;
    });
    ServeOnPool<HasManyRequest, HasManyResponse>("MissingChunks", pool, [repo](auto* call) {
      return node::HasMany(repo, call->req(), /*intact=*/true);
    });
    ServeOnPool<PutObjectRequest, PutObjectResponse>(
        "PutObject", pool, [repo](auto* call) { return repo->PutObjectPart(call->req()); });
    ServeOnPool<CommitRequest, CommitResponse>("Commit", pool, [repo](auto* call) {
      const CommitRequest& req = call->req();
      auto r = repo->Commit(req.session_id(), req.manifest_envelope(), req.tag_envelope(),
                            req.manifest_envelope_digest(), req.yank_envelope());
      if (r.ok() && r->pending())
        spdlog::info("release {} pending: {} of {} signatures", r->manifest_digest(),
                     r->signatures(), r->signatures_needed());
      else if (r.ok())
        spdlog::info("committed release {}", r->manifest_digest());
      else
        spdlog::warn("commit refused: {}", r.status().ToString());
      return r;
    });
    ServeOnPool<EndSessionRequest, EndSessionResponse>(
        "EndSession", pool, [repo](auto* call) -> absl::StatusOr<EndSessionResponse> {
          repo->EndSession(call->req().session_id());
          return EndSessionResponse();
        });
    ServeOnPool<PendingRequest, PendingResponse>("GetPending", pool, [repo](auto* call) {
      return repo->GetPending(call->req().manifest_digest());
    });
    ServeOnPool<CoSignRequest, CommitResponse>("CoSign", pool, [repo](auto* call) {
      auto r = repo->CoSign(call->req());
      if (r.ok() && !r->pending())
        spdlog::info("committed co-signed release {}", r->manifest_digest());
      else if (!r.ok())
        spdlog::warn("co-signature refused: {}", r.status().ToString());
      return r;
    });
  }
  grpc::ServerReadReactor<ImportRequest>* Import(grpc::CallbackServerContext* ctx,
                                                 ImportResponse* resp) override {
    return NewImportReactor(repo_, import_gate_, ctx, resp);
  }
  grpc::ServerReadReactor<PutChunksRequest>* PutChunks(grpc::CallbackServerContext* ctx,
                                                       PutChunksResponse* resp) override {
    auto slot = streams_->Acquire(ctx->peer());
    if (!slot) return new Refused<grpc::ServerReadReactor<PutChunksRequest>>(streams_->Refusal());
    return new PutChunksReactor(repo_, pool_, ctx, resp, limits_, std::move(slot));
  }

 private:
  ImportGate* import_gate_;
  Repository* repo_;
  WorkPool* pool_;
  PeerStreams* streams_;
  const StreamLimits limits_;
};

}  // namespace

std::unique_ptr<cairn::v1::Publish::CallbackService> NewPublishService(Repository* repo,
                                                                       WorkPool* pool,
                                                                       PeerStreams* streams,
                                                                       StreamLimits limits,
                                                                       ImportGate* import_gate) {
  return std::make_unique<PublishImpl>(repo, pool, streams, limits, import_gate);
}

}  // namespace cairn::node
