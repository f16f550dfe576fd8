#include "cairn/objects.h"

#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ValidatePathTest, AcceptsOrdinaryPaths) {
  for (const char* p : {"model.safetensors", "a/b/c.bin", "tokenizer/vocab.json", ".gitattributes",
                        "a..b", "..a"}) {
    EXPECT_TRUE(ValidatePath(p).ok()) << p;
  }
}

TEST(ValidatePathTest, RejectsHostilePaths) {
  for (std::string p :
       {std::string(""), std::string("/etc/passwd"), std::string("../x"), std::string("a/../../x"),
        std::string("a//b"), std::string("a/"), std::string("./a"), std::string("a\\b"),
        std::string("a\0b", 3), std::string(".cairn/manifest.envelope"), std::string(".cairn"),
        std::string(5000, 'a'), std::string("..\x1b[2Jx/passwd"), std::string("a\nb"),
        std::string("a\x7f")}) {
    EXPECT_THAT(ValidatePath(p), StatusIs(absl::StatusCode::kInvalidArgument)) << p;
  }
}

TEST(ValidateNameTest, NamesVersionsTags) {
  EXPECT_TRUE(ValidateName("qwen/Qwen2.5-7B").ok());
  EXPECT_FALSE(ValidateName("qwen").ok());
  EXPECT_FALSE(ValidateName("a/b/c").ok());
  EXPECT_FALSE(ValidateName("../x").ok());
  EXPECT_FALSE(ValidateName("a/.x").ok());
  EXPECT_FALSE(ValidateName("a b/x").ok());
  EXPECT_TRUE(ValidateVersion("1.0+q4").ok());
  EXPECT_FALSE(ValidateVersion("").ok());
  EXPECT_FALSE(ValidateVersion("a/b").ok());
  EXPECT_TRUE(ValidateTag("latest").ok());
  EXPECT_FALSE(ValidateTag("la:test").ok());
  EXPECT_FALSE(ValidateTag("..").ok());
  EXPECT_FALSE(ValidateTag(".hidden").ok());
  EXPECT_FALSE(ValidateVersion(".").ok());
}

