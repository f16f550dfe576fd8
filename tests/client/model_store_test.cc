// The client's store index (client/model_store.h) on its own: a file renamed
// into place keeps its locations without rewriting them, the locations of
// the file it replaced are forgotten, and the index's write-ahead logs stay
// bounded however many runs write to it.
#include "model_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cairn/hash.h"
#include "gtest/gtest.h"
#include "testing.h"

namespace cairn::client {
namespace {

namespace fs = std::filesystem;

// Chunks of `n` distinct 4 KiB blocks, and the file bytes holding them.
std::vector<ChunkAt> Chunks(int n, int seed, std::string* bytes) {
  std::vector<ChunkAt> out;
  bytes->clear();
  for (int i = 0; i < n; ++i) {
    std::string c(4096, static_cast<char>('a' + (i + seed) % 26));
    std::memcpy(c.data(), &i, sizeof i);
    std::memcpy(c.data() + 8, &seed, sizeof seed);
    out.push_back({Sha256Of(c), bytes->size(), static_cast<uint32_t>(c.size())});
    *bytes += c;
  }
  return out;
}

uint64_t LogBytes(const fs::path& index) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(index)) {
    if (e.path().extension() == ".log") total += fs::file_size(e.path());
  }
  return total;
}

TEST(ModelStoreTest, ARenamedFileKeepsItsLocationsAndTheReplacedFilesAreForgotten) {
  testing::TempDir dir;
  auto store = std::move(ModelStore::Open(dir / "s")).value();
  std::string a_bytes, b_bytes;
  auto a = Chunks(8, 1, &a_bytes);
  auto b = Chunks(8, 2, &b_bytes);
  const std::string tmp = dir / "tmp", final = dir / "final";
  // `final` first holds b; a is written to tmp, then renamed over it.
  testing::WriteFile(final, b_bytes);
  ASSERT_TRUE(store->AddLocations(final, b).ok());
  testing::WriteFile(tmp, a_bytes);
  ASSERT_TRUE(store->AddLocations(tmp, a).ok());
  fs::rename(tmp, final);
  ASSERT_TRUE(store->RenameFile(tmp, final).ok());

  auto check = [&](ModelStore& s) {
    for (const auto& c : a) {
      auto locs = s.Find(c.digest);
      ASSERT_TRUE(locs.ok());
      ASSERT_EQ(locs->size(), 1u);
      EXPECT_EQ((*locs)[0].path, final);
      EXPECT_EQ((*locs)[0].offset, c.offset);
      std::string got;
      EXPECT_TRUE(s.Read(c.digest, &got).ok());
    }
    // b's chunks named the replaced file: no location any more.
    for (const auto& c : b) EXPECT_TRUE(s.Find(c.digest)->empty());
  };
  check(*store);
  // The same after reopening (not only in this process's memory).
  store.reset();
  store = std::move(ModelStore::Open(dir / "s")).value();
  check(*store);
  // A later file under the old temporary name gets an id of its own.
  std::string c_bytes;
  auto c = Chunks(4, 3, &c_bytes);
  testing::WriteFile(tmp, c_bytes);
  ASSERT_TRUE(store->AddLocations(tmp, c).ok());
  EXPECT_EQ((*store->Find(c[0].digest))[0].path, tmp);
  EXPECT_EQ((*store->Find(a[0].digest))[0].path, final);
  // Dropping by path forgets only that file's entries.
  ASSERT_TRUE(store->DropLocations(final, {a[0].digest}).ok());
  EXPECT_TRUE(store->Find(a[0].digest)->empty());
  EXPECT_EQ(store->Find(a[1].digest)->size(), 1u);
}

