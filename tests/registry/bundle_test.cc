// Offline bundles: export from one repository, import into another that
// trusts the same root; what a damaged, cut, reordered, foreign or
// incomplete bundle does (refused, nothing visible); resume; volumes.
#include "cairn/bundle.h"

#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "absl/synchronization/notification.h"

#include "cairn/status.h"
#include "repository_fixture.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::RepositoryTest;

std::string ReadAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void WriteAll(const std::string& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << b;
}

// A single-volume bundle's records: offset of each record header.
struct Rec {
  size_t at;
  BundleRecord type;
  uint32_t len;
};
std::vector<Rec> Records(const std::string& b) {
  std::vector<Rec> out;
  size_t at = kVolumeHeaderBytes;
  while (at + kRecordHeaderBytes <= b.size()) {
    const auto* u = reinterpret_cast<const unsigned char*>(b.data() + at + 1);
    uint32_t len = (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
    out.push_back({at, static_cast<BundleRecord>(b[at]), len});
    at += kRecordHeaderBytes + len;
  }
  return out;
}

// Stops after `limit` bytes with an error (a pulled cable, a killed import).
class CutSource : public ByteSource {
 public:
  CutSource(ByteSource* in, uint64_t limit) : in_(in), left_(limit) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    if (left_ == 0) return absl::UnavailableError("the disk went away");
    auto k = in_->Read(buf, std::min<uint64_t>(n, left_));
    if (k.ok()) left_ -= *k;
    return k;
  }

 private:
  ByteSource* in_;
  uint64_t left_;
};

class BundleTest : public RepositoryTest {
 protected:
  void SetUp() override {
    RepositoryTest::SetUp();
    dst_ = std::move(Repository::Open(dir_ / "dst", trust_.view, {}, &clock_)).value();
  }

  std::string Publish(const std::string& version, const std::map<std::string, std::string>& files,
                      const std::string& tag = "latest", uint64_t tag_version = 1) {
    std::string s = Session("acme/m", trust_.publisher.get());
    std::string env = Upload(s, "acme/m", version, files, trust_.publisher.get());
    std::string t = tag.empty() ? ""
                                : Tag("acme/m", tag, DigestOf(env), tag_version,
                                      trust_.publisher.get(), 10 * 86400);
    auto c = repo_->Commit(s, env, t);
    EXPECT_TRUE(c.ok()) << c.status();
    return DigestOf(env);
  }

  ExportReport Export(const std::vector<std::string>& refs, const std::string& to,
                      uint64_t split = 0, std::vector<std::string> have = {}) {
    auto w = VolumeWriter::Create(to, split ? split : VolumeWriter::kNoSplit, NewBundleId());
    EXPECT_TRUE(w.ok()) << w.status();
    auto src = RepositorySource(repo_.get());
    ExportOptions o;
    o.refs = refs;
    o.have = std::move(have);
    auto r = ExportBundle(*src, o, w->get());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ExportReport{};
  }

  absl::StatusOr<cairn::v1::ImportResponse> Import(std::vector<std::string> paths,
                                                   Repository* into = nullptr, uint64_t cut = 0) {
    CAIRN_ASSIGN_OR_RETURN(auto in, VolumeReader::Open(std::move(paths)));
    if (cut > 0) {
      CutSource c(in.get(), cut);
      return ImportBundle(into ? into : dst_.get(), &c);
    }
    return ImportBundle(into ? into : dst_.get(), in.get());
  }

  bool Visible(const std::string& ref, Repository* r = nullptr) {
    return (r ? r : dst_.get())->Resolve(ref).ok();
  }
  std::string B(const std::string& name) { return dir_ / name; }

  std::unique_ptr<Repository> dst_;
  const std::string w1_ = testing::RandomBytes(1000000, 1);
  const std::string w2_ = testing::RandomBytes(450000, 2);
};

