// Names, versions, tags and file paths (the rules that keep a pull inside its
// output directory).
#include <cstdint>
#include <string_view>

#include "cairn/objects.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (cairn::ValidatePath(in).ok()) {
    // A valid path never starts at the root, never has an empty, "." or ".."
    // component, and holds no NUL, backslash or control character.
    if (in.empty() || in[0] == '/') __builtin_trap();
    size_t start = 0;
    while (start <= in.size()) {
      size_t end = in.find('/', start);
      if (end == std::string_view::npos) end = in.size();
      std::string_view seg = in.substr(start, end - start);
      if (seg.empty() || seg == "." || seg == "..") __builtin_trap();
      start = end + 1;
    }
    for (char c : in) {
      if (c == '\0' || c == '\\' || static_cast<unsigned char>(c) < 0x20) __builtin_trap();
    }
  }
  (void)cairn::ValidateName(in);
  (void)cairn::ValidateVersion(in);
  (void)cairn::ValidateTag(in);
  return 0;
}
