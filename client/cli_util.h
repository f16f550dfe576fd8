// Output helpers shared by the cairn subcommands.
#pragma once

#include <cstdio>
#include <iostream>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace cairn::client {

// Prints "cairn: error: ..." on one line; returns the exit code 1.
inline int Fail(const absl::Status& s) {
  std::string msg(s.message());
  for (char& c : msg) {
    if (c == '\n') c = ' ';
  }
  std::fprintf(stderr, "cairn: error: %s\n", msg.c_str());
  return 1;
}

inline void PrintJson(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

}  // namespace cairn::client
