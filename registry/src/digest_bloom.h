// A Bloom filter over chunk digests (SHA-256, so already uniform bits): what
// garbage collection marks live, and what clients were recently told a node
// holds. A false positive only keeps a chunk of garbage one pass longer; the
// seed differs per filter, so the same chunk is not kept by chance forever.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "cairn/hash.h"

namespace cairn {

class DigestBloom {
 public:
  // Room for `entries` at about 1 % false positives (10 bits each, 7
  // probes); at least 64 bits.
  DigestBloom(uint64_t entries, uint64_t seed)
      : bits_(std::max<uint64_t>(64, entries * 10) / 64 * 64), seed_(seed), words_(bits_ / 64) {}

  void Add(const Digest& d) {
    uint64_t h1, h2;
    Hashes(d, &h1, &h2);
    for (int i = 0; i < kProbes; ++i) {
      const uint64_t b = (h1 + i * h2) % bits_;
      words_[b / 64] |= uint64_t{1} << (b % 64);
    }
  }
  bool MayContain(const Digest& d) const {
    uint64_t h1, h2;
    Hashes(d, &h1, &h2);
    for (int i = 0; i < kProbes; ++i) {
      const uint64_t b = (h1 + i * h2) % bits_;
      if ((words_[b / 64] & (uint64_t{1} << (b % 64))) == 0) return false;
    }
    return true;
  }
  void Clear() { std::fill(words_.begin(), words_.end(), 0); }
  uint64_t bytes() const { return bits_ / 8; }

 private:
  static constexpr int kProbes = 7;
  void Hashes(const Digest& d, uint64_t* h1, uint64_t* h2) const {
    std::memcpy(h1, d.data(), 8);
    std::memcpy(h2, d.data() + 8, 8);
    *h1 ^= seed_;
    *h2 = (*h2 ^ (seed_ * 0x9e3779b97f4a7c15ULL)) | 1;
  }
  uint64_t bits_;
  uint64_t seed_;
  std::vector<uint64_t> words_;
};

}  // namespace cairn
