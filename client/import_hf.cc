// `cairn import-hf`: a folder downloaded from the Hugging Face Hub, signed
// into the federation with the Hub's file names and commit id.
#include <filesystem>
#include <fstream>

#include "cairn/status.h"
#include "cairn/strings.h"
#include "client.h"

namespace cairn::client {

namespace {

namespace fs = std::filesystem;

bool IsCommitId(std::string_view s) {
  return s.size() == 40 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// "models--org--name" -> "org/name"; empty when the folder is not so named.
std::string RepoOfCacheFolder(const std::string& folder) {
  const std::string prefix = "models--";
  if (folder.compare(0, prefix.size(), prefix) != 0) return "";
  std::string rest = folder.substr(prefix.size());
  const size_t sep = rest.find("--");
  if (sep == std::string::npos || sep == 0 || sep + 2 >= rest.size()) return "";
  return rest.substr(0, sep) + "/" + rest.substr(sep + 2);
}

}  // namespace

absl::Status PrepareHfImport(const std::string& dir_text, const std::string& revision,
                             const std::string& commit, PublishOptions* o) {
  std::error_code ec;
  fs::path dir = fs::canonical(dir_text, ec);
  if (ec || !fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(dir_text + " is not a directory");
  }
  std::string sha;
  if (fs::is_directory(dir / "snapshots", ec)) {
    // The cache repository folder: the revision's commit from refs/.
    const std::string rev = revision.empty() ? "main" : revision;
    if (IsCommitId(rev)) {
      sha = rev;
    } else {
      if (rev.find('/') != std::string::npos || rev.find("..") != std::string::npos) {
        return absl::InvalidArgumentError("--revision " + rev + ": not a ref name");
      }
      std::ifstream ref(dir / "refs" / rev);
      if (!ref || !std::getline(ref, sha) || !IsCommitId(sha)) {
        return absl::NotFoundError(StrCat(dir.string(), " has no ref ", rev, " (refs/", rev,
                                          " with a commit id); pass --revision"));
      }
    }
    dir = dir / "snapshots" / sha;
    if (!fs::is_directory(dir, ec)) {
      return absl::NotFoundError("no snapshot " + dir.string() + " in the cache folder");
    }
  }
  // One revision of a cache folder: .../models--org--name/snapshots/<sha>.
  const fs::path parent = dir.parent_path();
  if (parent.filename() == "snapshots" && IsCommitId(dir.filename().string())) {
    sha = dir.filename().string();
    const fs::path repo = parent.parent_path();
    o->link_root = (repo / "blobs").string();
    if (std::string id = RepoOfCacheFolder(repo.filename().string()); !id.empty()) {
      o->metadata.emplace_back("hf.repo", id);
    }
  }
  // A snapshot laid out as a plain folder (huggingface-cli download
  // --local-dir) has regular files only; its .cache/ is download state.
  o->skip_hf_state = true;
  if (!commit.empty()) {
    if (!IsCommitId(commit)) {
      return absl::InvalidArgumentError("--commit " + commit + ": want 40 lowercase hex digits");
    }
    sha = commit;
  }
  if (!sha.empty()) o->metadata.emplace_back("hf.commit", sha);
  o->dir = dir.string();
  return absl::OkStatus();
}

}  // namespace cairn::client
