// Names, versions, tags and file paths (the rules that keep a pull inside its
// output directory).
#include <cstdint>
#include <string_view>

#include "cairn/objects.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (cairn::ValidatePath(in).ok()) {
    // A valid path never climbs out or starts at the root.
    if (in.empty() || in[0] == '/' || in.find("..") == 0 || in.find("/../") != in.npos ||
        in.find('\0') != in.npos) {
      __builtin_trap();
    }
  }
  (void)cairn::ValidateName(in);
  (void)cairn::ValidateVersion(in);
  (void)cairn::ValidateTag(in);
  return 0;
}
