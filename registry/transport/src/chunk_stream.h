// One connection's chunk requests and answers, for the Fetcher: over gRPC
// (Chunks.GetMany) or, where the node's Resolve answer names a plain-HTTP
// chunk port, over HTTP/1.1 (POST /v1/chunks, docs/protocol.md), which the
// node answers with sendfile from its pack files.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "cairn/transport/channel.h"
#include "cairn/v1/service.pb.h"

namespace cairn {

class ChunkStream {
 public:
  virtual ~ChunkStream() = default;
  // Writer thread: asks for the chunks `req` names (answered in order).
  // False once the stream is broken.
  virtual bool Ask(const cairn::v1::GetChunksRequest& req) = 0;
  // Writer thread: nothing more will be asked.
  virtual void DoneAsking() = 0;
  // Reader thread: the next chunk answered (digest, and data or missing).
  // False at the end of the stream or once it broke.
  virtual bool Next(cairn::v1::ChunkData* c) = 0;
  // After Next returned false and the writer is done: how the stream ended.
  virtual absl::Status Finish() = 0;
  // Any thread: ends the stream; blocked calls return.
  virtual void Cancel() = 0;
};

// The stream to use for `conn` (not owned; outlives the stream): HTTP when
// the node named a chunk port and the address is not TLS, gRPC otherwise,
// and gRPC too when that port cannot be reached.
std::unique_ptr<ChunkStream> OpenChunkStream(Connection* conn);

}  // namespace cairn
