#include "chunks_service.h"

#include <google/protobuf/descriptor.h>

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
#include "service_common.h"
#include "spdlog/spdlog.h"
#include "unary_over_stream.h"

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

absl::StatusOr<HasManyResponse> HasMany(Repository* repo, const HasManyRequest& req, bool intact) {
  if (req.digests_size() > 65536) {
    return absl::InvalidArgumentError("at most 65536 digests per HasMany");
  }
  HasManyResponse out;
  for (const auto& raw : req.digests()) {
    CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(raw));
    CAIRN_ASSIGN_OR_RETURN(bool has,
                           intact ? repo->chunks()->HasIntact(d) : repo->chunks()->Has(d));
    out.add_present(has);
  }
  return out;
}

namespace {

// Appends `v` as a protobuf varint.
void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// A GetChunksResponse in wire format, built without copying chunk bytes: each
// chunk's data is a slice that owns the string it was read into, between
// small slices holding the protobuf framing (GetChunksResponse.chunks = 1,
// ChunkData.digest = 1, data = 2, missing = 3).
class ResponseBuilder {
 public:
  void Add(std::string_view digest, std::string* data, bool missing) {
    std::string head;
    const size_t inner =
        2 + digest.size() + (missing ? 2 : 1 + VarintSize(data->size()) + data->size());
    head.push_back(0x0a);
    PutVarint(inner, &head);
    head.push_back(0x0a);
    PutVarint(digest.size(), &head);
    head.append(digest);
    if (missing) {
      head.append("\x18\x01", 2);
      slices_.emplace_back(head);
      return;
    }
    head.push_back(0x12);
    PutVarint(data->size(), &head);
    slices_.emplace_back(head);
    auto* owned = new std::string(std::move(*data));
    slices_.emplace_back(
        owned->data(), owned->size(), [](void* p) { delete static_cast<std::string*>(p); }, owned);
  }
  grpc::ByteBuffer Take() { return grpc::ByteBuffer(slices_.data(), slices_.size()); }

 private:
  std::vector<grpc::Slice> slices_;
};

// Serves GetMany: answers each request message with one response message, in
// order. Keeps at most kMaxQueued responses built ahead of the network.
// Served on raw byte buffers: a response's chunk bytes go from the string the
// store read them into to the socket without being serialized again.
class GetManyReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  GetManyReactor(Repository* repo, WorkPool* pool, grpc::CallbackServerContext* ctx,
                 StreamLimits limits, std::shared_ptr<void> slot)
      : repo_(repo),
        pool_(pool),
        peer_(ctx->peer()),
        limits_(limits),
        slot_(std::move(slot)),
        watch_(limits.watchdog->Watch([ctx, peer = peer_, idle = limits.idle] {
          spdlog::warn("GetMany from {}: no request read and no answer taken for {}s, cancelled",
                       peer, std::chrono::duration_cast<std::chrono::seconds>(idle).count());
          ctx->TryCancel();
        })) {
    absl::MutexLock l(&mu_);
    ArmLocked();
    StartRead(&req_buf_);
  }

