// cairn-node's TOML config file.
#include <cstdint>
#include <string_view>

#include "config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  cairn::node::ServeConfig cfg;
  (void)cairn::node::ParseConfig(in, "fuzz.toml", &cfg);
  return 0;
}
