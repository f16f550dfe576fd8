// The RocksDB meta store: the conformance suite, and one opener at a time.
#include "cairn/store.h"
#include "meta_store_conformance.h"
#include "testing.h"

namespace cairn::testing {

struct RocksFactory {
  static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& dir) {
    return OpenRocksMetaStore(dir);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Rocks, MetaStoreConformance, RocksFactory);

}  // namespace cairn::testing

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

TEST(RocksMetaStoreTest, SecondOpenOfTheSameDirectoryIsRefused) {
  testing::TempDir dir;
  auto m = std::move(OpenRocksMetaStore(dir / "meta")).value();
  EXPECT_THAT(OpenRocksMetaStore(dir / "meta"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace cairn