TEST_F(BundleTest, CarriesReleasesAndTagsVerified) {
  const std::string d = Publish("1", {{"a.bin", w1_}, {"b.bin", w2_}});
  ExportReport e = Export({"acme/m:latest"}, B("m.cairn"));
  EXPECT_EQ(e.releases, 1u);
  EXPECT_EQ(e.objects, 2u);
  EXPECT_EQ(e.chunks, 15u);  // 10 + 5 chunks of 100 kB
  EXPECT_EQ(e.chunk_bytes, w1_.size() + w2_.size());
  auto r = Import({B("m.cairn")});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->releases_size(), 1);
  EXPECT_EQ(r->releases(0).manifest_digest(), d);
  EXPECT_EQ(r->releases(0).tags_size(), 1);
  EXPECT_EQ(r->chunks_stored(), 15u);
  auto res = dst_->Resolve("acme/m:latest");
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->manifest_digest(), d);
  std::string got;
  ASSERT_TRUE(dst_->chunks()->Get(Sha256Of(w1_.substr(0, 100000)), &got).ok());
  EXPECT_EQ(got, w1_.substr(0, 100000));

  // Twice: nothing new, nothing stored, the feed does not move.
  const uint64_t head = dst_->FeedHead();
  auto again = Import({B("m.cairn")});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->chunks_stored(), 0u);
  EXPECT_EQ(again->chunks_held(), 15u);
  EXPECT_TRUE(again->releases(0).already_present());
  EXPECT_EQ(dst_->FeedHead(), head);
}

TEST_F(BundleTest, AnInterruptedImportShowsNothingAndResumes) {
  Publish("1", {{"a.bin", w1_}});
  const uint64_t size = Export({"acme/m"}, B("m.cairn")).bytes_written;
  auto cut = Import({B("m.cairn")}, nullptr, size / 2);
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kUnavailable) << cut.status();
  EXPECT_FALSE(Visible("acme/m:latest"));
  auto r = Import({B("m.cairn")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->chunks_held(), 3u);  // what the first run stored is passed over
  EXPECT_EQ(r->chunks_held() + r->chunks_stored(), 10u);
  EXPECT_TRUE(Visible("acme/m:latest"));
}

TEST_F(BundleTest, DamageIsRefusedAndNothingBecomesVisible) {
  Publish("1", {{"a.bin", w1_}});
  Export({"acme/m"}, B("m.cairn"));
  const std::string good = ReadAll(B("m.cairn"));
  const auto recs = Records(good);
  std::vector<Rec> chunks;
  for (const auto& r : recs) {
    if (r.type == BundleRecord::kChunk) chunks.push_back(r);
  }
  ASSERT_EQ(chunks.size(), 10u);
  struct Case {
    std::string name, bytes;
    absl::StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  {  // a flipped byte in a chunk's data
    std::string b = good;
    b[chunks[4].at + kRecordHeaderBytes + 32 + 10] ^= 1;
    cases.push_back({"flipped", b, absl::StatusCode::kInvalidArgument, "do not match"});
  }
  {  // cut short (the last volume's end)
    cases.push_back({"truncated", good.substr(0, good.size() - 20000), absl::StatusCode::kDataLoss,
                     "cut short"});
  }
  {  // the end record gone
    cases.push_back({"no end", good.substr(0, recs.back().at), absl::StatusCode::kDataLoss,
                     "without its end record"});
  }
  {  // two chunk records swapped
    std::string b = good.substr(0, chunks[2].at);
    b += good.substr(chunks[3].at, kRecordHeaderBytes + chunks[3].len);
    b += good.substr(chunks[2].at, kRecordHeaderBytes + chunks[2].len);
    b += good.substr(chunks[4].at);
    cases.push_back({"reordered", b, absl::StatusCode::kInvalidArgument, "out of order"});
  }
  {  // a chunk record dropped: the end record's count gives it away
    std::string b = good.substr(0, chunks[5].at) + good.substr(chunks[6].at);
    cases.push_back({"dropped", b, absl::StatusCode::kInvalidArgument, "counts"});
  }
  {  // garbage after the end
    cases.push_back({"trailing", good + "x", absl::StatusCode::kInvalidArgument, "follow"});
  }
  for (const auto& c : cases) {
    WriteAll(B("bad.cairn"), c.bytes);
    auto r = Import({B("bad.cairn")});
    EXPECT_EQ(r.status().code(), c.code) << c.name << ": " << r.status();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << c.name << ": " << r.status();
    EXPECT_FALSE(Visible("acme/m:latest")) << c.name;
    EXPECT_FALSE(Visible("acme/m@1")) << c.name;
  }
  ASSERT_TRUE(Import({B("m.cairn")}).ok());  // the good one still goes in
}

TEST_F(BundleTest, AReleaseSignedByAKeyThisNodeDoesNotTrustIsRefused) {
  // The same bundle made by a node of another federation.
  auto other = testing::TrustFixture::Make("acme");
  auto foreign = std::move(Repository::Open(B("foreign"), other.view, {}, &clock_)).value();
  std::swap(repo_, foreign);
  std::swap(trust_, other);
  Publish("1", {{"a.bin", w1_}});
  Export({"acme/m"}, B("f.cairn"));
  std::swap(repo_, foreign);
  std::swap(trust_, other);
  auto r = Import({B("f.cairn")});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_FALSE(Visible("acme/m:latest"));
  EXPECT_EQ(*dst_->chunks()->Has(Sha256Of(w1_.substr(0, 100000))), false);
}

TEST_F(BundleTest, VolumesAreCheckedAndFoundByTheirBaseName) {
  Publish("1", {{"a.bin", w1_}, {"b.bin", w2_}});
  ExportReport e = Export({"acme/m"}, B("v.cairn"), 1 << 20);
  ASSERT_EQ(e.volumes.size(), 2u);
  EXPECT_EQ(e.volumes[0], B("v.cairn.001"));
  EXPECT_LE(ReadAll(e.volumes[0]).size(), size_t{1} << 20);
  auto wrong = Import({e.volumes[1], e.volumes[0]});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("in order"), std::string::npos) << wrong.status();
  auto missing = Import({e.volumes[0]});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kDataLoss) << missing.status();
  EXPECT_FALSE(Visible("acme/m:latest"));
  auto r = Import({B("v.cairn")});  // the base name stands for its volumes
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(Visible("acme/m:latest"));
  auto other = VolumeWriter::Create(B("v.cairn"), VolumeWriter::kNoSplit, NewBundleId());  // another bundle
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Write("x").ok());
  ASSERT_TRUE((*other)->Finish().ok());
  auto mixed = Import({e.volumes[0], B("v.cairn")});
  EXPECT_NE(mixed.status().message().find("another bundle"), std::string::npos) << mixed.status();
}