  // A request is answered in response messages of at most kResponseBytes
  // (the client reads chunk by chunk, whatever the message boundaries), built
  // one at a time and at most kMaxQueued ahead of the network: a client that
  // asks for 64 of the largest chunks and stops reading pins a few MiB, not
  // the 256 MiB four whole answers took. The next request is read only after
  // this one is answered, so responses stay in order.
  void OnReadDone(bool ok) override {
    absl::MutexLock l(&mu_);
    reading_next_ = false;
    ArmLocked();
    if (!ok) {
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    req_.Clear();
    if (!grpc::SerializationTraits<GetChunksRequest>::Deserialize(&req_buf_, &req_).ok()) {
      error_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unparsable GetMany request");
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    if (req_.digests_size() > kMaxChunksPerMessage) {
      error_ =
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       StrCat("at most ", kMaxChunksPerMessage, " digests per GetMany message"));
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    next_ = 0;
    SubmitBuildLocked();
  }

  void SubmitBuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    building_ = true;
    if (!pool_->TrySubmit([this] { BuildAndQueue(); })) {
      building_ = false;
      error_ = kBusy;
      reads_done_ = true;
      MaybeFinishLocked();
    }
  }

  void BuildAndQueue() {
    ResponseBuilder resp;
    // req_ and next_ are not touched by anyone else while a build runs.
    absl::Status st = Build(req_, &next_, &resp);
    absl::MutexLock l(&mu_);
    building_ = false;
    if (!st.ok()) {
      error_ = ToGrpc(st);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    queue_.push_back(resp.Take());
    if (!writing_) {
      WriteNextLocked();
      ArmLocked();
    }
    ContinueLocked();
  }

  // After a response is queued or written: build more of this request, or
  // read the next one, unless kMaxQueued responses wait for the network.
  void ContinueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // While a read is outstanding gRPC fills req_: OnReadDone continues.
    if (building_ || reading_next_ || reads_done_ || !error_.ok() || queue_.size() >= kMaxQueued) {
      return;
    }
    if (next_ < req_.digests_size()) {
      SubmitBuildLocked();
    } else {
      reading_next_ = true;
      StartRead(&req_buf_);
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
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    if (!queue_.empty()) WriteNextLocked();
    ArmLocked();
    ContinueLocked();
    MaybeFinishLocked();
  }

  void OnDone() override {
    limits_.watchdog->Forget(watch_);
    spdlog::info("GetMany from {}: served {} chunks, {} bytes", peer_, chunks_served_,
                 bytes_served_);
    delete this;
  }
  void OnCancel() override {}

 private:
  static constexpr size_t kMaxQueued = 2;
  static constexpr size_t kResponseBytes = 2 << 20;

  // Builds the answer to req.digests(*next...) up to kResponseBytes (at least
  // one chunk), advancing *next.
  absl::Status Build(const GetChunksRequest& req, int* next, ResponseBuilder* resp) {
    size_t bytes = 0;
    std::string data;
    for (int built = 0; *next < req.digests_size() && (bytes < kResponseBytes || built == 0);
         ++*next, ++built) {
      const std::string& raw = req.digests(*next);
      CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(raw));
      absl::Status st = repo_->chunks()->Get(d, &data);
      if (absl::IsNotFound(st)) {
        resp->Add(raw, &data, /*missing=*/true);
      } else if (absl::IsDataLoss(st)) {
        // A corrupt stored chunk is never served; say "missing" so the client
        // looks elsewhere, and log it for the operator.
        spdlog::error("refusing to serve corrupt chunk {}", DigestName(d));
        resp->Add(raw, &data, /*missing=*/true);
      } else if (!st.ok()) {
        return st;
      } else {
        chunks_served_++;
        bytes_served_ += data.size();
        bytes += data.size();
        resp->Add(raw, &data, /*missing=*/false);
      }
    }
    return absl::OkStatus();
  }

  // Progress was made: the stream may now wait `idle` for the client, plus
  // the time the answer being written takes at StreamLimits::min_rate.
  void ArmLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SteadyDuration limit = limits_.idle;
    if (writing_) limit += limits_.TimeToSend(queue_.front().Length());
    limits_.watchdog->Arm(watch_, limit);
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    StartWrite(&queue_.front());
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reads_done_ && !writing_ && !building_ && queue_.empty() && !finished_) {
      finished_ = true;
      limits_.watchdog->Disarm(watch_);  // nothing more to wait for: only the status goes
      Finish(error_);
    }
  }

  Repository* repo_;
  WorkPool* pool_;
  const std::string peer_;
  const StreamLimits limits_;
  std::shared_ptr<void> slot_;  // this stream's place in its peer's limit
  const uint64_t watch_;        // this stream in limits_.watchdog
  uint64_t chunks_served_ = 0;  // touched only by the one build in flight
  uint64_t bytes_served_ = 0;
  absl::Mutex mu_;
  grpc::ByteBuffer req_buf_;  // filled by gRPC while a read is outstanding
  GetChunksRequest req_;
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool building_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_next_ ABSL_GUARDED_BY(mu_) = true;  // a StartRead is outstanding
  int next_ = 0;  // the next digest of req_ to answer; only the build in flight touches it
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status error_ ABSL_GUARDED_BY(mu_);
};

class ChunksImpl final : public UnaryOverStream<Chunks::CallbackService> {
 public:
  ChunksImpl(Repository* repo, WorkPool* pool, PeerStreams* streams, StreamLimits limits)
      : UnaryOverStream("cairn.v1.Chunks", limits),
        repo_(repo),
        pool_(pool),
        streams_(streams),
        limits_(limits) {
    ServeOnPool<HasManyRequest, HasManyResponse>(
        "HasMany", pool, [repo](auto* call) { return node::HasMany(repo, call->req()); });
    const auto* m = google::protobuf::DescriptorPool::generated_pool()
                        ->FindServiceByName("cairn.v1.Chunks")
                        ->FindMethodByName("GetMany");
    MarkMethodRawCallback(
        m->index(), new grpc::internal::CallbackBidiHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
                        [this](grpc::CallbackServerContext* ctx) { return GetManyRaw(ctx); }));
  }
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* GetManyRaw(
      grpc::CallbackServerContext* ctx) {
    auto slot = streams_->Acquire(ctx->peer());
    if (!slot) {
      return new Refused<grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>>(
          streams_->Refusal());
    }
    return new GetManyReactor(repo_, pool_, ctx, limits_, std::move(slot));
  }

 private:
  Repository* repo_;
  WorkPool* pool_;
  PeerStreams* streams_;
  const StreamLimits limits_;
};

}  // namespace

std::unique_ptr<cairn::v1::Chunks::CallbackService> NewChunksService(Repository* repo,
                                                                     WorkPool* pool,
                                                                     PeerStreams* streams,
                                                                     StreamLimits limits) {
  return std::make_unique<ChunksImpl>(repo, pool, streams, limits);
}

}  // namespace cairn::node
