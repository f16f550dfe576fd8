// CRC-32C against RFC 3720's test vectors and a bit-at-a-time reference,
// at every length and alignment the three-stream path splits differently.
#include "cairn/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace cairn {
namespace {

uint32_t Reference(const std::string& s) {
  uint32_t c = 0xffffffff;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78 : c >> 1;
  }
  return ~c;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8a9136aau);    // RFC 3720 B.4
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62a8ab43u);  // RFC 3720 B.4
  std::string up;
  for (int i = 0; i < 32; ++i) up.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(up), 0x46dd794eu);  // RFC 3720 B.4, incrementing bytes
}

TEST(Crc32cTest, MatchesTheReferenceAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(7);
  std::string data(3 * 8192 * 2 + 3 * 256 * 3 + 77, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  // Lengths around each split: the long and short rounds, the 8-byte tail.
  for (size_t len : {0, 1, 7, 8, 9, 255, 767, 768, 769, 24575, 24576, 24577, 49152, 50000,
                     static_cast<int>(data.size() - 3)}) {
    for (size_t off : {0, 1, 3}) {
      const std::string s = data.substr(off, len);
      ASSERT_EQ(Crc32c(s), Reference(s)) << "len " << len << " off " << off;
    }
  }
  for (int i = 0; i < 200; ++i) {
    const size_t len = rng() % 70000;
    const size_t off = rng() % (data.size() - (len % data.size()) + 1);
    const std::string s = data.substr(off, len);
    ASSERT_EQ(Crc32c(s), Reference(s)) << "len " << s.size();
  }
}

TEST(Crc32cTest, ContinuesAcrossPieces) {
  std::mt19937_64 rng(9);
  std::string data(65536, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  for (size_t cut : {0, 1, 8, 4096, 30000, 65535, 65536}) {
    const uint32_t head = Crc32c(std::string_view(data).substr(0, cut));
    EXPECT_EQ(Crc32c(std::string_view(data).substr(cut), head), Crc32c(data)) << cut;
  }
}

TEST(Crc32cTest, AnyOneBitFlipChangesIt) {
  std::string data(65536, 'x');
  const uint32_t good = Crc32c(data);
  for (size_t at : {0, 1, 8191, 8192, 24576, 65535}) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = data;
      bad[at] = static_cast<char>(bad[at] ^ (1 << bit));
      EXPECT_NE(Crc32c(bad), good) << at << ":" << bit;
    }
  }
}

}  // namespace
}  // namespace cairn
