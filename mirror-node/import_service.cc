#include "import_service.h"

#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "cairn/bundle.h"
#include "cairn/limits.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "service_common.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using cairn::v1::ImportRequest;
using cairn::v1::ImportResponse;

bool IsLoopbackPeer(std::string_view peer) {
  if (peer.rfind("unix:", 0) == 0) return true;
  if (peer.rfind("ipv4:", 0) == 0) return peer.substr(5).rfind("127.", 0) == 0;
  if (peer.rfind("ipv6:", 0) == 0) {
    std::string_view a = peer.substr(5);
    for (std::string_view open : {"[", "%5B", "%5b"}) {
      if (a.rfind(open, 0) == 0) {
        a.remove_prefix(open.size());
        break;
      }
    }
    return a.rfind("::1]", 0) == 0 || a.rfind("::1%5", 0) == 0 || a.rfind("::ffff:127.", 0) == 0;
  }
  return false;
}

namespace {

// The call's messages as the importer's byte stream. Reads block (with the
// idle limit) until the reactor has the next message.
class ImportReactor final : public grpc::ServerReadReactor<ImportRequest>, public ByteSource {
 public:
  ImportReactor(Repository* repo, ImportGate* gate, std::string peer, ImportResponse* resp)
      : repo_(repo), gate_(gate), peer_(std::move(peer)), resp_(resp) {
    StartRead(&req_);
    worker_ = std::thread([this] { Work(); });
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (!ok) {
      eof_ = true;
    } else {
      data_ = std::move(*req_.mutable_data());
      offset_ = 0;
      has_ = true;
    }
  }
  void OnCancel() override {
    cancel_.Cancel();
    absl::MutexLock l(&mu_);
    cancelled_ = true;
  }
  void OnDone() override {
    worker_.join();
    delete this;
  }

  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return has_ || eof_ || cancelled_; };
    const absl::Time give_up = absl::Now() + absl::Seconds(gate_->idle_seconds);
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), give_up)) {
      return absl::AbortedError(StrCat("the client sent nothing for ", gate_->idle_seconds,
                                       " s: import dropped (it resumes when run again)"));
    }
    if (cancelled_) return absl::CancelledError("the client went away: import stopped");
    if (!has_) return size_t{0};  // the client is done
    const size_t k = std::min(n, data_.size() - offset_);
    std::memcpy(buf, data_.data() + offset_, k);
    offset_ += k;
    if (offset_ == data_.size()) {
      has_ = false;
      data_.clear();
      StartRead(&req_);  // the next message, now that this one is used
    }
    return k;
  }

 private:
  void Work() {
    spdlog::info("import from {} started", peer_);
    ImportOptions o;
    o.cancel = &cancel_;
    auto r = ImportBundle(repo_, this, o);
    gate_->busy = false;
    if (!r.ok()) {
      spdlog::warn("import from {}: {}", peer_, r.status().ToString());
      Finish(ToGrpc(r.status()));
      return;
    }
    spdlog::info("import from {}: {}", peer_, DescribeImport(*r));
    *resp_ = std::move(*r);
    Finish(grpc::Status::OK);
  }

  Repository* repo_;
  ImportGate* gate_;
  const std::string peer_;
  ImportResponse* resp_;
  ImportRequest req_;
  Cancellation cancel_;
  absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  size_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  bool has_ ABSL_GUARDED_BY(mu_) = false;
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;  // last: starts once the rest is set
};

}  // namespace

grpc::ServerReadReactor<ImportRequest>* NewImportReactor(Repository* repo, ImportGate* gate,
                                                         grpc::CallbackServerContext* ctx,
                                                         ImportResponse* resp) {
  using Reactor = grpc::ServerReadReactor<ImportRequest>;
  const std::string peer = ctx->peer();
  const bool allowed = gate->from == "any" || (gate->from == "loopback" && IsLoopbackPeer(peer));
  if (!allowed) {
    return new Refused<Reactor>(
        grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                     StrCat("this node takes bundles over the network only from ",
                            gate->from == "none" ? "nobody" : "this machine",
                            " ([node] import_from); on the node, run cairn-node import FILE")));
  }
  bool expected = false;
  if (!gate->busy.compare_exchange_strong(expected, true)) {
    return new Refused<Reactor>(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                             "an import is already running on this node; try "
                                             "again when it has finished"));
  }
  return new ImportReactor(repo, gate, peer, resp);
}

}  // namespace cairn::node
