// The pack store: the conformance suite, and what is its own (one opener at a
// time, corrupt pack bytes). Also the fault-injecting wrapper tests use.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "cairn/crc32c.h"
#include "cairn/store.h"
#include "chunk_store_conformance.h"
#include "fault_stores.h"
#include "pack_store_impl.h"
#include "rocksdb/db.h"
#include "testing.h"

namespace cairn::testing {

struct PackFactory {
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Open(const std::string& dir) {
    PackStoreOptions o;
    o.buffer_bytes = 256 << 10;
    o.pack_bytes = 1 << 20;  // small packs: exercise rolling
    return OpenPackChunkStore(dir, o);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Pack, ChunkStoreConformance, PackFactory);

}  // namespace cairn::testing

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

TEST(PackChunkStoreTest, SecondOpenOfSameDirectoryFails) {
  testing::TempDir dir;
  auto a = OpenPackChunkStore(dir / "s", {});
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(OpenPackChunkStore(dir / "s", {}), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(PackChunkStoreTest, CorruptPackBytesAreDataLossOnRead) {
  testing::TempDir dir;
  std::string c = testing::RandomBytes(50000, 9);
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    ASSERT_TRUE(s->Put(Sha256Of(c), c).ok());
    ASSERT_TRUE(s->Sync().ok());
  }
  // Flip a byte in the middle of the pack file.
  std::string pack = dir / "s/packs/pack-00000001.dat";
  std::string bytes = testing::ReadFile(pack);
  ASSERT_GT(bytes.size(), 30000u);
  bytes[30000] ^= 0xff;
  testing::WriteFile(pack, bytes);
  auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
  std::string out;
  EXPECT_THAT(s->Get(Sha256Of(c), &out), StatusIs(absl::StatusCode::kDataLoss));
  // Issue 12 #9, #10: a chunk found bad is no longer held, so the next Put
  // (a re-publish, a replication, a fetch) stores a good copy.
  EXPECT_FALSE(*s->Has(Sha256Of(c)));
  ASSERT_TRUE(s->Put(Sha256Of(c), c).ok());
  ASSERT_TRUE(s->Get(Sha256Of(c), &out).ok());
  EXPECT_EQ(out, c);
}

// Each chunk's CRC-32C is recorded with its place, so a reader (the HTTP
// gateway) can check the bytes without re-hashing them: on a fresh Put, after
// a reopen, and for records a crash left unindexed (found by the recovery).
TEST(PackChunkStoreTest, LocateGivesTheCrcOfTheBytesStored) {
  testing::TempDir dir;
  std::string a = testing::RandomBytes(70000, 3), b = testing::RandomBytes(5000, 4);
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    ASSERT_TRUE(s->Put(Sha256Of(a), a).ok());
    ASSERT_TRUE(s->Put(Sha256Of(b), b, PutMode::kDigestComputedFromData).ok());
    ASSERT_TRUE(s->Sync().ok());
    for (const std::string* c : {&a, &b}) {
      auto e = s->Locate(Sha256Of(*c));
      ASSERT_TRUE(e.ok()) << e.status();
      EXPECT_TRUE(e->has_crc32c);
      EXPECT_EQ(e->crc32c, Crc32c(*c));
    }
  }
  // The index lost (a crash before it was written): the recovery rebuilds
  // it from the pack records, CRCs included.
  std::filesystem::remove_all(dir / "s/index");
  auto s = OpenPackChunkStore(dir / "s", {});
  ASSERT_TRUE(s.ok()) << s.status();
  for (const std::string* c : {&a, &b}) {
    auto e = (*s)->Locate(Sha256Of(*c));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_TRUE(e->has_crc32c);
    EXPECT_EQ(e->crc32c, Crc32c(*c));
  }
}

// A chunk indexed before CRCs were kept gets one when the scrub's check has
// verified its bytes.
TEST(PackChunkStoreTest, ACheckedChunkWithoutACrcGetsOne) {
  testing::TempDir dir;
  const std::string c = testing::RandomBytes(40000, 5);
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    ASSERT_TRUE(s->Put(Sha256Of(c), c).ok());
    ASSERT_TRUE(s->Sync().ok());
  }
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open({}, dir / "s/index", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string v;
    ASSERT_TRUE(db->Get({}, pack::DigestSlice(Sha256Of(c)), &v).ok());
    ASSERT_EQ(v.size(), 28u);
    ASSERT_TRUE(db->Put({}, pack::DigestSlice(Sha256Of(c)), v.substr(0, 24)).ok());
  }
  auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
  EXPECT_FALSE(s->Locate(Sha256Of(c))->has_crc32c);
  ASSERT_EQ(*s->Check(Sha256Of(c)), c.size());
  auto e = s->Locate(Sha256Of(c));
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->has_crc32c);
  EXPECT_EQ(e->crc32c, Crc32c(c));
}

