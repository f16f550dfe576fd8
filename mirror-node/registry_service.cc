#include "registry_service.h"

#include <deque>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "cairn/chunker.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/transport/grpc_upstream.h"
#include "cairn/v1/service.grpc.pb.h"
#include "on_demand.h"
#include "service_common.h"
#include "spdlog/spdlog.h"
#include "unary_over_stream.h"

namespace cairn::node {

using namespace cairn::v1;  // NOLINT: generated message names

namespace {

class RegistryImpl final : public UnaryOverStream<Registry::CallbackService> {
 public:
  RegistryImpl(Repository* repo, WorkPool* pool, StreamLimits limits, OnDemand* on_demand,
               std::shared_ptr<const std::atomic<int>> http_port)
      : UnaryOverStream("cairn.v1.Registry", limits) {
    // A release not held is fetched from upstream when the node pulls
    // through (on_demand): the call is answered once it is committed here.
    Serve<ResolveRequest, ResolveResponse>("Resolve", [repo, pool, on_demand,
                                                       http_port](auto* call) {
      using Call = std::remove_pointer_t<decltype(call)>;
      auto answer = [repo, http_port](Call* c, absl::StatusOr<ResolveResponse> r) {
        if (r.ok()) {
          repo->NoteRequested(r->manifest_digest());  // eviction order
          if (http_port) r->set_chunks_http_port(static_cast<uint32_t>(http_port->load()));
          size_t budget = std::min<size_t>(c->req().chunk_list_bytes(), Repository::kFeedListBytes);
          absl::flat_hash_set<std::string> sent;
          repo->AppendChunkLists(r->manifest_envelope(), &budget, &sent, r->mutable_chunk_lists());
          *c->resp() = std::move(*r);
          c->Answer(grpc::Status::OK);
        } else {
          c->Answer(ToGrpc(r.status()));
        }
      };
      const bool queued = pool->TrySubmit([repo, on_demand, call, answer] {
        auto r = repo->Resolve(call->req().ref(), call->req().include_withheld());
        if (!absl::IsNotFound(r.status()) || on_demand == nullptr) return answer(call, r);
        auto ref = ParseRef(call->req().ref());
        if (!ref.ok()) return answer(call, r);
        std::string upstream_ref = !ref->digest.empty()    ? "@" + ref->digest
                                   : !ref->version.empty() ? ref->version
                                                           : ref->tag;
        // A request from another node's on-demand fetch says how many such
        // nodes it passed; beyond a bound this node answers from what it
        // holds (upstreams in a loop would otherwise ask each other forever).
        int hops = 0;
        const auto& md = call->ctx()->client_metadata();
        if (auto h = md.find(GrpcUpstream::kOnDemandHopsHeader); h != md.end()) {
          hops = std::clamp(std::atoi(std::string(h->second.data(), h->second.size()).c_str()), 0,
                            OnDemand::kMaxHops);
        }
        auto fetch = on_demand->Begin(ref->name, upstream_ref, "", hops);
        if (absl::IsResourceExhausted(fetch.status())) return answer(call, fetch.status());
        if (!fetch.ok()) return answer(call, r);  // not upstream either: the node's NotFound
        (*fetch)->OnDone([repo, call, answer](const absl::Status& st) {
          if (!st.ok()) {
            return answer(call, absl::UnavailableError("fetching on demand from upstream failed: " +
                                                       st.ToString()));
          }
          answer(call, repo->Resolve(call->req().ref(), call->req().include_withheld()));
        });
      });
      if (!queued) call->Answer(kBusy);
    });
    ServeOnPool<GetObjectRequest, GetObjectResponse>(
        "GetObject", pool, [repo](auto* call) -> absl::StatusOr<GetObjectResponse> {
          CAIRN_ASSIGN_OR_RETURN(std::string data, repo->GetObject(call->req().digest()));
          GetObjectResponse out;
          out.set_data(std::move(data));
          return out;
        });
    ServeOnPool<ListRequest, ListResponse>("List", pool, [repo](auto* call) {
      return repo->List(call->req().prefix(), call->req().include_withheld(),
                        call->req().include_pending());
    });
    ServeOnPool<LineageRequest, LineageResponse>(
        "Lineage", pool, [repo](auto* call) { return repo->Lineage(call->req().ref()); });
  }
};

}  // namespace

std::unique_ptr<cairn::v1::Registry::CallbackService> NewRegistryService(
    Repository* repo, WorkPool* pool, StreamLimits limits, OnDemand* on_demand,
    std::shared_ptr<const std::atomic<int>> chunks_http_port) {
  return std::make_unique<RegistryImpl>(repo, pool, limits, on_demand, std::move(chunks_http_port));
}

}  // namespace cairn::node