TEST(ParseRefTest, Forms) {
  auto r = ParseRef("a/b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tag, "latest");
  r = ParseRef("a/b:v1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tag, "v1");
  std::string d = DigestName(Sha256Of("m"));
  r = ParseRef("a/b@" + d);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->digest, d);
  EXPECT_TRUE(r->tag.empty());
  EXPECT_FALSE(ParseRef("a/b@sha256:zz").ok());
  EXPECT_FALSE(ParseRef("a:b").ok());
  // A version after '@': it cannot contain ':', so it is never a digest.
  r = ParseRef("a/b@1.0+rc1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version, "1.0+rc1");
  EXPECT_TRUE(r->tag.empty());
  EXPECT_TRUE(r->digest.empty());
  EXPECT_EQ(r->ToString(), "a/b@1.0+rc1");
  EXPECT_FALSE(ParseRef("a/b@").ok());
  EXPECT_FALSE(ParseRef("a/b@1 0").ok());
}

cairn::v1::Manifest GoodManifest() {
  cairn::v1::Manifest m;
  m.set_name("acme/model");
  m.set_version("1");
  for (const char* p : {"b.bin", "a.bin"}) {
    auto* f = m.add_files();
    f->set_path(p);
    f->set_size(1);
    f->set_sha256(DigestName(Sha256Of(p)));
    f->set_root(DigestName(Sha256Of(p)));
  }
  return m;
}

TEST(ManifestTest, CanonicalEncodingIsDeterministicAndSorted) {
  auto m1 = GoodManifest();
  auto m2 = GoodManifest();
  std::swap(*m2.mutable_files(0), *m2.mutable_files(1));
  CanonicalizeManifest(&m1);
  CanonicalizeManifest(&m2);
  EXPECT_EQ(SerializeCanonical(m1), SerializeCanonical(m2));
  EXPECT_EQ(m1.files(0).path(), "a.bin");
  ASSERT_TRUE(ParseManifest(SerializeCanonical(m1)).ok());
}

TEST(ManifestTest, RejectsUnsortedDuplicateAndHostile) {
  auto m = GoodManifest();  // unsorted
  EXPECT_THAT(ParseManifest(SerializeCanonical(m)), StatusIs(absl::StatusCode::kInvalidArgument));
  CanonicalizeManifest(&m);
  *m.add_files() = m.files(1);  // duplicate
  EXPECT_THAT(ParseManifest(SerializeCanonical(m)), StatusIs(absl::StatusCode::kInvalidArgument));
  m = GoodManifest();
  m.mutable_files(0)->set_path("../../etc/passwd");
  CanonicalizeManifest(&m);
  auto r = ParseManifest(SerializeCanonical(m));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("unsafe path"));
  m = GoodManifest();
  m.mutable_files(0)->set_path("a.bin/x");  // file under a file
  m.mutable_files(1)->set_path("a.bin");
  CanonicalizeManifest(&m);
  EXPECT_FALSE(ParseManifest(SerializeCanonical(m)).ok());
}

// Issue 12 F: only sorted neighbours were compared, so "a", "a.x", "a/b" (a
// file and a directory of one name, "a.x" sorting between) got through.
TEST(ManifestTest, AFileThatIsAlsoADirectoryIsRefusedWhateverSortsBetween) {
  cairn::v1::Manifest m = GoodManifest();
  m.clear_files();
  for (const char* p : {"a", "a.x", "a/b"}) {
    auto* f = m.add_files();
    f->set_path(p);
    f->set_size(1);
    f->set_sha256(DigestName(Sha256Of(p)));
    f->set_root(DigestName(Sha256Of(p)));
  }
  CanonicalizeManifest(&m);
  auto r = ParseManifest(SerializeCanonical(m));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("'a/b' is under file 'a'"));
  m.mutable_files(2)->set_path("a.y/b");  // a directory beside files: fine
  CanonicalizeManifest(&m);
  EXPECT_TRUE(ParseManifest(SerializeCanonical(m)).ok());
}

// H: a 256-byte name committed, and no Linux client could write it. #18: a
// name that is not UTF-8 made the commit fail with "manifest does not parse".
TEST(ValidatePathTest, NamesOverNameMaxAndNamesNotInUtf8AreRefused) {
  EXPECT_TRUE(ValidatePath(std::string(255, 'a')).ok());
  EXPECT_TRUE(ValidatePath("d/" + std::string(255, 'a') + "/x").ok());
  auto r = ValidatePath("d/" + std::string(256, 'a'));
  EXPECT_THAT(std::string(r.message()), HasSubstr("longer than 255 bytes"));
  EXPECT_TRUE(ValidatePath("mod\xc3\xa8le/\xe6\xa8\xa1\xe5\x9e\x8b.bin").ok());  // modèle/模型
  for (std::string bad :
       {"a\xff.bin", "\xc3", "a\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "x\xe6\xa8"}) {
    auto st = ValidatePath(bad);
    EXPECT_THAT(std::string(st.message()), HasSubstr("not valid UTF-8")) << bad;
  }
}

TEST(ManifestTest, RejectsGarbageAndOversize) {
  EXPECT_THAT(ParseManifest("\xff\xff\xff garbage"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseManifest(std::string(kMaxManifestBytes + 1, '\0')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseEnvelope("", kMaxEnvelopeBytes), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(ChunkListTest, RejectsBadEntries) {
  cairn::v1::ChunkList cl;
  auto* c = cl.add_chunks();
  c->set_digest("short");
  c->set_length(10);
  EXPECT_FALSE(ParseChunkList(SerializeCanonical(cl)).ok());
  c->set_digest(std::string(32, 'x'));
  c->set_length(0);
  EXPECT_FALSE(ParseChunkList(SerializeCanonical(cl)).ok());
  c->set_length(100);
  EXPECT_TRUE(ParseChunkList(SerializeCanonical(cl)).ok());
}

}  // namespace
}  // namespace cairn
