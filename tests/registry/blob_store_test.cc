// The BlobDB chunk store passes the same conformance suite.
#include "cairn/store.h"
#include "chunk_store_conformance.h"

namespace cairn::testing {

struct BlobFactory {
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Open(const std::string& dir) {
    return OpenBlobChunkStore(dir);
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Blob, ChunkStoreConformance, BlobFactory);

}  // namespace cairn::testing

namespace cairn {
namespace {}  // namespace
}  // namespace cairn
