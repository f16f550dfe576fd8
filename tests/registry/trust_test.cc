#include "cairn/trust.h"

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

}  // namespace
}  // namespace cairn
