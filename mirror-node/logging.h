// Where the node's log goes: standard error (journald under systemd), or a
// file the node rotates itself ([node] log_file, log_max_bytes, log_files).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace cairn::node {

struct LogOptions {
  std::string file;              // empty: standard error
  int64_t max_bytes = 64 << 20;  // per file, before it is rotated
  int64_t files = 5;             // rotated files kept beside it (node.1.log ...)
  std::string level = "info";
};

// Makes the default logger write to the file (appending; rotated when it
// would pass max_bytes: node.log becomes node.1.log, node.1.log node.2.log,
// ..., the oldest dropped) or to standard error. InvalidArgument naming the file when it
// cannot be opened for appending (its folder missing or not writable); the
// logger in place is kept then.
absl::Status SetUpLogging(const LogOptions& o);

}  // namespace cairn::node
