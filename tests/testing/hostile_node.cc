#include "hostile_node.h"

#include "cairn/hash.h"

namespace cairn::testing {

namespace {
grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

bool SleepUnlessCancelled(grpc::ServerContext* ctx, int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    if (ctx->IsCancelled()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return !ctx->IsCancelled();
}
}  // namespace

class HostileNode::Registry final : public cairn::v1::Registry::Service {
 public:
  Registry(HostileNode* h, Repository* repo, Attack a) : h_(h), repo_(repo), attack_(a) {}

  grpc::Status Resolve(grpc::ServerContext*, const cairn::v1::ResolveRequest* req,
                       cairn::v1::ResolveResponse* resp) override {
    if (attack_ == Attack::kOldTag) {
      *resp = h_->old_resolve;
      return grpc::Status::OK;
    }
    auto r = repo_->Resolve(req->ref());
    if (!r.ok()) return ToGrpc(r.status());
    *resp = *r;
    if (attack_ == Attack::kOtherManifest) {
      resp->set_manifest_envelope(h_->other_manifest);
    } else if (attack_ == Attack::kForgedTag && !resp->tag_envelope().empty()) {
      cairn::v1::Envelope env;
      cairn::v1::TagRecord rec;
      env.ParseFromString(resp->tag_envelope());
      rec.ParseFromString(env.payload());
      rec.set_version(1000);
      env.set_payload(rec.SerializeAsString());  // the signatures still cover the old payload
      resp->set_tag_envelope(env.SerializeAsString());
    }
    return grpc::Status::OK;
  }

  grpc::Status GetObject(grpc::ServerContext*, const cairn::v1::GetObjectRequest* req,
                         cairn::v1::GetObjectResponse* resp) override {
    if (attack_ == Attack::kWrongChunkList) {
      resp->set_data(h_->other_object);
      return grpc::Status::OK;
    }
    auto r = repo_->GetObject(req->digest());
    if (!r.ok()) return ToGrpc(r.status());
    resp->set_data(*r);
    return grpc::Status::OK;
  }

 private:
  HostileNode* h_;
  Repository* repo_;
  Attack attack_;
};

class HostileNode::Chunks final : public cairn::v1::Chunks::Service {
 public:
  Chunks(HostileNode* h, ChunkStore* store, Attack a) : h_(h), store_(store), attack_(a) {}

  grpc::Status GetMany(grpc::ServerContext* ctx,
                       grpc::ServerReaderWriter<cairn::v1::GetChunksResponse,
                                                cairn::v1::GetChunksRequest>* stream) override {
    cairn::v1::GetChunksRequest req;
    std::string last;
    while (stream->Read(&req)) {
      h_->batches_seen++;
      if (attack_ == Attack::kStall) {
        SleepUnlessCancelled(ctx, 600000);
        return grpc::Status::CANCELLED;
      }
      if (attack_ == Attack::kOversized) {
        cairn::v1::GetChunksResponse big;
        auto* c = big.add_chunks();
        c->set_digest(req.digests(0));
        c->set_data(std::string(70 << 20, 'x'));
        stream->Write(big);
        return grpc::Status::OK;
      }
      if (h_->delay_ms_per_batch > 0 && !SleepUnlessCancelled(ctx, h_->delay_ms_per_batch)) {
        return grpc::Status::CANCELLED;
      }
      cairn::v1::GetChunksResponse resp;
      for (const auto& d : req.digests()) {
        auto* c = resp.add_chunks();
        c->set_digest(d);
        Digest digest;
        std::memcpy(digest.data(), d.data(), std::min<size_t>(d.size(), 32));
        std::string data;
        if (attack_ == Attack::kMissingChunks || !store_->Get(digest, &data).ok()) {
          c->set_missing(true);
          continue;
        }
        if (attack_ == Attack::kWrongChunkBytes) data[data.size() / 2] ^= 0x5a;
        if (attack_ == Attack::kLongChunks) data.append(1 << 20, '\0');
        c->set_data(std::move(data));
        h_->chunks_served++;
        if (attack_ == Attack::kTrickle) {
          int ms = h_->trickle_bytes_per_second == 0
                       ? h_->trickle_ms
                       : static_cast<int>(c->data().size() * 1000 / h_->trickle_bytes_per_second);
          if (!SleepUnlessCancelled(ctx, ms)) return grpc::Status::CANCELLED;
          cairn::v1::GetChunksResponse one;
          *one.add_chunks() = *c;
          if (!stream->Write(one)) return grpc::Status::OK;
        }
      }
      if (attack_ == Attack::kTrickle) continue;
      if (!stream->Write(resp)) return grpc::Status::OK;
      if (attack_ == Attack::kExtraChunks) {
        // Keep sending copies of what was asked, for ever.
        while (!ctx->IsCancelled()) {
          if (!stream->Write(resp)) return grpc::Status::OK;
        }
        return grpc::Status::CANCELLED;
      }
    }
    return grpc::Status::OK;
  }

 private:
  HostileNode* h_;
  ChunkStore* store_;
  Attack attack_;
};

HostileNode::HostileNode(Repository* repo, ChunkStore* chunks, Attack attack)
    : registry_(std::make_unique<Registry>(this, repo, attack)),
      chunks_(std::make_unique<Chunks>(this, chunks, attack)) {
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.SetMaxSendMessageSize(128 << 20);
  b.RegisterService(registry_.get());
  b.RegisterService(chunks_.get());
  server_ = b.BuildAndStart();
  address_ = "127.0.0.1:" + std::to_string(port);
}

HostileNode::~HostileNode() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
}

}  // namespace cairn::testing
