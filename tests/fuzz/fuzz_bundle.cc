// The bundle importer (cairn import, cairn-node import, Publish.Import) on
// hostile bundles. A valid bundle (trust roots, a release with a tag and a
// yank, chunk lists, chunks, end) is made once; each input either mutates it
// (byte flips at chosen offsets, a cut, trailing bytes: the importer's deep
// paths stay reachable) or, when it starts with '!', is the record stream
// itself. Every import runs into one repository, as a node's would.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "cairn/bundle.h"
#include "cairn/crypto.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/trust.h"

namespace {

using namespace cairn;

class StringSource final : public ByteSource {
 public:
  explicit StringSource(std::string_view s) : s_(s) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    n = std::min(n, s_.size() - at_);
    std::memcpy(buf, s_.data() + at_, n);
    at_ += n;
    return n;
  }

 private:
  std::string_view s_;
  size_t at_ = 0;
};

struct World {
  std::string dir;
  std::unique_ptr<Repository> dst;
  std::string bundle;  // the record stream, volume header removed
};

void Die(const absl::Status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "fuzz_bundle setup: %s: %s\n", what, s.ToString().c_str());
  std::abort();
}

World* Make() {
  auto* w = new World;
  char tmpl[] = "/tmp/fuzz-bundle.XXXXXX";
  w->dir = mkdtemp(tmpl);
  auto root = std::move(SigningKey::Generate()).value();
  auto pub = std::move(SigningKey::Generate()).value();
  cairn::v1::TrustRoot r;
  r.set_version(1);
  r.set_expires_unix(4000000000);
  AddKey(&r, *root);
  AddKey(&r, *pub);
  r.add_root_key_ids(root->key_id());
  r.set_root_threshold(1);
  auto* d = r.add_delegations();
  d->set_namespace_("acme");
  d->add_key_ids(pub->key_id());
  d->set_threshold(1);
  std::string env = std::move(SignTrustRoot(r, {root.get()})).value();
  TrustRootView view = std::move(TrustRootView::FromEnvelopeBytes(env, kIgnoreExpiry)).value();

  auto src = std::move(Repository::Open(w->dir + "/src", view)).value();
  auto ch = std::move(src->Challenge("acme/m")).value();
  cairn::v1::OpenSessionRequest open;
  open.set_name("acme/m");
  open.set_challenge(ch.challenge());
  auto* sig = open.add_signatures();
  sig->set_key_id(pub->key_id());
  sig->set_sig(*pub->Sign(Pae(kSessionPayloadType, ch.challenge() + "\nacme/m")));
  std::string session = std::move(src->OpenSession(open)).value().session_id();
  cairn::v1::Manifest m;
  m.set_name("acme/m");
  m.set_version("1");
  for (int f = 0; f < 2; ++f) {
    std::string data(3000 + f * 1000, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131 + f) >> 3);
    cairn::v1::ChunkList cl;
    for (size_t off = 0; off < data.size(); off += 1024) {
      std::string c = data.substr(off, 1024);
      Digest dg = Sha256Of(c);
      Die(src->chunks()->Put(dg, c), "put");
      auto* ref = cl.add_chunks();
      ref->set_digest(std::string(DigestBytes(dg)));
      ref->set_length(c.size());
    }
    std::string clb = SerializeCanonical(cl);
    Die(src->StageChunkList(session, clb).status(), "stage");
    auto* fe = m.add_files();
    fe->set_path(f == 0 ? "a.bin" : "b/c.json");
    fe->set_size(data.size());
    fe->set_sha256(DigestName(Sha256Of(data)));
    fe->set_root(DigestName(Sha256Of(clb)));
  }
  CanonicalizeManifest(&m);
  std::string menv =
      SerializeCanonical(*SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {pub.get()}));
  cairn::v1::Envelope parsed;
  parsed.ParseFromString(menv);
  const std::string digest = DigestName(Sha256Of(parsed.payload()));
  cairn::v1::TagRecord t;
  t.set_name("acme/m");
  t.set_tag("latest");
  t.set_manifest_digest(digest);
  t.set_version(1);
  t.set_expires_unix(4000000000);
  std::string tenv =
      SerializeCanonical(*SignEnvelope(kTagPayloadType, SerializeCanonical(t), {pub.get()}));
  Die(src->Commit(session, menv, tenv).status(), "commit");
  cairn::v1::YankRecord y;
  y.set_name("acme/m");
  y.set_manifest_digest(digest);
  y.set_version(1);
  y.set_yanked(true);
  y.set_reason("fuzzing");
  std::string yenv =
      SerializeCanonical(*SignEnvelope(kYankPayloadType, SerializeCanonical(y), {pub.get()}));
  // The yank rides a commit of the release it names.
  auto ch2 = std::move(src->Challenge("acme/m")).value();
  open.set_challenge(ch2.challenge());
  open.mutable_signatures(0)->set_sig(
      *pub->Sign(Pae(kSessionPayloadType, ch2.challenge() + "\nacme/m")));
  std::string s2 = std::move(src->OpenSession(open)).value().session_id();
  Die(src->Commit(s2, menv, "", "", yenv).status(), "yank");

  const std::string path = w->dir + "/m.cairn";
  auto out = std::move(VolumeWriter::Create(path, VolumeWriter::kNoSplit, NewBundleId())).value();
  auto up = RepositorySource(src.get());
  ExportOptions eo;
  eo.refs = {"acme/m@" + digest};
  Die(ExportBundle(*up, eo, out.get()).status(), "export");
  std::ifstream f(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), {});
  w->bundle = all.substr(kVolumeHeaderBytes);
  w->dst = std::move(Repository::Open(w->dir + "/dst", view)).value();
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = Make();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string stream;
  if (!in.empty() && in[0] == '!') {
    stream = std::string(in.substr(1));
  } else {
    // Ops of 5 bytes: a 4-byte offset into the bundle and a byte to XOR
    // there; a 0 XOR cuts the bundle at the offset instead. What is left
    // under 5 bytes is appended.
    stream = w->bundle;
    size_t i = 0;
    for (; i + 5 <= in.size() && !stream.empty(); i += 5) {
      uint32_t off = 0;
      std::memcpy(&off, in.data() + i, 4);
      off %= stream.size();
      const char x = in[i + 4];
      if (x == 0) {
        stream.resize(off);
      } else {
        stream[off] ^= x;
      }
    }
    stream.append(in.substr(i));
  }
  StringSource src(stream);
  (void)ImportBundle(w->dst.get(), &src);
  return 0;
}