TEST_F(BundleTest, WhatTheReceiverHoldsIsLeftOut) {
  std::string w1b = w1_;
  w1b.replace(200000, 100000, testing::RandomBytes(100000, 9));  // one chunk changed
  const std::string d1 = Publish("1", {{"a.bin", w1_}});
  Publish("2", {{"a.bin", w1b}}, "latest", 2);
  Export({"acme/m@1"}, B("v1.cairn"));
  ASSERT_TRUE(Import({B("v1.cairn")}).ok());
  auto inv = InventoryOf(dst_.get());
  ASSERT_TRUE(inv.ok());
  auto parsed = ParseInventory(FormatInventory(*inv));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->releases.size(), 1u);
  EXPECT_EQ(parsed->releases[0].second, d1);
  ExportReport e = Export({"acme/m:latest"}, B("v2.cairn"), 0, {"acme/m@" + d1});
  EXPECT_EQ(e.chunks, 1u);
  EXPECT_EQ(e.chunks_left_out, 9u);
  // A node without v1 cannot take it: refused whole, saying why.
  auto fresh = std::move(Repository::Open(B("fresh"), trust_.view, {}, &clock_)).value();
  auto r = Import({B("v2.cairn")}, fresh.get());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("lacks 9 chunks"), std::string::npos) << r.status();
  EXPECT_FALSE(Visible("acme/m:latest", fresh.get()));
  auto ok = Import({B("v2.cairn")});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->chunks_stored(), 1u);
  EXPECT_EQ(dst_->Resolve("acme/m:latest")->manifest_digest(), ok->releases(0).manifest_digest());
}

