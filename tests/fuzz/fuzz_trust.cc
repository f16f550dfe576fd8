// Trust files (signed trust roots) as read from disk or a peer, and chains of
// them as offered by a peer (cairn trust update, OfferTrustRoots).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/objects.h"
#include "cairn/trust.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)cairn::ParseTrustRoot(in);
  auto view = cairn::TrustRootView::FromEnvelopeBytes(in, 1700000000);
  if (view.ok()) (void)view->digest();
  // The same bytes split on a separator into a chain offered to the root
  // they start with (when that parses), ignoring expiry.
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i + 3 <= in.size(); ++i) {
    if (in.substr(i, 3) == "\n--") {
      parts.emplace_back(in.substr(start, i - start));
      start = i + 3;
    }
  }
  parts.emplace_back(in.substr(start));
  auto first = cairn::TrustRootView::FromEnvelopeBytes(parts[0], cairn::kIgnoreExpiry);
  if (first.ok()) {
    std::vector<std::string> rest(parts.begin() + 1, parts.end());
    (void)cairn::WalkTrustChain(*first, rest, 1700000000);
    for (const auto& p : rest) (void)cairn::VerifySuccessor(*first, p, cairn::kIgnoreExpiry);
  }
  return 0;
}
