// Objects and envelopes as they arrive from a node or a feed: the first byte
// picks the parser, the rest is the input. Signed envelopes are verified
// against a trust root made at start-up.
#include <cstdint>
#include <string_view>

#include "cairn/crypto.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/trust.h"

namespace {
cairn::TrustRootView* g_trust = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto root = std::move(cairn::SigningKey::Generate()).value();
  auto pub = std::move(cairn::SigningKey::Generate()).value();
  cairn::v1::TrustRoot r;
  r.set_version(1);
  r.set_expires_unix(4102444800);  // 2100
  cairn::AddKey(&r, *root);
  cairn::AddKey(&r, *pub);
  r.add_root_key_ids(root->key_id());
  r.set_root_threshold(1);
  auto* d = r.add_delegations();
  d->set_namespace_("acme");
  d->add_key_ids(pub->key_id());
  d->set_threshold(1);
  auto env = cairn::SignTrustRoot(r, {root.get()});
  if (!env.ok()) return 0;
  auto view = cairn::TrustRootView::FromEnvelopeBytes(*env, 1800000000);
  if (view.ok()) g_trust = new cairn::TrustRootView(std::move(*view));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0: (void)cairn::ParseManifest(in); break;
    case 1: (void)cairn::ParseChunkList(in); break;
    case 2: (void)cairn::ParseTagRecord(in); break;
    case 3: (void)cairn::ParseEnvelope(in, 1 << 20); break;
    case 4: (void)cairn::ParseRef(in); break;
    case 5: (void)cairn::ParseRelation(in); break;
    case 6:
      if (g_trust) {
        std::string digest;
        (void)cairn::VerifyManifestEnvelope(*g_trust, in, &digest);
      }
      break;
    case 7:
      if (g_trust) (void)cairn::VerifyTagEnvelope(*g_trust, in, 1800000000);
      break;
  }
  return 0;
}
