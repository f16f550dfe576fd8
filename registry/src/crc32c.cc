// CRC-32C: a table for any CPU, and SSE4.2's crc32 instruction on x86-64.
// The instruction has a latency of three cycles and a throughput of one, so
// long buffers are cut into three blocks hashed side by side; the three
// partial values are then joined with "shift" tables (a CRC is linear: the
// CRC of A||B is the CRC of A advanced over |B| zero bytes, xor the CRC of B
// from zero).
#include "cairn/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace cairn {
namespace {

constexpr uint32_t kPoly = 0x82f63b78;  // reflected Castagnoli polynomial

struct Table {
  std::array<uint32_t, 256> t{};
  constexpr Table() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[i] = c;
    }
  }
};
constexpr Table kTable;

// The raw register (no inversion) advanced over `len` bytes.
uint32_t SoftRaw(uint32_t c, const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; ++i) c = kTable.t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
constexpr size_t kLong = 8192;  // bytes per stream, long rounds
constexpr size_t kShort = 256;  // bytes per stream, short rounds

__attribute__((target("sse4.2"))) uint64_t HardRaw(uint64_t c, const uint8_t* p, size_t len) {
  for (; len >= 8; p += 8, len -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  for (; len > 0; ++p, --len) c = _mm_crc32_u8(static_cast<uint32_t>(c), *p);
  return c;
}

// shift[k][b]: the register (b << 8k) advanced over `n` zero bytes.
struct Shift {
  uint32_t t[4][256];
  __attribute__((target("sse4.2"))) explicit Shift(size_t n) {
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) {
        uint64_t c = uint64_t{b} << (8 * k);
        for (size_t i = 0; i < n; i += 8) c = _mm_crc32_u64(c, 0);
        t[k][b] = static_cast<uint32_t>(c);
      }
    }
  }
  uint32_t operator()(uint32_t c) const {
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
  }
};

// Three streams of `block` bytes each, rounds while at least 3 * block remain.
template <size_t block>
__attribute__((target("sse4.2"))) uint64_t Rounds(uint64_t c, const uint8_t*& p, size_t& len,
                                                  const Shift& shift) {
  while (len >= 3 * block) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < block; i += 8) {
      uint64_t a, b, d;
      std::memcpy(&a, p + i, 8);
      std::memcpy(&b, p + block + i, 8);
      std::memcpy(&d, p + 2 * block + i, 8);
      c = _mm_crc32_u64(c, a);
      c1 = _mm_crc32_u64(c1, b);
      c2 = _mm_crc32_u64(c2, d);
    }
    c = shift(shift(static_cast<uint32_t>(c)) ^ static_cast<uint32_t>(c1)) ^
        static_cast<uint32_t>(c2);
    p += 3 * block;
    len -= 3 * block;
  }
  return c;
}

uint32_t Hard(uint32_t c, const uint8_t* p, size_t len) {
  static const Shift long_shift(kLong);
  static const Shift short_shift(kShort);
  uint64_t r = c;
  r = Rounds<kLong>(r, p, len, long_shift);
  r = Rounds<kShort>(r, p, len, short_shift);
  return static_cast<uint32_t>(HardRaw(r, p, len));
}

bool HasSse42() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("sse4.2"));
  return has;
}
#else
bool HasSse42() { return false; }
#endif

}  // namespace

uint32_t Crc32c(const void* data, size_t len, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  const uint32_t c = ~crc;
#if defined(__x86_64__)
  if (HasSse42()) return ~Hard(c, p, len);
#endif
  return ~SoftRaw(c, p, len);
}

bool Crc32cIsHardware() { return HasSse42(); }

}  // namespace cairn
