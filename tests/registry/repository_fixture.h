// The repository tests' fixture: a repository over fault-injecting stores on
// simulated time, and helpers that open sessions, upload and sign releases.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/strings.h"
#include "fault_stores.h"
#include "testing.h"

namespace cairn::testing {

// Fails the next metadata commit (a crash before the commit reaches disk).
class FailingMetaStore : public MetaStoreWrapper {
 public:
  using MetaStoreWrapper::MetaStoreWrapper;
  bool fail_next = false;
  absl::Status Commit(const std::vector<WriteOp>& ops, bool sync) override {
    if (fail_next) {
      fail_next = false;
      return absl::UnavailableError("injected crash");
    }
    return MetaStoreWrapper::Commit(ops, sync);
  }
};

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    meta_base_ = std::move(OpenRocksMetaStore(dir_ / "meta")).value();
    PackStoreOptions po;
    po.clock = &clock_;  // chunks are stamped on the test's time (GC's grace period)
    chunks_base_ = std::move(OpenPackChunkStore(dir_ / "chunks", po)).value();
    auto meta = std::make_unique<FailingMetaStore>(meta_base_.get());
    meta_ = meta.get();
    auto chunks = std::make_unique<testing::FaultInjectingChunkStore>(chunks_base_.get());
    chunks_ = chunks.get();
    repo_ = std::move(Repository::Create(std::move(meta), std::move(chunks), trust_.view, Options(),
                                         &clock_))
                .value();
  }
  // What the repository is opened with (a test fixture overrides it).
  virtual RepositoryOptions Options() { return {}; }

  std::string Session(const std::string& name, const SigningKey* key) {
    auto c = repo_->Challenge(name);
    EXPECT_TRUE(c.ok());
    cairn::v1::OpenSessionRequest r;
    r.set_name(name);
    r.set_challenge(c->challenge());
    auto* s = r.add_signatures();
    s->set_key_id(key->key_id());
    s->set_sig(*key->Sign(Pae(kSessionPayloadType, c->challenge() + "\n" + name)));
    auto o = repo_->OpenSession(r);
    EXPECT_TRUE(o.ok()) << o.status();
    return o.ok() ? o->session_id() : "";
  }

  // Uploads files' chunks and lists; returns the signed manifest envelope bytes.
  std::string Upload(const std::string& session, const std::string& name,
                     const std::string& version, const std::map<std::string, std::string>& files,
                     const SigningKey* key, bool upload_chunks = true) {
    cairn::v1::Manifest m;
    m.set_name(name);
    m.set_version(version);
    for (const auto& [path, data] : files) {
      cairn::v1::ChunkList cl;
      for (size_t off = 0; off < data.size(); off += 100000) {
        std::string c = data.substr(off, 100000);
        Digest d = Sha256Of(c);
        if (upload_chunks) {
          EXPECT_TRUE(repo_->chunks()->Put(d, c).ok());
        }
        auto* ref = cl.add_chunks();
        ref->set_digest(std::string(DigestBytes(d)));
        ref->set_length(c.size());
      }
      std::string clb = SerializeCanonical(cl);
      auto staged = repo_->StageChunkList(session, clb);
      EXPECT_TRUE(staged.ok()) << staged.status();
      auto* f = m.add_files();
      f->set_path(path);
      f->set_size(data.size());
      f->set_sha256(DigestName(Sha256Of(data)));
      f->set_root(DigestName(Sha256Of(clb)));
    }
    CanonicalizeManifest(&m);
    return SerializeCanonical(*SignEnvelope(kManifestPayloadType, SerializeCanonical(m), {key}));
  }

  std::string Tag(const std::string& name, const std::string& tag, const std::string& digest,
                  uint64_t version, const SigningKey* key, int64_t expires_in = 3600) {
    cairn::v1::TagRecord t;
    t.set_name(name);
    t.set_tag(tag);
    t.set_manifest_digest(digest);
    t.set_version(version);
    t.set_expires_unix(now_ + expires_in);
    return SerializeCanonical(*SignEnvelope(kTagPayloadType, SerializeCanonical(t), {key}));
  }

  // A new trust root in which namespace acme needs two signatures (the
  // publisher's and a second key's): one signer leaves a release pending.
  void RequireTwoSignatures() {
    auto second = std::move(SigningKey::Generate()).value();
    cairn::v1::TrustRoot root = trust_.view.root();
    root.set_version(root.version() + 1);
    for (auto& del : *root.mutable_delegations()) {
      if (del.namespace_() == "acme") {
        *root.add_keys() = second->ToProto();
        del.add_key_ids(second->key_id());
        del.set_threshold(2);
      }
    }
    CanonicalizeTrustRoot(&root);
    auto env = SignEnvelope(kTrustRootPayloadType, SerializeCanonical(root), {trust_.root.get()});
    ASSERT_TRUE(env.ok()) << env.status();
    ASSERT_TRUE(repo_->AdoptTrustChain({SerializeCanonical(*env)}).ok());
  }

  static std::string DigestOf(const std::string& env_bytes) {
    cairn::v1::Envelope e;
    e.ParseFromString(env_bytes);
    return DigestName(Sha256Of(e.payload()));
  }

  testing::TempDir dir_;
  TrustFixture trust_;
  std::unique_ptr<MetaStore> meta_base_;
  std::unique_ptr<ChunkStore> chunks_base_;
  FailingMetaStore* meta_;
  testing::FaultInjectingChunkStore* chunks_;
  std::unique_ptr<Repository> repo_;
  SimulatedClock clock_{SystemNowUnix()};
  int64_t now_ = clock_.NowUnix();
};

}  // namespace cairn::testing
