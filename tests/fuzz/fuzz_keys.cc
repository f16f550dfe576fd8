// Key files: PEM private and public Ed25519 keys.
#include <cstdint>
#include <string_view>

#include "cairn/crypto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto priv = cairn::SigningKey::ParsePrivate(in, "fuzz");
  if (priv.ok()) (void)(*priv)->Sign("message");
  auto pub = cairn::SigningKey::ParsePublic(in, "fuzz");
  if (pub.ok()) (void)cairn::VerifyEd25519((*pub)->raw_public(), "m", in);
  return 0;
}