// Entries written before CRCs were kept (16 and 24 bytes) are still read,
// with no CRC; longer ones (a later version's) by their first 28 bytes, not
// dropped as damage.
TEST(PackChunkStoreTest, IndexEntriesOfEveryLayoutAreRead) {
  pack::Loc l{7, 123456789, 65536, 1764000000, true, 0xdeadbeef};
  const std::string now = pack::EncodeLoc(l);
  ASSERT_EQ(now.size(), 28u);
  pack::Loc r;
  ASSERT_TRUE(pack::DecodeLoc(now, &r));
  EXPECT_EQ(r.pack, 7u);
  EXPECT_EQ(r.offset, 123456789u);
  EXPECT_EQ(r.length, 65536u);
  EXPECT_EQ(r.stored_unix, 1764000000);
  EXPECT_TRUE(r.has_crc);
  EXPECT_EQ(r.crc, 0xdeadbeefu);
  ASSERT_TRUE(pack::DecodeLoc(now.substr(0, 24), &r));
  EXPECT_FALSE(r.has_crc);
  EXPECT_EQ(r.stored_unix, 1764000000);
  ASSERT_TRUE(pack::DecodeLoc(now.substr(0, 16), &r));
  EXPECT_FALSE(r.has_crc);
  EXPECT_EQ(r.stored_unix, 0);
  EXPECT_EQ(r.length, 65536u);
  ASSERT_TRUE(pack::DecodeLoc(now + "later", &r));
  EXPECT_EQ(r.crc, 0xdeadbeefu);
  EXPECT_FALSE(pack::DecodeLoc(now.substr(0, 20), &r));
  // A damaged length (no chunk is over 1 MiB) is refused, not read: it would
  // size the read buffer.
  pack::Loc huge = l;
  huge.length = 0xfffffff0u;
  EXPECT_FALSE(pack::DecodeLoc(pack::EncodeLoc(huge), &r));
  huge.length = 0;
  EXPECT_FALSE(pack::DecodeLoc(pack::EncodeLoc(huge), &r));
  l.has_crc = false;
  EXPECT_EQ(pack::EncodeLoc(l).size(), 24u);
}

// Issue 12 #23: every open (each pull, on the client cache) left an empty
// pack behind: 5 pulls, 2 -> 7 files.
TEST(PackChunkStoreTest, OpeningWithoutWritingLeavesNoNewPackFile) {
  testing::TempDir dir;
  auto count = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir / "s/packs")) n += e.exists();
    return n;
  };
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    ASSERT_TRUE(s->Put(Sha256Of("abc"), "abc", PutMode::kVerify).ok());
    ASSERT_TRUE(s->Sync().ok());
  }
  size_t after_write = count();
  for (int i = 0; i < 5; ++i) {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    std::string got;
    ASSERT_TRUE(s->Get(Sha256Of("abc"), &got).ok());
  }
  EXPECT_EQ(count(), after_write);
  // An empty pack (left by a crash, or one cut to nothing that the index
  // may still name) is never written into again: opening adds nothing, and
  // the next write goes to a new pack after it.
  testing::WriteFile(dir / "s/packs/pack-00000009.dat", "");
  { auto s = std::move(OpenPackChunkStore(dir / "s", {})).value(); }
  EXPECT_EQ(count(), after_write + 1);
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", {})).value();
    ASSERT_TRUE(s->Put(Sha256Of("def"), "def", PutMode::kVerify).ok());
    ASSERT_TRUE(s->Sync().ok());
  }
  EXPECT_EQ(std::filesystem::file_size(dir / "s/packs/pack-00000009.dat"), 0u);
  EXPECT_GT(std::filesystem::file_size(dir / "s/packs/pack-00000010.dat"), 0u);
}

