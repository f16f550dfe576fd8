// Re-checking a pulled tree against its signed manifest.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/container/flat_hash_set.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/verify.h"
#include "client.h"
#include "safe_fs.h"

namespace cairn::client {

using cairn::v1::Manifest;

// ---------------- Verify ----------------

absl::StatusOr<VerifyResult> VerifyTree(const std::string& dir, const TrustRootView& trust) {
  auto env = ReadFileLimited(dir + "/.cairn/manifest.envelope", kMaxEnvelopeBytes);
  if (!env.ok()) {
    return absl::NotFoundError(dir +
                               " has no readable signed manifest (.cairn/manifest.envelope): " +
                               std::string(env.status().message()));
  }
  VerifyResult res;
  CAIRN_ASSIGN_OR_RETURN(Manifest m, VerifyManifestEnvelope(trust, *env, &res.manifest));
  res.name = m.name();
  res.version = m.version();
  Fd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.fd < 0) return ErrnoStatus(errno, "cannot open " + dir);
  // A partial pull (--include, FILE...) lists the files it holds.
  absl::flat_hash_set<std::string> listed, partial;
  if (auto p = ReadFileLimited(dir + "/.cairn/partial", kMaxEnvelopeBytes); p.ok()) {
    for (auto line : Split(*p, '\n')) {
      if (!line.empty()) partial.emplace(line);
    }
  }
  std::string buf(4 << 20, '\0');
  for (const auto& f : m.files()) {
    listed.insert(f.path());
    auto [d, base] = SplitDirBase(f.path());
    auto dfd = OpenDirBeneath(root.fd, d, /*create=*/false);
    // A partial pull need not hold the files it did not pull; one that is
    // there anyway (left by a pull of another release) is checked like the
    // rest: the tree claims this manifest.
    if (!partial.empty() && !partial.contains(f.path())) {
      struct stat there;
      if (!dfd.ok() || ::fstatat(dfd->fd, base.c_str(), &there, AT_SYMLINK_NOFOLLOW) != 0) continue;
    }
    if (!dfd.ok()) {
      res.problems.push_back(f.path() + ": missing");
      continue;
    }
    Fd fd(::openat(dfd->fd, base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    struct stat st;
    if (fd.fd < 0) {
      res.problems.push_back(f.path() + (errno == ENOENT ? ": missing" : ": cannot open"));
      continue;
    }
    if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      res.problems.push_back(f.path() + ": not a regular file");
      continue;
    }
    if (static_cast<uint64_t>(st.st_size) != f.size()) {
      res.problems.push_back(StrCat(f.path(), ": size ", st.st_size, ", signed ", f.size()));
      continue;
    }
    Sha256 sha;
    ssize_t n;
    while ((n = ::read(fd.fd, buf.data(), buf.size())) > 0) sha.Update(buf.data(), n);
    if (n < 0) {
      res.problems.push_back(f.path() + ": read error");
      continue;
    }
    if (DigestName(sha.Finish()) != f.sha256()) {
      res.problems.push_back(f.path() + ": content differs from the signed SHA-256");
      continue;
    }
    res.files_ok++;
  }
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = it->path().lexically_relative(dir).generic_string();
    if (it.depth() == 0 && rel == ".cairn") {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_directory() && !listed.contains(rel)) res.extra.push_back(rel);
  }
  std::sort(res.extra.begin(), res.extra.end());
  return res;
}

}  // namespace cairn::client
