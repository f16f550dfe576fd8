// The conformance suite every MetaStore passes. A backend's test adds one
// line naming a factory type with
//   static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& dir);
// as in
//   INSTANTIATE_TYPED_TEST_SUITE_P(Rocks, MetaStoreConformance, RocksFactory);
// Include this header from one test file per test executable.
#pragma once

#include <string>
#include <vector>

#include "cairn/store.h"
#include "testing.h"

namespace cairn::testing {

template <typename F>
class MetaStoreConformance : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = F::Open(dir_ / "meta");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  TempDir dir_;
  std::unique_ptr<MetaStore> store_;
};

TYPED_TEST_SUITE_P(MetaStoreConformance);

TYPED_TEST_P(MetaStoreConformance, CommitIsAtomicAcrossTablesAndScanHonoursPrefix) {
  auto& m = this->store_;
  ASSERT_TRUE(m->Commit({{Table::kReleases,
                          std::string("a/b\0"
                                      "1",
                                      5),
                          "d1"},
                         {Table::kReleases,
                          std::string("a/c\0"
                                      "1",
                                      5),
                          "d2"},
                         {Table::kObjects, "d1", "bytes"}},
                        true)
                  .ok());
  EXPECT_EQ(*m->Get(Table::kObjects, "d1"), "bytes");
  EXPECT_THAT(m->Get(Table::kTags, "d1"), StatusIs(absl::StatusCode::kNotFound));
  std::vector<std::string> keys;
  ASSERT_TRUE(m->Scan(Table::kReleases, "a/b", [&](std::string_view k, std::string_view) {
                 keys.emplace_back(k);
                 return true;
               }).ok());
  EXPECT_EQ(keys.size(), 1u);
  ASSERT_TRUE(m->Commit({{Table::kObjects, "d1", std::nullopt}}, false).ok());
  EXPECT_THAT(m->Get(Table::kObjects, "d1"), StatusIs(absl::StatusCode::kNotFound));
}

TYPED_TEST_P(MetaStoreConformance, ScanStopsWhenAskedAndDeletesVanish) {
  auto& m = this->store_;
  std::vector<WriteOp> ops;
  for (int i = 0; i < 10; ++i) ops.push_back({Table::kFeed, std::string(1, char('a' + i)), "v"});
  ASSERT_TRUE(m->Commit(ops, true).ok());
  int seen = 0;
  ASSERT_TRUE(m->Scan(Table::kFeed, "", [&](std::string_view, std::string_view) {
                 return ++seen < 3;
               }).ok());
  EXPECT_EQ(seen, 3);
  ASSERT_TRUE(m->Commit({{Table::kFeed, "a", std::nullopt}}, true).ok());
  this->Reopen();  // durable across a reopen
  EXPECT_THAT(m->Get(Table::kFeed, "a"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(*m->Get(Table::kFeed, "b"), "v");
}

REGISTER_TYPED_TEST_SUITE_P(MetaStoreConformance, CommitIsAtomicAcrossTablesAndScanHonoursPrefix,
                            ScanStopsWhenAskedAndDeletesVanish);

}  // namespace cairn::testing
