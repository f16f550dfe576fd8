#include <fnmatch.h>

#include <algorithm>
#include <ctime>

#include "cairn/replication.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

std::string ReplicationPolicy::Refuses(const std::string& name, uint64_t bytes) const {
  for (const auto& g : exclude) {
    if (::fnmatch(g.c_str(), name.c_str(), 0) == 0) return "excluded by '" + g + "'";
  }
  bool in = include.empty();
  for (const auto& g : include) in |= ::fnmatch(g.c_str(), name.c_str(), 0) == 0;
  if (!in) return "not in include " + StrJoin(include, ",");
  if (max_release_bytes > 0 && bytes > max_release_bytes) {
    return StrCat(bytes, " bytes, over max_release_bytes ", max_release_bytes);
  }
  return "";
}

bool ReplicationPolicy::FollowsTag(const std::string& tag) const {
  if (tags.empty()) return true;
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

bool ReplicationPolicy::InWindow(int64_t now) const {
  if (windows.empty()) return true;
  time_t t = static_cast<time_t>(now);
  struct tm local;
  if (::localtime_r(&t, &local) == nullptr) return true;
  int m = local.tm_hour * 60 + local.tm_min;
  for (const auto& [start, end] : windows) {
    if (start <= end ? (m >= start && m < end) : (m >= start || m < end)) return true;
  }
  return false;
}

absl::StatusOr<std::pair<int, int>> ReplicationPolicy::ParseWindow(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        StrCat("time window '", text, "' is not HH:MM-HH:MM in local time (e.g. 01:00-06:00)"));
  };
  auto parts = Split(text, '-');
  if (parts.size() != 2) return bad();
  int minutes[2];
  for (int i = 0; i < 2; ++i) {
    auto hm = Split(parts[i], ':');
    int h = -1, mi = -1;
    if (hm.size() != 2 || hm[0].size() != 2 || hm[1].size() != 2 || !ParseInt(hm[0], &h) ||
        !ParseInt(hm[1], &mi) || h < 0 || h > 24 || mi < 0 || mi > 59 || (h == 24 && mi != 0)) {
      return bad();
    }
    minutes[i] = h * 60 + mi;
  }
  if (minutes[0] == minutes[1]) return bad();
  return std::make_pair(minutes[0], minutes[1] % (24 * 60));
}

std::string ReplicationPolicy::ToString() const {
  std::string s = include.empty() ? "all names" : "include " + StrJoin(include, ",");
  if (!exclude.empty()) s += "; exclude " + StrJoin(exclude, ",");
  s += max_release_bytes ? StrCat("; releases up to ", max_release_bytes, " bytes")
                         : std::string("; any size");
  if (max_bytes_per_second) s += StrCat("; at most ", max_bytes_per_second, " bytes/s");
  if (!tags.empty()) s += "; tags " + StrJoin(tags, ",");
  if (!windows.empty()) {
    std::vector<std::string> w;
    char buf[32];
    for (const auto& [a, b] : windows) {
      std::snprintf(buf, sizeof buf, "%02d:%02d-%02d:%02d", a / 60, a % 60, b / 60, b % 60);
      w.push_back(buf);
    }
    s += "; only " + StrJoin(w, ",") + " local time";
  }
  return s;
}

}  // namespace cairn