// Issue 12 #19: a node killed during a 200 MiB publish kept the bytes it had
// written in its pack but not their index entries (those wait for an
// fdatasync every 1 GiB), so the re-publish uploaded all of it again. The
// next open now indexes every whole record past the indexed tail.
TEST(PackChunkStoreTest, ChunksWrittenBeforeACrashAreFoundAfterIt) {
  testing::TempDir dir;
  PackStoreOptions o;
  o.buffer_bytes = 64 << 10;  // written out every 64 KiB, synced every 1 GiB
  std::vector<std::string> chunks;
  for (int i = 0; i < 40; ++i) chunks.push_back(testing::RandomBytes(60000 + i, 500 + i));
  auto crash_after = [&](size_t from, size_t to) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {  // the node: stores, then dies without closing (kill -9)
      auto s = OpenPackChunkStore(dir / "s", o);
      if (!s.ok()) ::_exit(2);
      for (size_t i = from; i < to; ++i) {
        if (!(*s)->Put(Sha256Of(chunks[i]), chunks[i]).ok()) ::_exit(3);
      }
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  };
  crash_after(0, 20);
  size_t found = 0;
  {
    auto s = std::move(OpenPackChunkStore(dir / "s", o)).value();
    for (size_t i = 0; i < 20; ++i) {
      if (*s->Has(Sha256Of(chunks[i]))) {
        ++found;
        std::string out;
        ASSERT_TRUE(s->Get(Sha256Of(chunks[i]), &out).ok());
        EXPECT_EQ(out, chunks[i]);
        EXPECT_TRUE(*s->HasIntact(Sha256Of(chunks[i])));
      }
    }
  }
  // All but what was still in the 64 KiB buffer (at most two records).
  EXPECT_GE(found, 18u);
  // A second crash, then a torn last record (cut mid-write): what comes
  // before it is kept, the torn one is not, and the store appends fine.
  crash_after(20, 40);
  std::string newest;
  for (const auto& e : std::filesystem::directory_iterator(dir / "s/packs")) {
    if (e.file_size() > 0) newest = std::max(newest, e.path().string());
  }
  std::filesystem::resize_file(newest, std::filesystem::file_size(newest) - 1000);
  auto s = std::move(OpenPackChunkStore(dir / "s", o)).value();
  size_t later = 0;
  for (size_t i = 20; i < 40; ++i) later += *s->Has(Sha256Of(chunks[i]));
  EXPECT_GE(later, 17u);
  EXPECT_LT(later, 20u);
  for (size_t i = 0; i < 40; ++i) ASSERT_TRUE(s->Put(Sha256Of(chunks[i]), chunks[i]).ok());
  ASSERT_TRUE(s->Sync().ok());
  for (size_t i = 0; i < 40; ++i) {
    std::string out;
    ASSERT_TRUE(s->Get(Sha256Of(chunks[i]), &out).ok()) << i;
    EXPECT_EQ(out, chunks[i]);
  }
}

TEST(FaultInjectingChunkStoreTest, InjectsEnospcTornWritesAndCorruptReads) {
  testing::TempDir dir;
  auto base = std::move(OpenPackChunkStore(dir / "s", {})).value();
  testing::FaultInjectingChunkStore f(base.get());
  std::string c = testing::RandomBytes(10000, 5);
  Digest d = Sha256Of(c);
  f.FailPuts(1);
  EXPECT_THAT(f.Put(d, c), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(*f.Has(d));
  f.TearNextPut();
  EXPECT_THAT(f.Put(d, c), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(*f.Has(d));
  ASSERT_TRUE(f.Put(d, c).ok());
  f.CorruptReads(true);
  std::string out;
  ASSERT_TRUE(f.Get(d, &out).ok());
  EXPECT_NE(out, c);
}

}  // namespace
}  // namespace cairn
