// How a Cairn release looks through the Hugging Face Hub API: commit ids,
// git blob ids, LFS pointers and the repository tree. Pure functions over
// the signed manifest (the HTTP side is hf_api.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/v1/objects.pb.h"

namespace cairn::node::hf {

// Manifest metadata key a release imported from the Hub keeps its upstream
// commit id under (`cairn import-hf` writes it), so caches filled from the
// Hub and from Cairn agree.
inline constexpr std::string_view kCommitKey = "hf.commit";

// 40 lowercase hex digits.
bool IsCommitId(std::string_view s);
// A release's own commit id: the first 40 hex digits of its manifest
// digest's SHA-256 ("sha256:<64 hex>"), the same on every node.
std::string DerivedCommitId(std::string_view manifest_digest);
// The id clients see: the manifest's kCommitKey when it holds a valid id,
// else DerivedCommitId.
std::string CommitId(const cairn::v1::Manifest& m, std::string_view manifest_digest);

// Whether the Hub would keep the file in LFS: its default .gitattributes
// patterns (weights, archives, arrays) or 10 MiB and more.
bool IsLfs(const cairn::v1::FileEntry& f);
// The file's git-lfs pointer text (what `raw` serves for an LFS file).
std::string LfsPointer(const cairn::v1::FileEntry& f);
// The lowercase hex of the file's SHA-256 ("sha256:<hex>" stripped).
std::string Sha256Hex(const cairn::v1::FileEntry& f);

// git's blob id, SHA-1 of "blob <size>\0" + content, fed in pieces.
class GitBlobHasher {
 public:
  explicit GitBlobHasher(uint64_t size);
  ~GitBlobHasher();
  GitBlobHasher(const GitBlobHasher&) = delete;
  GitBlobHasher& operator=(const GitBlobHasher&) = delete;
  void Update(std::string_view bytes);
  std::string HexFinal();  // once

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};
std::string GitBlobId(std::string_view content);

// An entry of the repository tree below a directory.
struct TreeEntry {
  bool directory = false;
  std::string path;
  const cairn::v1::FileEntry* file = nullptr;  // files only; points into the manifest
  std::string directory_oid;                   // directories only: 40 hex, stable
};
// The entries below `dir` ("" for the top): its immediate children, or with
// `recursive` every file and directory below it, sorted by path. `found` is
// false when `dir` is neither "" nor a directory of the release.
std::vector<TreeEntry> Tree(const cairn::v1::Manifest& m, std::string_view dir, bool recursive,
                            bool* found);
// The file or directory at `path`, if any (for paths-info).
bool Lookup(const cairn::v1::Manifest& m, std::string_view path, TreeEntry* out);

}  // namespace cairn::node::hf
