// CRC-32C (Castagnoli, the iSCSI / ext4 / Ceph BlueStore checksum): the
// check a node records beside each chunk when the chunk's SHA-256 has been
// verified, so a later read can tell its bytes are still the verified ones
// for a fraction of a re-hash's cost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cairn {

// CRC-32C of `len` bytes, continuing from `crc` (the value of the bytes
// before; 0 to start). Uses the SSE4.2 instruction in three interleaved
// streams where the CPU has it (about 20 GB/s a core), a table otherwise.
uint32_t Crc32c(const void* data, size_t len, uint32_t crc = 0);
inline uint32_t Crc32c(std::string_view s, uint32_t crc = 0) {
  return Crc32c(s.data(), s.size(), crc);
}

// Whether Crc32c runs on the CPU instruction (for logs and benchmarks).
bool Crc32cIsHardware();

}  // namespace cairn
