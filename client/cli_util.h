// Output helpers shared by the cairn subcommands.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
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

// ISO 8601 in UTC: "2026-11-30T04:12:09Z" (text output; --json keeps Unix
// seconds).
inline std::string IsoDate(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  char buf[32];
  if (gmtime_r(&t, &tm) == nullptr ||
      std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(unix_seconds);
  }
  return buf;
}

inline void PrintJson(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

}  // namespace cairn::client
