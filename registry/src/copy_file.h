// Copying a file the kernel's way (copy_file_range, a reflink where the file
// system shares extents), falling back to read and write.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "cairn/clock.h"

namespace cairn {

// Copies `from` as it is now (an append-only file: its size is read once) to
// the new file `to`, synced. NotFound when `from` is absent; Cancelled (the
// part copied stays) when `cancel` (may be null) is.
absl::StatusOr<uint64_t> CopyFile(const std::string& from, const std::string& to,
                                  Cancellation* cancel = nullptr);

}  // namespace cairn
