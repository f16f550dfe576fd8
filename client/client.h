// The cairn client library: talk to a node, publish a directory as a signed
// release, pull a release into a directory, verify a pulled tree.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/chunker.h"
#include "cairn/trust.h"
#include "cairn/v1/service.grpc.pb.h"

namespace cairn::client {

// gRPC status to canonical status, prefixed with what was being done.
absl::Status FromGrpc(const grpc::Status& s, std::string_view what);

// A connection to one node. Every call carries a deadline. Thread-compatible.
class Connection {
 public:
  // Connects to HOST:PORT, waiting at most `timeout_seconds`. Unavailable
  // (naming the node) when it cannot be reached in time.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& address,
                                                          int timeout_seconds);
  // Over an existing channel (tests: in-process channels).
  Connection(std::shared_ptr<grpc::Channel> channel, std::string address, int timeout_seconds);

  // A client context whose deadline is `timeout_seconds` from now.
  std::unique_ptr<grpc::ClientContext> Context() const;
  std::unique_ptr<grpc::ClientContext> Context(int seconds) const;

  cairn::v1::Registry::Stub* registry() { return registry_.get(); }
  cairn::v1::Chunks::Stub* chunks() { return chunks_.get(); }
  cairn::v1::Publish::Stub* publish() { return publish_.get(); }
  const std::string& address() const { return address_; }
  int timeout_seconds() const { return timeout_seconds_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string address_;
  int timeout_seconds_;
  std::unique_ptr<cairn::v1::Registry::Stub> registry_;
  std::unique_ptr<cairn::v1::Chunks::Stub> chunks_;
  std::unique_ptr<cairn::v1::Publish::Stub> publish_;
};

struct PublishOptions {
  std::string dir;
  std::string name;
  std::string version;
  std::vector<std::string> key_paths;   // at least one
  std::string tag = "latest";           // empty: no tag
  std::optional<uint64_t> tag_version;  // default: node's current + 1
  int tag_expires_days = 90;
  std::string base;  // NS/MODEL@sha256:... or NS/MODEL[:TAG], resolved on the node
  std::string relation = "finetune";
  std::string license;
  ChunkerParams chunker;
  bool progress = false;  // progress lines on stderr
};

struct PublishResult {
  std::string manifest;
  std::string name, version, tag;
  uint64_t tag_version = 0;
  uint64_t bytes_total = 0, bytes_uploaded = 0;
  uint64_t chunks_total = 0, chunks_uploaded = 0;
  uint64_t files = 0;
  bool already_present = false;
  double seconds = 0;
};

// Publishes opts.dir. Refuses (InvalidArgument) an empty directory, symlinks,
// special files, unsafe paths and files that change while being read.
absl::StatusOr<PublishResult> Publish(Connection& node, const PublishOptions& opts);

struct PullOptions {
  std::string ref;
  std::string out;
  std::string cache_dir;
  size_t window_bytes = 16 << 20;  // bytes requested but not yet received
  uint64_t min_rate = 32 << 10;    // bytes/s below which a chunk stream times out
  // fdatasync each file before its rename. Default: false, like curl, wget
  // and huggingface_hub: a file appears under its name only once verified,
  // and `cairn verify` re-checks a tree after a power loss.
  bool fsync = false;
  bool progress = false;
  // How long to wait for a cache held by another cairn process; < 0 waits
  // for ever. Default: for ever (like apt's lock), with a message on stderr.
  int cache_wait_seconds = -1;
};

struct PullResult {
  std::string manifest, name, version;
  uint64_t bytes_total = 0, bytes_fetched = 0;
  uint64_t chunks_total = 0, chunks_fetched = 0, chunks_from_cache = 0;
  uint64_t files = 0;
  double seconds = 0;
};

// Resolves, verifies against `trust` before writing anything, then assembles
// each file under a temporary name, checks its SHA-256 and renames it.
// Writes the signed manifest to OUT/.cairn/manifest.envelope.
absl::StatusOr<PullResult> Pull(Connection& node, const TrustRootView& trust,
                                const PullOptions& opts);

struct VerifyResult {
  std::string manifest, name, version;
  uint64_t files_ok = 0;
  std::vector<std::string> problems;  // "PATH: reason", one per differing file
  std::vector<std::string> extra;     // files present but not in the manifest
};

// Re-checks DIR against DIR/.cairn/manifest.envelope, verified with `trust`.
absl::StatusOr<VerifyResult> VerifyTree(const std::string& dir, const TrustRootView& trust);

// Resolves a ref on the node and verifies tag and manifest against `trust`
// (when given). Returns the manifest and its digest.
struct Resolved {
  std::string digest;
  std::string envelope;
  cairn::v1::Manifest manifest;
  std::optional<cairn::v1::TagRecord> tag;
};
absl::StatusOr<Resolved> ResolveVerified(Connection& node, const TrustRootView* trust,
                                         const std::string& ref);

}  // namespace cairn::client
