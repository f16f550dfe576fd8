// Unary RPCs with a receive deadline. gRPC hands a unary call to the
// application only once its whole request has arrived, so a client that
// declares a request, sends part of it and stalls holds node memory for as
// long as it keeps the connection (issue 12 A). Every unary method of the
// node is therefore served as a bidirectional stream of one request and one
// answer: the call exists from its first header, and the stream watchdog
// cancels it unless the request is complete within StreamLimits::idle. On
// the wire nothing changes: clients still call a unary method.
#pragma once

#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/server_callback_handlers.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cairn/transport/grpc_status.h"
#include "service_common.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

// One unary call in progress: its request, its response, and how it is
// answered. Answer() is called exactly once, from any thread; the call and
// its request and response live until then.
template <typename Req, typename Resp>
class UnaryCall final : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  using Handler = std::function<void(UnaryCall*)>;
  UnaryCall(grpc::CallbackServerContext* ctx, const StreamLimits& limits, const Handler* handler,
            const char* method)
      : ctx_(ctx),
        limits_(limits),
        handler_(handler),
        watch_(limits.watchdog->Watch([ctx, method, idle = limits.idle] {
          spdlog::warn("{} from {}: request not complete within {}s, cancelled", method,
                       ctx->peer(), std::chrono::duration_cast<std::chrono::seconds>(idle).count());
          ctx->TryCancel();
        })) {
    limits_.watchdog->Arm(watch_, limits_.idle);
    this->StartRead(&req_);
  }
  grpc::CallbackServerContext* ctx() const { return ctx_; }
  const Req& req() const { return req_; }
  Resp* resp() { return &resp_; }
  // Sends the response (when `s` is OK) and `s`. The client then has the
  // time the response takes at StreamLimits::min_rate, plus `idle`, to read it.
  void Answer(const grpc::Status& s) {
    if (!s.ok()) {
      limits_.watchdog->Disarm(watch_);
      this->Finish(s);
      return;
    }
    limits_.watchdog->Arm(watch_, limits_.idle + limits_.TimeToSend(resp_.ByteSizeLong()));
    this->StartWrite(&resp_);
  }
  void OnWriteDone(bool ok) override {
    limits_.watchdog->Disarm(watch_);  // only the status is left to send
    this->Finish(ok ? grpc::Status::OK
                    : grpc::Status(grpc::StatusCode::CANCELLED, "response not taken in time"));
  }

  void OnReadDone(bool ok) override {
    limits_.watchdog->Disarm(watch_);  // from here on the node is working
    if (!ok) {
      this->Finish(
          ctx_->IsCancelled()
              ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled before its request arrived")
              : grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request sent"));
      return;
    }
    (*handler_)(this);
  }
  void OnDone() override {
    limits_.watchdog->Forget(watch_);
    delete this;
  }

 private:
  grpc::CallbackServerContext* const ctx_;
  const StreamLimits limits_;
  const Handler* const handler_;
  const uint64_t watch_;
  Req req_;
  Resp resp_;
};

// A generated callback service whose unary methods are served by Serve*()
// instead of overriding its virtual methods.
template <typename Service>
class UnaryOverStream : public Service {
 protected:
  UnaryOverStream(const char* service_full_name, StreamLimits limits)
      : service_(service_full_name), limits_(limits) {}

  // Serves unary `method`: `handler` gets the call once its request arrived
  // and must Answer() it exactly once, now or later.
  template <typename Req, typename Resp>
  void Serve(const char* method, typename UnaryCall<Req, Resp>::Handler handler) {
    const auto* svc =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_);
    const auto* m = svc == nullptr ? nullptr : svc->FindMethodByName(method);
    if (m == nullptr || m->client_streaming() || m->server_streaming()) {
      spdlog::critical("{}.{} is not a unary method", service_, method);
      std::abort();  // a programming error, found by every test
    }
    auto h = std::make_shared<const typename UnaryCall<Req, Resp>::Handler>(std::move(handler));
    auto factory = [this, h, method](grpc::CallbackServerContext* ctx) {
      return new UnaryCall<Req, Resp>(ctx, limits_, h.get(), method);
    };
    // Streamed first (the method's type becomes BIDI_STREAMING, so gRPC
    // hands the call over at its headers), then the callback handler.
    this->MarkMethodStreamed(m->index(),
                             new grpc::internal::CallbackBidiHandler<Req, Resp>(factory));
    this->MarkMethodCallback(m->index(),
                             new grpc::internal::CallbackBidiHandler<Req, Resp>(factory));
  }

  // Serves unary `method` with `fn(call)` -> absl::StatusOr<Resp>, run on
  // `pool` (RESOURCE_EXHAUSTED when it is full).
  template <typename Req, typename Resp>
  void ServeOnPool(const char* method, WorkPool* pool,
                   std::function<absl::StatusOr<Resp>(UnaryCall<Req, Resp>*)> fn) {
    Serve<Req, Resp>(method, [pool, fn = std::move(fn)](UnaryCall<Req, Resp>* call) {
      RunOnPool(pool, call, fn);
    });
  }

 public:
  template <typename Req, typename Resp>
  static void RunOnPool(WorkPool* pool, UnaryCall<Req, Resp>* call,
                        const std::function<absl::StatusOr<Resp>(UnaryCall<Req, Resp>*)>& fn) {
    bool queued = pool->TrySubmit([call, &fn] {
      auto result = fn(call);
      if (result.ok()) {
        *call->resp() = std::move(*result);
        call->Answer(grpc::Status::OK);
      } else {
        call->Answer(ToGrpc(result.status()));
      }
    });
    if (!queued) call->Answer(kBusy);
  }

 private:
  const char* const service_;
  const StreamLimits limits_;
};

}  // namespace cairn::node
