#include "http_util.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>

#include "cairn/strings.h"

namespace cairn::node::http_util {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Digits only; a value past 2^64-1 reads as the largest (a range end past
// the file is clamped anyway).
bool ParseBound(std::string_view s, uint64_t* out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) *out = UINT64_MAX;
  return true;
}

bool CleanPart(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string_view::npos;
}

}  // namespace

std::optional<std::string> Unescape(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && plus_is_space) {
      out.push_back(' ');
      continue;
    }
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string Escape(std::string_view s, bool encode_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::optional<std::vector<std::string_view>> RawSegments(std::string_view target) {
  target = target.substr(0, target.find('?'));
  if (target.empty() || target[0] != '/') return std::nullopt;
  std::vector<std::string_view> out;
  if (target == "/") return out;
  std::string_view rest = target.substr(1);
  for (;;) {
    const size_t slash = rest.find('/');
    out.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return out;
}

std::optional<std::string> CleanSegment(std::string_view raw) {
  auto seg = Unescape(raw);
  if (!seg || !CleanPart(*seg)) return std::nullopt;
  return seg;
}

std::optional<std::string> CleanPath(const std::vector<std::string_view>& raw, size_t from) {
  if (from >= raw.size()) return std::nullopt;
  std::string joined;
  for (size_t i = from; i < raw.size(); ++i) {
    if (i > from) joined += '/';
    joined.append(raw[i]);
  }
  auto path = Unescape(joined);
  if (!path) return std::nullopt;
  std::string_view rest = *path;
  for (;;) {
    const size_t slash = rest.find('/');
    if (!CleanPart(rest.substr(0, slash))) return std::nullopt;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return path;
}

std::vector<std::pair<std::string, std::string>> QueryPairs(std::string_view query,
                                                            bool* malformed) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    auto k = Unescape(item.substr(0, eq), true);
    auto v =
        Unescape(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1), true);
    if (k && v) {
      out.emplace_back(std::move(*k), std::move(*v));
    } else if (malformed != nullptr) {
      *malformed = true;
    }
  }
  return out;
}

std::optional<std::string> QueryValue(std::string_view target, std::string_view key) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  for (auto& [k, v] : QueryPairs(target.substr(q + 1))) {
    if (k == key) return v;
  }
  return std::nullopt;
}

bool Truthy(std::string_view v) { return v == "true" || v == "True" || v == "TRUE" || v == "1"; }

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
      ++i;
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
      ++i;
      continue;
    }
    // UTF-8 as it is (file names are UTF-8); a byte that is not part of a
    // valid sequence (a client's path) becomes U+FFFD, so the answer is
    // always valid JSON.
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out + "\"";
}

std::string IsoTime(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
  return buf;
}

absl::StatusOr<std::optional<Range>> ParseRange(std::string_view h, uint64_t size) {
  if (h.empty()) return std::optional<Range>();
  const size_t eq = h.find('=');
  std::string unit(h.substr(0, eq));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (eq == std::string_view::npos || unit != "bytes") return std::optional<Range>();
  h.remove_prefix(eq + 1);
  auto trim = [](std::string_view v) {  // optional whitespace (RFC 9110 5.6.3)
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
  };
  h = trim(h);
  if (h.find(',') != std::string_view::npos) {
    return absl::InvalidArgumentError("one range per request");
  }
  const size_t dash = h.find('-');
  if (dash == std::string_view::npos) return absl::InvalidArgumentError("bad range");
  std::string_view a = trim(h.substr(0, dash)), b = trim(h.substr(dash + 1));
  uint64_t x = 0, y = 0;
  Range r;
  if (a.empty()) {  // the last y bytes
    if (!ParseBound(b, &y)) return absl::InvalidArgumentError("bad suffix range");
    if (y == 0 || size == 0) return absl::OutOfRangeError("empty suffix range");
    r.first = y >= size ? 0 : size - y;
    r.last = size - 1;
    return std::optional<Range>(r);
  }
  if (!ParseBound(a, &x)) return absl::InvalidArgumentError("bad range");
  if (!b.empty() && (!ParseBound(b, &y) || y < x)) return absl::InvalidArgumentError("bad range");
  if (x >= size) return absl::OutOfRangeError("range starts past the end");
  r.first = x;
  r.last = b.empty() ? size - 1 : std::min(y, size - 1);
  return std::optional<Range>(r);
}

bool NoneMatch(std::string_view h, std::string_view etag) {
  if (h.empty()) return false;
  size_t pos = 0;
  while (pos < h.size()) {
    size_t comma = h.find(',', pos);
    std::string_view t = h.substr(pos, comma == std::string_view::npos ? h.npos : comma - pos);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (t.substr(0, 2) == "W/") t.remove_prefix(2);
    if (t == "*" || t == etag) return true;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return false;
}

std::string SafeHost(std::string_view host) {
  if (host.empty() || host.size() > 255) return "";
  for (char c : host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != ':' && c != '-' &&
        c != '[' && c != ']') {
      return "";
    }
  }
  return std::string(host);
}

}  // namespace cairn::node::http_util
