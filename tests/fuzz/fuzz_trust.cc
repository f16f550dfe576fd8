// Trust files (signed trust roots) as read from disk or a peer.
#include <cstdint>
#include <string_view>

#include "cairn/objects.h"
#include "cairn/trust.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)cairn::ParseTrustRoot(in);
  auto view = cairn::TrustRootView::FromEnvelopeBytes(in, 1700000000);
  if (view.ok()) (void)view->digest();
  return 0;
}
