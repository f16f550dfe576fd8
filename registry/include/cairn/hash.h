// SHA-256 naming of every Cairn object ("sha256:<64 hex>").
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cairn {

// Raw SHA-256 value.
using Digest = std::array<uint8_t, 32>;

// Incremental SHA-256 over OpenSSL EVP. Not thread-safe; cheap to reuse via
// Reset().
class Sha256 {
 public:
  Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t len);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // Returns the digest of everything since construction or Reset(), and resets.
  Digest Finish();
  void Reset();

 private:
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx_;
};

// SHA-256 of a stream of blocks, computed on a worker thread so the producer's
// core is free for other work. Blocks are hashed in order. One producer
// thread; not otherwise thread-safe. At most 2 blocks are queued (Update
// blocks beyond that), bounding memory.
class ParallelSha256 {
 public:
  ParallelSha256();
  ~ParallelSha256();
  ParallelSha256(const ParallelSha256&) = delete;
  ParallelSha256& operator=(const ParallelSha256&) = delete;

  // Queues `block` (moved in) for hashing.
  void Update(std::string block);
  // Waits for every queued block; returns the digest and resets.
  Digest Finish();
  // An empty buffer to fill next (recycled from hashed blocks when possible).
  std::string TakeBuffer();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// One-shot SHA-256.
Digest Sha256Of(const void* data, size_t len);
inline Digest Sha256Of(std::string_view s) { return Sha256Of(s.data(), s.size()); }

std::string ToHex(const uint8_t* data, size_t len);
// "sha256:<hex>".
std::string DigestName(const Digest& d);
inline std::string DigestName(std::string_view bytes) { return DigestName(Sha256Of(bytes)); }
// Parses "sha256:<64 lowercase hex>". InvalidArgument otherwise.
absl::StatusOr<Digest> ParseDigestName(std::string_view name);
// Raw 32 bytes (as sent in chunk refs) to Digest. InvalidArgument if not 32 bytes.
absl::StatusOr<Digest> DigestFromBytes(std::string_view raw);
inline std::string_view DigestBytes(const Digest& d) {
  return std::string_view(reinterpret_cast<const char*>(d.data()), d.size());
}

// A chunk to fetch: its digest and its length from the signed chunk list.
struct ChunkWant {
  Digest digest;
  uint32_t length;
};

struct DigestHash {
  size_t operator()(const Digest& d) const {
    size_t h;
    static_assert(sizeof(h) <= sizeof(Digest));
    __builtin_memcpy(&h, d.data(), sizeof(h));
    return h;
  }
};

}  // namespace cairn
