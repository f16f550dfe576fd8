#include "hf_model.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdlib>

#include "cairn/strings.h"

namespace cairn::node::hf {

namespace {

constexpr uint64_t kLfsFromBytes = 10ull << 20;

// The Hub's default .gitattributes (git lfs track) suffixes.
constexpr std::array<std::string_view, 36> kLfsSuffixes = {
    ".7z",   ".arrow",       ".bin",     ".bz2",      ".ckpt",   ".ftz",     ".gguf", ".gz",
    ".h5",   ".joblib",      ".lfs",     ".mlmodel",  ".model",  ".msgpack", ".npy",  ".npz",
    ".onnx", ".ot",          ".parquet", ".pb",       ".pickle", ".pkl",     ".pt",   ".pth",
    ".rar",  ".safetensors", ".tar",     ".tflite",   ".tgz",    ".wasm",    ".xz",   ".zip",
    ".zst",  ".mlpackage",   ".ggml",    ".llamafile"};

std::string Hex(const unsigned char* d, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

// Whether `path` lies below directory `dir` ("" is the top).
bool Below(std::string_view path, std::string_view dir) {
  return dir.empty() ||
         (path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/');
}

// A stable id for the directory whose files are [begin, end) of the manifest.
std::string DirectoryOid(const cairn::v1::Manifest& m, std::string_view dir, int begin, int end) {
  GitBlobHasher h(0);
  h.Update(dir);
  for (int i = begin; i < end; ++i) {
    h.Update(m.files(i).path());
    h.Update(std::string_view("\0", 1));
    h.Update(m.files(i).sha256());
  }
  return h.HexFinal();
}

// [begin, end) of the files below `dir` (a contiguous run: paths are sorted,
// and every string with a given prefix sorts together).
std::pair<int, int> FilesBelow(const cairn::v1::Manifest& m, std::string_view dir) {
  if (dir.empty()) return {0, m.files_size()};
  const std::string prefix = std::string(dir) + "/";
  auto lo = std::lower_bound(m.files().begin(), m.files().end(), prefix,
                             [](const auto& f, const std::string& p) { return f.path() < p; });
  auto hi = lo;
  while (hi != m.files().end() && hi->path().compare(0, prefix.size(), prefix) == 0) ++hi;
  return {static_cast<int>(lo - m.files().begin()), static_cast<int>(hi - m.files().begin())};
}

}  // namespace

bool IsCommitId(std::string_view s) {
  return s.size() == 40 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string DerivedCommitId(std::string_view manifest_digest) {
  const size_t colon = manifest_digest.find(':');
  std::string_view hex =
      colon == std::string_view::npos ? manifest_digest : manifest_digest.substr(colon + 1);
  return std::string(hex.substr(0, 40));
}

std::string CommitId(const cairn::v1::Manifest& m, std::string_view manifest_digest) {
  for (const auto& kv : m.metadata()) {
    if (kv.key() == kCommitKey && IsCommitId(kv.value())) return kv.value();
  }
  return DerivedCommitId(manifest_digest);
}

bool IsLfs(const cairn::v1::FileEntry& f) {
  if (f.size() >= kLfsFromBytes) return true;
  const std::string& p = f.path();
  if (p.find("tfevents") != std::string::npos) return true;
  for (std::string_view s : kLfsSuffixes) {
    if (p.size() >= s.size() && p.compare(p.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

std::string Sha256Hex(const cairn::v1::FileEntry& f) {
  const size_t colon = f.sha256().find(':');
  return colon == std::string::npos ? f.sha256() : f.sha256().substr(colon + 1);
}

std::string LfsPointer(const cairn::v1::FileEntry& f) {
  return StrCat("version https://git-lfs.github.com/spec/v1\noid sha256:", Sha256Hex(f), "\nsize ",
                f.size(), "\n");
}

struct GitBlobHasher::Ctx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Ctx() { EVP_MD_CTX_free(ctx); }
};

GitBlobHasher::GitBlobHasher(uint64_t size) : ctx_(std::make_unique<Ctx>()) {
  if (ctx_->ctx == nullptr || EVP_DigestInit_ex(ctx_->ctx, EVP_sha1(), nullptr) != 1) std::abort();
  const std::string header = StrCat("blob ", size);
  Update(header);
  Update(std::string_view("\0", 1));
}
GitBlobHasher::~GitBlobHasher() = default;

void GitBlobHasher::Update(std::string_view b) {
  if (!b.empty() && EVP_DigestUpdate(ctx_->ctx, b.data(), b.size()) != 1) std::abort();
}

std::string GitBlobHasher::HexFinal() {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx_->ctx, d, &n) != 1) std::abort();
  return Hex(d, n);
}

std::string GitBlobId(std::string_view content) {
  GitBlobHasher h(content.size());
  h.Update(content);
  return h.HexFinal();
}

std::vector<TreeEntry> Tree(const cairn::v1::Manifest& m, std::string_view dir, bool recursive,
                            bool* found) {
  std::vector<TreeEntry> out;
  auto [begin, end] = FilesBelow(m, dir);
  *found = dir.empty() || begin < end;
  const size_t skip = dir.empty() ? 0 : dir.size() + 1;
  auto add_dir = [&](std::string d) {
    auto [db, de] = FilesBelow(m, d);
    std::string oid = DirectoryOid(m, d, db, de);
    out.push_back({true, std::move(d), nullptr, std::move(oid)});
  };
  for (int i = begin; i < end; ++i) {
    const std::string& p = m.files(i).path();
    const std::string* prev = i > begin ? &m.files(i - 1).path() : nullptr;
    // A directory is new unless the previous file lies below it: the files
    // below a directory are contiguous.
    for (size_t slash = p.find('/', skip); slash != std::string::npos;
         slash = p.find('/', slash + 1)) {
      const std::string_view d(p.data(), slash);
      if (prev == nullptr || !Below(*prev, d)) add_dir(std::string(d));
      if (!recursive) break;
    }
    if (recursive || p.find('/', skip) == std::string::npos) {
      out.push_back({false, p, &m.files(i), ""});
    }
  }
  return out;
}

bool Lookup(const cairn::v1::Manifest& m, std::string_view path, TreeEntry* out) {
  auto it = std::lower_bound(m.files().begin(), m.files().end(), path,
                             [](const auto& f, std::string_view p) { return f.path() < p; });
  if (it != m.files().end() && it->path() == path) {
    *out = {false, std::string(path), &*it, ""};
    return true;
  }
  auto [b, e] = FilesBelow(m, path);
  if (path.empty() || b >= e) return false;
  *out = {true, std::string(path), nullptr, DirectoryOid(m, path, b, e)};
  return true;
}

}  // namespace cairn::node::hf