TEST_F(BundleTest, ATagThatExpiredOnTheWayIsNotAppliedButTheReleaseIs) {
  Publish("1", {{"a.bin", w2_}});
  Export({"acme/m:latest"}, B("m.cairn"));
  clock_.Advance(std::chrono::hours(24 * 11));  // the root lasts longer
  auto r = Import({B("m.cairn")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->releases(0).tags_size(), 0);
  ASSERT_EQ(r->releases(0).notes_size(), 1);
  EXPECT_NE(r->releases(0).notes(0).find("expired"), std::string::npos) << r->releases(0).notes(0);
  EXPECT_TRUE(Visible("acme/m@1"));
  EXPECT_FALSE(Visible("acme/m:latest"));
}

TEST_F(BundleTest, ANewerTrustRootTravelsWithTheReleasesThatNeedIt) {
  // v2 delegates acme to a new key; the release is signed by it alone.
  auto key = std::move(SigningKey::Generate()).value();
  cairn::v1::TrustRoot root = trust_.view.root();
  root.set_version(2);
  *root.add_keys() = key->ToProto();
  for (auto& del : *root.mutable_delegations()) {
    if (del.namespace_() == "acme") del.add_key_ids(key->key_id());
  }
  CanonicalizeTrustRoot(&root);
  auto env = SignEnvelope(kTrustRootPayloadType, SerializeCanonical(root), {trust_.root.get()});
  ASSERT_TRUE(env.ok());
  ASSERT_TRUE(repo_->AdoptTrustChain({SerializeCanonical(*env)}).ok());
  std::string s = Session("acme/m", key.get());
  std::string m = Upload(s, "acme/m", "1", {{"a.bin", w2_}}, key.get());
  ASSERT_TRUE(repo_->Commit(s, m, "").ok());
  Export({"acme/m@1"}, B("m.cairn"));
  auto r = Import({B("m.cairn")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->trust_versions_adopted(), 1u);
  EXPECT_EQ(dst_->trust().root().version(), 2u);
  EXPECT_TRUE(Visible("acme/m@1"));
}

TEST_F(BundleTest, HostileFramingIsRefusedEarlyAndCheaply) {
  Publish("1", {{"a.bin", w2_}});
  Export({"acme/m"}, B("m.cairn"));
  const std::string good = ReadAll(B("m.cairn"));
  const auto recs = Records(good);
  const std::string head = good.substr(0, recs[1].at);  // volume header + header record
  // 600 trust roots of 1 MiB of zeros: refused at the first, not held.
  std::string flood = head;
  for (int i = 0; i < 600; ++i) AppendRecord(BundleRecord::kTrustRoot, std::string(1 << 20, 0), &flood);
  WriteAll(B("flood.cairn"), flood);
  auto r = Import({B("flood.cairn")});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("record 2 (trust root)"), std::string::npos) << r.status();
  // An unknown record type where a release belongs is named.
  std::string odd = head;
  AppendRecord(static_cast<BundleRecord>(7), "x", &odd);
  WriteAll(B("odd.cairn"), odd);
  r = Import({B("odd.cairn")});
  EXPECT_NE(r.status().message().find("unknown type 7"), std::string::npos) << r.status();
  // A FIFO (or a device) is refused, not waited on.
  ASSERT_EQ(::mkfifo(B("fifo").c_str(), 0600), 0);
  r = Import({B("fifo")});
  EXPECT_NE(r.status().message().find("not a regular file"), std::string::npos) << r.status();
}

// A source that blocks inside the import until released.
class GateSource : public ByteSource {
 public:
  explicit GateSource(ByteSource* in) : in_(in) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    if (!entered.HasBeenNotified()) entered.Notify();
    release.WaitForNotification();
    return in_->Read(buf, n);
  }
  absl::Notification entered, release;

 private:
  ByteSource* in_;
};

TEST_F(BundleTest, OneImportAtATimePerNode) {
  Publish("1", {{"a.bin", w2_}});
  Export({"acme/m"}, B("m.cairn"));
  auto in = VolumeReader::Open({B("m.cairn")});
  ASSERT_TRUE(in.ok());
  GateSource gate(in->get());
  absl::StatusOr<cairn::v1::ImportResponse> first;
  std::thread t([&] { first = ImportBundle(dst_.get(), &gate); });
  gate.entered.WaitForNotification();
  auto second = Import({B("m.cairn")});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted) << second.status();
  gate.release.Notify();
  t.join();
  EXPECT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(Import({B("m.cairn")}).ok());  // free again
}

TEST_F(BundleTest, InventoryTextIsChecked) {
  EXPECT_FALSE(ParseInventory("").ok());
  EXPECT_FALSE(ParseInventory("hello\n").ok());
  EXPECT_FALSE(ParseInventory("cairn-inventory 1\nrelease ../x sha256:00\n").ok());
  EXPECT_FALSE(ParseInventory("cairn-inventory 1\ntrust x\n").ok());
  auto ok = ParseInventory("cairn-inventory 1\r\nnode n1\r\ntrust 3\r\n");  // CRLF too
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->trust_version, 3u);
}

}  // namespace
}  // namespace cairn
