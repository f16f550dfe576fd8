// Internal to the client's store (model_store.cc, model_store_files.cc): the
// keys of its index tables (model_store.h describes them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cairn/hash.h"
#include "cairn/objects.h"

namespace cairn::client::store_keys {

inline void PutBE(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline uint64_t GetBE(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}

inline constexpr std::string_view kFilePrefix = "file";
inline constexpr std::string_view kPathPrefix = "path";
inline constexpr std::string_view kStatPrefix = "stat";
inline constexpr std::string_view kRootPrefix = "root";

// The id a path had in stores made before ids were allocated: the first 8
// bytes of its SHA-256.
inline std::string LegacyId(const std::string& path) {
  return std::string(DigestBytes(Sha256Of(path)).substr(0, 8));
}
inline std::string PathKey(const std::string& path) { return std::string(kPathPrefix) + path; }
inline std::string FileKey(const std::string& id) { return std::string(kFilePrefix) + id; }
inline std::string StatKey(const std::string& id) { return std::string(kStatPrefix) + id; }
inline std::string RootKey(const std::string& root) {
  return std::string(kRootPrefix) + root + '\0';
}
inline std::string LocalKey(const Digest& d, const std::string& id) {
  return std::string(DigestBytes(d)) + id;
}

}  // namespace cairn::client::store_keys