TEST(ModelStoreTest, AFingerprintIsForgottenWithItsFileAndWhenAChunkFailsARead) {
  testing::TempDir dir;
  auto store = std::move(ModelStore::Open(dir / "s")).value();
  std::string bytes;
  auto chunks = Chunks(4, 9, &bytes);
  const std::string tmp = dir / "tmp", final = dir / "final";
  testing::WriteFile(tmp, bytes);
  ASSERT_TRUE(store->AddLocations(tmp, chunks).ok());
  std::filesystem::rename(tmp, final);
  struct stat st;
  ASSERT_EQ(::stat(final.c_str(), &st), 0);
  ASSERT_TRUE(store->RenameFile(tmp, final, &st, "sha256:root").ok());
  auto known = store->Known(final);
  ASSERT_TRUE(known.ok());
  EXPECT_EQ(known->fingerprint, ModelStore::Fingerprint(st));
  EXPECT_EQ(known->root, "sha256:root");
  EXPECT_EQ(store->FilesWithRoot("sha256:root")->size(), 1u);
  // A chunk that fails a read (here: the bytes changed under the same
  // fingerprint, as rot would) clears the fingerprint at once.
  auto loc = (*store->Find(chunks[1].digest))[0];
  EXPECT_EQ(*store->FingerprintOf(loc.file_id), ModelStore::Fingerprint(st));
  ASSERT_TRUE(store->ForgetLocation(loc, chunks[1].digest).ok());
  EXPECT_EQ(*store->FingerprintOf(loc.file_id), "");
  EXPECT_TRUE(store->FilesWithRoot("sha256:root")->empty());
  // ForgetPath: nothing recorded of the file survives, not even after a
  // reopen, and its old entries no longer name it.
  ASSERT_TRUE(store->NoteKnownGood(final, st, "sha256:root").ok());
  ASSERT_TRUE(store->ForgetPath(final).ok());
  store.reset();
  store = std::move(ModelStore::Open(dir / "s")).value();
  EXPECT_EQ(store->Known(final)->fingerprint, "");
  EXPECT_TRUE(store->Find(chunks[0].digest)->empty());
  EXPECT_TRUE(store->FilesWithRoot("sha256:root")->empty());
  // A sweep drops the records of a file that is gone (a temporary file of a
  // failed pull), and nothing of a live one.
  const std::string gone = dir / "gone";
  testing::WriteFile(gone, bytes);
  ASSERT_TRUE(store->AddLocations(gone, chunks).ok());
  ASSERT_TRUE(store->AddLocations(final, chunks).ok());
  std::filesystem::remove(gone);
  store.reset();
  store = std::move(ModelStore::Open(dir / "s")).value();
  uint64_t dropped = 0;
  ASSERT_TRUE(store->SweepRecords(&dropped).ok());
  EXPECT_EQ(dropped, 2u);  // its "path" and "file" records
  auto locs = store->Find(chunks[0].digest);
  ASSERT_EQ(locs->size(), 1u);
  EXPECT_EQ((*locs)[0].path, final);
}

TEST(ModelStoreTest, TheIndexsLogsStayBoundedOverManyRuns) {
  // Each run of the client (an open, some writes, a close) leaves its
  // write-ahead log unflushed, replayed at the next open; a log goes only
  // once every table holding entries in it was flushed, which before
  // happened only when a table filled its 4 MiB write buffer. 18 runs of
  // 200 KB (a 1 GiB pull stores ~550 KB of chunk lists) kept 3.6 MB of logs,
  // replayed by every command; now past 2 MiB the oldest is flushed away.
  testing::TempDir dir;
  for (int run = 0; run < 18; ++run) {
    auto store = std::move(ModelStore::Open(dir / "s")).value();
    ASSERT_TRUE(
        store->PutObject("sha256:run" + std::to_string(run), testing::RandomBytes(200 << 10, run))
            .ok());
    ASSERT_TRUE(store->PutTag("acme/m", "t" + std::to_string(run), "x").ok());
  }
  const uint64_t logs = LogBytes(dir / "s/index");
  EXPECT_LT(logs, 2560u << 10) << logs << " bytes of write-ahead log kept";
  // And nothing was lost on the way.
  auto store = std::move(ModelStore::Open(dir / "s")).value();
  for (int run = 0; run < 18; ++run) {
    auto got = store->GetObject("sha256:run" + std::to_string(run));
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, testing::RandomBytes(200 << 10, run));
  }
}

}  // namespace
}  // namespace cairn::client
