// A malicious mirror for tests: a real gRPC server (127.0.0.1:0) serving the
// Registry and Chunks services from an honest repository, bent by one attack.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "cairn/repository.h"
#include "cairn/store.h"
#include "cairn/v1/service.grpc.pb.h"

namespace cairn::testing {

enum class Attack {
  kNone,
  kWrongChunkBytes,  // every chunk's bytes altered (length kept)
  kLongChunks,       // every chunk longer than asked (endless data)
  kExtraChunks,      // answers each request, then keeps sending chunks
  kTrickle,          // one chunk every `trickle_ms`
  kStall,            // reads requests, never answers
  kOversized,        // one 70 MiB message
  kOldTag,           // Resolve returns `old_resolve` (an older, validly signed tag)
  kOtherManifest,    // the tag it is asked for, with `other_manifest` as the manifest
  kForgedTag,        // tag record's version raised to 1000, signature kept
  kWrongChunkList,   // GetObject answers with `other_object`
  kMissingChunks,    // says it has no chunk
};

class HostileNode {
 public:
  HostileNode(Repository* repo, ChunkStore* chunks, Attack attack);
  ~HostileNode();
  const std::string& address() const { return address_; }

  // For kOldTag: a Resolve answer captured earlier. For kOtherManifest: the
  // envelope of another release. For kWrongChunkList: any other object.
  cairn::v1::ResolveResponse old_resolve;
  std::string other_manifest;
  std::string other_object;
  int trickle_ms = 1500;
  // kTrickle: if set, each chunk instead takes its length at this rate (a
  // thin link: a large chunk arrives whole after a long gap, a small one soon).
  uint64_t trickle_bytes_per_second = 0;
  int delay_ms_per_batch = 0;  // any attack: a slower link
  std::atomic<uint64_t> chunks_served{0};
  // GetMany request messages received (whatever the attack does with them).
  std::atomic<uint64_t> batches_seen{0};

 private:
  class Registry;
  class Chunks;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Chunks> chunks_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace cairn::testing
