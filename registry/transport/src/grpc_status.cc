#include "cairn/transport/grpc_status.h"

#include <string>

#include "cairn/strings.h"

namespace cairn {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(s.error_code());
  std::string msg = s.error_message();
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    msg = "deadline exceeded (node too slow or unreachable)";
  } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    msg = "node unavailable: " + msg;
  }
  return absl::Status(code, StrCat(what, ": ", msg));
}

}  // namespace cairn
