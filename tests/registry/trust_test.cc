#include "cairn/trust.h"

#include <algorithm>
#include <functional>

#include "cairn/objects.h"
#include "cairn/repository.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::cairn::testing::TrustFixture;
using ::testing::HasSubstr;

TEST(SigningKeyTest, SignVerifyAndTamper) {
  auto k = std::move(SigningKey::Generate()).value();
  auto sig = k->Sign("hello");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(VerifyEd25519(k->raw_public(), "hello", *sig));
  EXPECT_FALSE(VerifyEd25519(k->raw_public(), "hellO", *sig));
  std::string bad = *sig;
  bad[3] ^= 1;
  EXPECT_FALSE(VerifyEd25519(k->raw_public(), "hello", bad));
  EXPECT_FALSE(VerifyEd25519("short", "hello", *sig));
}

TEST(SigningKeyTest, SaveLoadAndCorruptFiles) {
  testing::TempDir dir;
  auto k = std::move(SigningKey::Generate()).value();
  ASSERT_TRUE(k->Save(dir / "k").ok());
  EXPECT_THAT(k->Save(dir / "k"), StatusIs(absl::StatusCode::kAlreadyExists));
  struct stat st;
  ASSERT_EQ(::stat((dir / "k").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = SigningKey::LoadPrivate(dir / "k");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ((*loaded)->key_id(), k->key_id());
  auto pub = SigningKey::LoadPublic(dir / "k.pub");
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ((*pub)->key_id(), k->key_id());
  EXPECT_FALSE((*pub)->has_private());

  std::string pem = testing::ReadFile(dir / "k");
  testing::WriteFile(dir / "trunc", pem.substr(0, pem.size() / 2));
  EXPECT_THAT(SigningKey::LoadPrivate(dir / "trunc"), StatusIs(absl::StatusCode::kInvalidArgument));
  testing::WriteFile(dir / "junk", "not a key");
  EXPECT_THAT(SigningKey::LoadPrivate(dir / "junk"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SigningKey::LoadPrivate(dir / "absent"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(TrustRootTest, VerifiesSelfSignatureAndExpiry) {
  auto f = TrustFixture::Make("acme");
  EXPECT_EQ(f.view.root().version(), 1u);
  // Expired at a later time.
  EXPECT_THAT(TrustRootView::FromEnvelopeBytes(f.envelope, SystemNowUnix() + 86400 * 31),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Truncated / corrupt.
  EXPECT_THAT(TrustRootView::FromEnvelopeBytes(f.envelope.substr(0, f.envelope.size() / 2),
                                               SystemNowUnix()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Signed by a non-root key.
  cairn::v1::TrustRoot r = f.view.root();
  auto bytes = SignTrustRoot(r, {f.publisher.get()});
  ASSERT_TRUE(bytes.ok());
  EXPECT_THAT(TrustRootView::FromEnvelopeBytes(*bytes, SystemNowUnix()),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(TrustRootTest, DelegationThresholdAndNamespace) {
  auto f = TrustFixture::Make("acme");
  auto env = SignEnvelope(kManifestPayloadType, "payload", {f.publisher.get()});
  ASSERT_TRUE(env.ok());
  EXPECT_TRUE(f.view.VerifyDelegated(*env, "acme").ok());
  auto other = f.view.VerifyDelegated(*env, "other");
  EXPECT_THAT(other, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(other.message()), HasSubstr(f.publisher->key_id()));
  // Root key is not a publisher.
  auto by_root = SignEnvelope(kManifestPayloadType, "payload", {f.root.get()});
  EXPECT_THAT(f.view.VerifyDelegated(*by_root, "acme"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Tampered payload.
  env->set_payload("payloaD");
  EXPECT_THAT(f.view.VerifyDelegated(*env, "acme"), StatusIs(absl::StatusCode::kPermissionDenied));
  // The same key twice counts once toward a threshold of 2.
  cairn::v1::TrustRoot r = f.view.root();
  r.mutable_delegations(0)->set_threshold(1);
  auto k2 = std::move(SigningKey::Generate()).value();
  AddKey(&r, *k2);
  r.mutable_delegations(0)->add_key_ids(k2->key_id());
  r.mutable_delegations(0)->set_threshold(2);
  auto bytes = SignTrustRoot(r, {f.root.get()});
  auto v2 = std::move(TrustRootView::FromEnvelopeBytes(*bytes, SystemNowUnix())).value();
  auto twice = SignEnvelope(kManifestPayloadType, "p", {f.publisher.get(), f.publisher.get()});
  EXPECT_THAT(v2.VerifyDelegated(*twice, "acme"), StatusIs(absl::StatusCode::kPermissionDenied));
  auto both = SignEnvelope(kManifestPayloadType, "p", {f.publisher.get(), k2.get()});
  EXPECT_TRUE(v2.VerifyDelegated(*both, "acme").ok());
  // A revoked key stops counting.
  r.add_revoked_key_ids(k2->key_id());
  auto v3 = std::move(TrustRootView::FromEnvelopeBytes(*SignTrustRoot(r, {f.root.get()}),
                                                       SystemNowUnix()))
                .value();
  EXPECT_THAT(v3.VerifyDelegated(*both, "acme"), StatusIs(absl::StatusCode::kPermissionDenied));
}

// Root v(N+1) from v(N): same content, new version, signed by `signers`.
std::string NextRoot(const cairn::v1::TrustRoot& prev,
                     const std::vector<const SigningKey*>& signers,
                     const std::function<void(cairn::v1::TrustRoot*)>& edit = {}) {
  cairn::v1::TrustRoot r = prev;
  r.set_version(prev.version() + 1);
  if (edit) edit(&r);
  return std::move(SignTrustRoot(r, signers)).value();
}

TEST(TrustChainTest, RotationNeedsThresholdsOfTheOldAndTheNewRootKeys) {
  auto f = TrustFixture::Make("acme");
  auto r2 = std::move(SigningKey::Generate()).value();
  auto r3 = std::move(SigningKey::Generate()).value();
  // v2 adds r2 and r3 as root keys with threshold 2 (old root key signs).
  auto add_keys = [&](cairn::v1::TrustRoot* r) {
    AddKey(r, *r2);
    AddKey(r, *r3);
    r->add_root_key_ids(r2->key_id());
    r->add_root_key_ids(r3->key_id());
    r->set_root_threshold(2);
  };
  // Only the old key: v1's threshold met, v2's own (2 of 3) not.
  auto only_old = NextRoot(f.view.root(), {f.root.get()}, add_keys);
  auto st = VerifySuccessor(f.view, only_old, SystemNowUnix());
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("1 of 2 needed from its own"));
  // Only new keys: v2's threshold met, v1's (its root key) not.
  auto only_new = NextRoot(f.view.root(), {r2.get(), r3.get()}, add_keys);
  EXPECT_THAT(VerifySuccessor(f.view, only_new, SystemNowUnix()),
              StatusIs(absl::StatusCode::kUnauthenticated));
  auto v2_bytes = NextRoot(f.view.root(), {f.root.get(), r2.get()}, add_keys);
  auto v2 = VerifySuccessor(f.view, v2_bytes, SystemNowUnix());
  ASSERT_TRUE(v2.ok()) << v2.status();
  // v3 retires the first root key: two of v2's keys must sign it.
  auto retire = [&](cairn::v1::TrustRoot* r) {
    auto* ids = r->mutable_root_key_ids();
    ids->erase(std::remove(ids->begin(), ids->end(), f.root->key_id()), ids->end());
  };
  auto weak = NextRoot(v2->root(), {r2.get()}, retire);
  EXPECT_THAT(VerifySuccessor(*v2, weak, SystemNowUnix()),
              StatusIs(absl::StatusCode::kUnauthenticated));
  auto v3_bytes = NextRoot(v2->root(), {r2.get(), r3.get()}, retire);
  // The retired key alone can no longer make v4.
  auto v3 = std::move(VerifySuccessor(*v2, v3_bytes, SystemNowUnix())).value();
  auto by_retired = NextRoot(v3.root(), {f.root.get()});
  EXPECT_THAT(VerifySuccessor(v3, by_retired, SystemNowUnix()),
              StatusIs(absl::StatusCode::kUnauthenticated));

  // Walking v1 -> v3 in any order; a skipped version or a gap is refused.
  auto walked = WalkTrustChain(f.view, {v3_bytes, v2_bytes, f.envelope}, SystemNowUnix());
  ASSERT_TRUE(walked.ok()) << walked.status();
  EXPECT_EQ(walked->root().version(), 3u);
  auto gap = WalkTrustChain(f.view, {v3_bytes}, SystemNowUnix());
  EXPECT_THAT(gap, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(std::string(gap.status().message()), HasSubstr("v2 is missing"));
  EXPECT_THAT(VerifySuccessor(f.view, v3_bytes, SystemNowUnix()),
              StatusIs(absl::StatusCode::kInvalidArgument));  // not the next version
  // Two different roots claiming one version.
  auto other_v2 = NextRoot(f.view.root(), {f.root.get(), r2.get()}, [&](cairn::v1::TrustRoot* r) {
    add_keys(r);
    r->set_expires_unix(r->expires_unix() + 1);
  });
  EXPECT_THAT(WalkTrustChain(f.view, {v2_bytes, other_v2}, SystemNowUnix()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Nothing newer: the start, expiry checked.
  EXPECT_EQ(WalkTrustChain(v3, {v2_bytes}, SystemNowUnix())->digest(), v3.digest());
}

TEST(TrustChainTest, OnlyTheRootAWalkEndsOnMustBeCurrent) {
  auto f = TrustFixture::Make("acme");  // expires in 30 days
  const int64_t later = SystemNowUnix() + 86400 * 40;
  auto v2_bytes = NextRoot(f.view.root(), {f.root.get()}, [](cairn::v1::TrustRoot* r) {
    r->set_expires_unix(r->expires_unix() + 86400 * 365);
  });
  // v1 has expired by `later`, v2 has not: the walk succeeds.
  auto v1_then = TrustRootView::FromEnvelopeBytes(f.envelope, kIgnoreExpiry);
  ASSERT_TRUE(v1_then.ok());
  auto walked = WalkTrustChain(*v1_then, {v2_bytes}, later);
  ASSERT_TRUE(walked.ok()) << walked.status();
  // Ending on an expired root: refused, saying how to refresh.
  auto stale = WalkTrustChain(*v1_then, {}, later);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("cairn trust update"));
}

TEST(TrustRootTest, RevokedKeyIsNamedInTheRefusal) {
  auto f = TrustFixture::Make("acme");
  auto env = SignEnvelope(kManifestPayloadType, "payload", {f.publisher.get()});
  cairn::v1::TrustRoot r = f.view.root();
  r.add_revoked_key_ids(f.publisher->key_id());
  r.set_version(2);
  auto v2 = std::move(TrustRootView::FromEnvelopeBytes(*SignTrustRoot(r, {f.root.get()}),
                                                       SystemNowUnix()))
                .value();
  auto st = v2.VerifyDelegated(*env, "acme");
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("key(s) " + f.publisher->key_id() + " revoked in trust root v2"));
}

}  // namespace
}  // namespace cairn
