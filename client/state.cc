// Client state that must survive between runs: the highest tag versions
// verified so far (rollback protection).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "cairn/crypto.h"
#include "cairn/hash.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "client.h"

namespace cairn::client {

namespace {
constexpr size_t kMaxStateBytes = 64 << 20;

struct Seen {
  uint64_t version = 0;
  std::string manifest;
};
}  // namespace

std::string DefaultStateDir() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x == '/') {
    return std::string(x) + "/cairn";
  }
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/state/cairn";
}

std::string TrustScope(const TrustRootView& trust) {
  std::vector<std::string> ids(trust.root().root_key_ids().begin(),
                               trust.root().root_key_ids().end());
  std::sort(ids.begin(), ids.end());
  return DigestName(Sha256Of(StrJoin(ids, ","))).substr(7, 16);  // after "sha256:"
}

absl::Status CheckAndRecordTag(const std::string& state_dir, const TrustRootView& trust,
                               const cairn::v1::TagRecord& rec, const std::string& node) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) return absl::FailedPreconditionError("cannot create " + state_dir + ": " + ec.message());
  std::string lock_path = state_dir + "/tags.lock";
  int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0) return ErrnoStatus(errno, "cannot open " + lock_path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{lock};
  if (::flock(lock, LOCK_EX) != 0) return ErrnoStatus(errno, "cannot lock " + lock_path);

  std::string path = state_dir + "/tags-" + TrustScope(trust);
  std::map<std::pair<std::string, std::string>, Seen> seen;
  if (std::filesystem::exists(path, ec)) {
    CAIRN_ASSIGN_OR_RETURN(std::string text, ReadFileLimited(path, kMaxStateBytes));
    int line_no = 0;
    for (std::string_view line : Split(text, '\n')) {
      ++line_no;
      if (line.empty()) continue;
      std::vector<std::string_view> f = Split(line, ' ');
      uint64_t v = 0;
      if (f.size() != 4 || !ParseInt(f[2], &v)) {
        return absl::DataLossError(
            StrCat(path, ":", line_no,
                   " is not 'name tag version manifest'; fix or delete "
                   "the line (that forgets the rollback floor of that tag)"));
      }
      seen[{std::string(f[0]), std::string(f[1])}] = {v, std::string(f[3])};
    }
  }
  auto key = std::make_pair(rec.name(), rec.tag());
  auto it = seen.find(key);
  if (it != seen.end()) {
    if (rec.version() < it->second.version) {
      return absl::PermissionDeniedError(StrCat(
          "rollback refused: node ", node, " offers ", rec.name(), ":", rec.tag(), " version ",
          rec.version(), " but version ", it->second.version,
          " was already verified here; the node is stale or replaying an old tag (try another "
          "--node)"));
    }
    if (rec.version() == it->second.version) {
      if (rec.manifest_digest() != it->second.manifest) {
        return absl::PermissionDeniedError(StrCat(
            "node ", node, " offers ", rec.name(), ":", rec.tag(), " version ", rec.version(),
            " naming ", rec.manifest_digest(), " but the same version named ", it->second.manifest,
            " before; two records with one version is a signing error"));
      }
      return absl::OkStatus();
    }
  }
  seen[key] = {rec.version(), rec.manifest_digest()};
  std::string out;
  for (const auto& [k, s] : seen) {
    out += StrCat(k.first, " ", k.second, " ", s.version, " ", s.manifest, "\n");
  }
  return WriteFileAtomic(path, out, 0644);
}

}  // namespace cairn::client
