// Small pieces the HTTP gateway's handlers share: path and query parsing,
// JSON strings, byte ranges, entity tags, timestamps. Pure functions.
#pragma once

#include <boost/beast/core/string.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace cairn::node::http_util {

inline std::string_view SV(boost::beast::string_view s) { return {s.data(), s.size()}; }

// Percent-decodes; nullopt for a bad escape or a NUL. '+' stays '+' (paths),
// unless `plus_is_space` (form bodies and query strings).
std::optional<std::string> Unescape(std::string_view s, bool plus_is_space = false);

// Percent-encodes everything but unreserved characters and, unless
// `encode_slash`, '/'.
std::string Escape(std::string_view s, bool encode_slash = false);

// The request target's path split into raw (still encoded) segments, query
// dropped. nullopt when the target does not start with '/'.
std::optional<std::vector<std::string_view>> RawSegments(std::string_view target);

// A decoded segment that is safe as a name part: not empty, not "." or "..",
// no '/' once decoded. nullopt otherwise.
std::optional<std::string> CleanSegment(std::string_view raw);

// Raw segments joined with '/' and decoded as one path (a client may encode
// a '/' as %2F): nullopt unless every '/'-separated part is clean.
std::optional<std::string> CleanPath(const std::vector<std::string_view>& raw, size_t from);

// The query string's pairs, decoded (form rules); a pair with a bad escape
// or a NUL is dropped, and sets *malformed when given.
std::vector<std::pair<std::string, std::string>> QueryPairs(std::string_view query,
                                                            bool* malformed = nullptr);
// The first value of `key` in the target's query, if any.
std::optional<std::string> QueryValue(std::string_view target, std::string_view key);
// "true", "True", "1" (and "TRUE"): true; anything else false.
bool Truthy(std::string_view v);

std::string JsonString(std::string_view s);

// Unix seconds as "YYYY-MM-DDTHH:MM:SS.000Z" (UTC, literal Z).
std::string IsoTime(int64_t unix_seconds);

// A byte range [first, last] of a file of `size` bytes. nullopt when there is
// none to honour (no header, or a unit other than bytes: RFC 9110 says ignore
// it); InvalidArgument for a malformed one or a list (one range per request),
// OutOfRange for one that cannot be satisfied.
struct Range {
  uint64_t first = 0, last = 0;
};
absl::StatusOr<std::optional<Range>> ParseRange(std::string_view header, uint64_t size);

// If-None-Match: "*", or a list of entity tags (weak ones compare weakly).
bool NoneMatch(std::string_view header, std::string_view etag);

// A Host header fit to put back in a URL ([A-Za-z0-9.:-] and a bracketed
// IPv6 literal), else empty.
std::string SafeHost(std::string_view host);

}  // namespace cairn::node::http_util
