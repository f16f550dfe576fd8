// A TCP proxy between an S3 client and radosgw that injects the faults an
// object store and its network really show (issue 17): 503 answers, dropped
// connections, delays, flipped bytes and answers cut short. It asks the
// server to close after each answer ("Connection: close"), so one
// connection carries one request and a fault hits exactly the requests it
// is meant for. Used in-process by tests/s3/s3_fault_test.cc and as the
// s3_fault_proxy program by tests/s3/faults.sh.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace cairn::testing {

class FaultProxy {
 public:
  enum class Fault {
    kNone,
    kUnavailable,  // answers 503 Slow Down itself
    kDrop,         // closes the connection without an answer
    kDelay,        // holds the request for delay_ms, then passes it on
    kFlip,         // flips the first byte of the answer's body
    kCut,          // passes half of the answer's body on, then closes
  };
  struct Rule {
    Fault fault = Fault::kNone;
    std::string method;     // "GET", "PUT"...; "" for any
    std::string path_part;  // a substring of the request's path; "" for any
    int count = -1;         // how many requests it hits; -1: all until changed
    int delay_ms = 0;
  };

  // Listens on 127.0.0.1 (port 0) and passes requests to upstream
  // ("http://host:port" or "host:port").
  static absl::StatusOr<std::unique_ptr<FaultProxy>> Start(const std::string& upstream);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void Set(Rule r);
  void Clear() { Set(Rule{}); }
  // Requests a rule hit so far, and requests seen.
  int faults() const { return faults_.load(); }
  int requests() const { return requests_.load(); }
  // "NAME [METHOD [PATH_PART]]", NAME one of none 503 drop delay:MS flip cut.
  static absl::StatusOr<Rule> ParseRule(const std::string& text);

 private:
  FaultProxy() = default;
  void AcceptLoop();
  void Serve(int client);
  Fault Decide(const std::string& method, const std::string& path, int* delay_ms);

  std::string up_host_;
  int up_port_ = 0;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::atomic<int> faults_{0}, requests_{0};
  absl::Mutex mu_;
  Rule rule_ ABSL_GUARDED_BY(mu_);
  int serving_ ABSL_GUARDED_BY(mu_) = 0;  // connections being served
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;
};

}  // namespace cairn::testing
