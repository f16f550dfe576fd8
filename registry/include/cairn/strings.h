// String helpers over std::string_view. Debian's absl has its own
// absl::string_view that std::string_view does not convert to, so absl::StrCat
// and friends do not take std::string_view: these do.
#pragma once

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace cairn {

class AlphaNum {
 public:
  AlphaNum(std::string_view s) : view_(s) {}                    // NOLINT
  AlphaNum(const char* s) : view_(s) {}                         // NOLINT
  AlphaNum(const std::string& s) : view_(s) {}                  // NOLINT
  AlphaNum(absl::string_view s) : view_(s.data(), s.size()) {}  // NOLINT
  AlphaNum(char c) : buf_(1, c), view_(buf_) {}                 // NOLINT
  template <std::integral T>
  requires(!std::same_as<T, char> && !std::same_as<T, bool>) AlphaNum(T v)
      : buf_(std::to_string(v)), view_(buf_) {}                 // NOLINT
  AlphaNum(double v) : buf_(std::to_string(v)), view_(buf_) {}  // NOLINT
  AlphaNum(const AlphaNum&) = delete;
  std::string_view view() const { return view_; }

 private:
  std::string buf_;
  std::string_view view_;
};

inline std::string StrCatImpl(std::initializer_list<std::string_view> parts) {
  size_t n = 0;
  for (auto p : parts) n += p.size();
  std::string out;
  out.reserve(n);
  for (auto p : parts) out.append(p);
  return out;
}

template <typename... Args>
std::string StrCat(const Args&... args) {
  return StrCatImpl({AlphaNum(args).view()...});
}

template <typename Range>
std::string StrJoin(const Range& r, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& x : r) {
    if (!first) out.append(sep);
    first = false;
    out.append(std::string_view(x));
  }
  return out;
}

// Splits on every `sep`; "" gives one empty piece. At most `max_pieces` pieces
// (the last holds the rest).
inline std::vector<std::string_view> Split(std::string_view s, char sep,
                                           size_t max_pieces = static_cast<size_t>(-1)) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max_pieces) {
    size_t p = s.find(sep);
    if (p == std::string_view::npos) break;
    out.push_back(s.substr(0, p));
    s.remove_prefix(p + 1);
  }
  out.push_back(s);
  return out;
}

// The candidate closest to `word` by edit distance (case-insensitive), or ""
// when none is within a third of its length: for "did you mean" hints.
inline std::string Nearest(std::string_view word, const std::vector<std::string>& candidates) {
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    std::vector<size_t> row(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min(
            {row[j] + 1, row[j - 1] + 1, diag + (lower(word[i - 1]) == lower(c[j - 1]) ? 0 : 1)});
        diag = up;
      }
    }
    if (row[c.size()] < best_d) {
      best_d = row[c.size()];
      best = c;
    }
  }
  return best;
}

template <std::integral T>
bool ParseInt(std::string_view s, T* out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty();
}

// The length (1-4) of the well-formed UTF-8 sequence at s[i] (no overlongs,
// surrogates or code points past U+10FFFF), or 0 when there is none.
inline size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;  // the sequence runs past the end
  for (size_t k = 1; k < n; ++k) {
    const unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

// Text someone else wrote, made safe for one terminal line: control
// characters (escape sequences, newlines) become '?', cut at `max` bytes.
inline std::string OneLine(std::string_view s, size_t max = 1024) {
  std::string out(s.substr(0, max));
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned char u = static_cast<unsigned char>(out[i]);
    if (u < 0x20 || u == 0x7f) out[i] = '?';
    // C1 controls (U+0080..U+009F: an 8-bit CSI among them) in UTF-8.
    if (u == 0xc2 && i + 1 < out.size() && static_cast<unsigned char>(out[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(out[i + 1]) <= 0x9f) {
      out[i] = '?';
      out[i + 1] = '?';
    }
  }
  return out;
}

}  // namespace cairn
