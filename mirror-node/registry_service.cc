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
#include "unary_over_stream.h"

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

namespace {

class RegistryImpl final : public UnaryOverStream<Registry::CallbackService> {
 public:
  RegistryImpl(Repository* repo, WorkPool* pool, StreamLimits limits)
      : UnaryOverStream("cairn.v1.Registry", limits) {
    ServeOnPool<ResolveRequest, ResolveResponse>("Resolve", pool, [repo](auto* call) {
      return repo->Resolve(call->req().ref(), call->req().include_withheld());
    });
    ServeOnPool<GetObjectRequest, GetObjectResponse>(
        "GetObject", pool, [repo](auto* call) -> absl::StatusOr<GetObjectResponse> {
          CAIRN_ASSIGN_OR_RETURN(std::string data, repo->GetObject(call->req().digest()));
          GetObjectResponse out;
          out.set_data(std::move(data));
          return out;
        });
    ServeOnPool<ListRequest, ListResponse>("List", pool, [repo](auto* call) {
      return repo->List(call->req().prefix(), call->req().include_withheld());
    });
    ServeOnPool<LineageRequest, LineageResponse>(
        "Lineage", pool, [repo](auto* call) { return repo->Lineage(call->req().ref()); });
  }
};

}  // namespace

std::unique_ptr<cairn::v1::Registry::CallbackService> NewRegistryService(Repository* repo,
                                                                         WorkPool* pool,
                                                                         StreamLimits limits) {
  return std::make_unique<RegistryImpl>(repo, pool, limits);
}

}  // namespace cairn::node
