// Asking a node what it holds: status, names, lineage.
#include "cairn/status.h"
#include "cairn/transport/grpc_status.h"
#include "client.h"

namespace cairn::client {

absl::StatusOr<cairn::v1::NodeInfoResponse> NodeStatus(Connection& node) {
  cairn::v1::NodeInfoResponse info;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.federation()->NodeInfo(ctx.get(), {}, &info),
                                 "node info of " + node.address()));
  return info;
}

absl::StatusOr<cairn::v1::ListResponse> ListNames(Connection& node, const std::string& prefix,
                                                  bool include_pending) {
  cairn::v1::ListRequest req;
  req.set_prefix(prefix);
  req.set_include_pending(include_pending);
  cairn::v1::ListResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(node.registry()->List(ctx.get(), req, &resp), "list on " + node.address()));
  return resp;
}

absl::StatusOr<cairn::v1::PendingResponse> PendingRelease(Connection& node,
                                                          const std::string& digest) {
  cairn::v1::PendingRequest req;
  req.set_manifest_digest(digest);
  cairn::v1::PendingResponse p;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.publish()->GetPending(ctx.get(), req, &p),
                                 "pending release on " + node.address()));
  return p;
}

absl::StatusOr<cairn::v1::LineageResponse> Children(Connection& node, const std::string& ref) {
  cairn::v1::LineageRequest req;
  req.set_ref(ref);
  cairn::v1::LineageResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(node.registry()->Lineage(ctx.get(), req, &resp), "lineage on " + node.address()));
  return resp;
}

}  // namespace cairn::client
