#include "registry_service.h"

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

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

namespace {

class RegistryImpl final : public Registry::CallbackService {
 public:
  RegistryImpl(Repository* repo, WorkPool* pool) : repo_(repo), pool_(pool) {}
  grpc::ServerUnaryReactor* Resolve(grpc::CallbackServerContext* ctx, const ResolveRequest* req,
                                    ResolveResponse* resp) override {
    return Unary(pool_, ctx, resp,
                 [=, this] { return repo_->Resolve(req->ref(), req->include_withheld()); });
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
    return Unary(pool_, ctx, resp,
                 [=, this] { return repo_->List(req->prefix(), req->include_withheld()); });
  }
  grpc::ServerUnaryReactor* Lineage(grpc::CallbackServerContext* ctx, const LineageRequest* req,
                                    LineageResponse* resp) override {
    return Unary(pool_, ctx, resp, [=, this] { return repo_->Lineage(req->ref()); });
  }

 private:
  Repository* repo_;
  WorkPool* pool_;
};

}  // namespace

std::unique_ptr<cairn::v1::Registry::CallbackService> NewRegistryService(Repository* repo,
                                                                         WorkPool* pool) {
  return std::make_unique<RegistryImpl>(repo, pool);
}

}  // namespace cairn::node
