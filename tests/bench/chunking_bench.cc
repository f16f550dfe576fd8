// Chunking benchmark: dedup ratio and throughput of FastCDC at 16/32/64/128
// KiB averages, with and without tensor-boundary cuts, on model-shaped data:
//   A. a safetensors file where 10% of the tensors change in place;
//   B. a file with 100 bytes inserted near its start;
//   C. a second file sharing half its tensors with the first (new header).
// Also: chunking alone and chunking + SHA-256 per chunk, one core, in memory,
// against OpenSSL SHA-256 alone on the same buffer (the reference).
// Prints one table row per configuration.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <set>

#include "cairn/chunker.h"
#include "cairn/hash.h"
#include "nlohmann/json.hpp"
#include "testing.h"

namespace {

using cairn::ChunkerParams;
using cairn::Digest;

double Secs(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Chunks of `data` (via a file so the real ChunkFd path runs).
std::vector<cairn::ChunkInfo> Chunks(const std::string& data, const ChunkerParams& p,
                                     const std::string& path) {
  cairn::testing::WriteFile(path, data);
  int fd = ::open(path.c_str(), O_RDONLY);
  std::vector<cairn::ChunkInfo> out;
  Digest d;
  uint64_t n;
  (void)cairn::ChunkFd(
      fd, p,
      [&](const cairn::ChunkInfo& c, std::string_view) {
        out.push_back(c);
        return absl::OkStatus();
      },
      &d, &n);
  ::close(fd);
  return out;
}

// Bytes of `b` whose chunks are not among `a`'s.
uint64_t NewBytes(const std::vector<cairn::ChunkInfo>& a, const std::vector<cairn::ChunkInfo>& b) {
  std::set<Digest> have;
  for (auto& c : a) have.insert(c.digest);
  uint64_t n = 0;
  for (auto& c : b) {
    if (!have.count(c.digest)) n += c.length;
  }
  return n;
}

}  // namespace

int main() {
  cairn::testing::TempDir tmp;
  const std::string path = tmp / "f";
  // 64 tensors of 1-4 MiB plus small norms: ~160 MiB, safetensors layout.
  std::vector<size_t> sizes;
  for (int i = 0; i < 64; ++i) {
    sizes.push_back((1 + i % 4) << 20);
    sizes.push_back(8192);
  }
  std::string base = cairn::testing::MakeSafetensors(sizes, 1);
  std::string edited = base;
  uint64_t changed = cairn::testing::MutateTensors(&edited, 0.10, 2);
  // B1: a non-safetensors blob (e.g. a .bin or GGUF) with 100 bytes inserted
  // near its start. B2: the safetensors header grows by ~100 bytes (metadata
  // added), shifting every tensor: the way a safetensors file really shifts.
  std::string blob = cairn::testing::RandomBytes(base.size(), 4);
  std::string blob_ins = blob.substr(0, 4096) + std::string(100, 'x') + blob.substr(4096);
  std::string grown;
  {
    uint64_t n;
    std::memcpy(&n, base.data(), 8);
    auto h = nlohmann::ordered_json::parse(base.substr(8, n));
    h["__metadata__"]["note"] = std::string(100, 'n');
    std::string hdr = h.dump();
    while (hdr.size() % 8) hdr.push_back(' ');
    uint64_t m = hdr.size();
    grown = std::string(reinterpret_cast<const char*>(&m), 8) + hdr + base.substr(8 + n);
  }
  // C: half the tensors of base (the first half), then new ones, new header.
  std::vector<size_t> half(sizes.begin(), sizes.begin() + sizes.size() / 2);
  std::string c_file = cairn::testing::MakeSafetensors(sizes, 1);  // same seed: same bytes
  std::string tail = cairn::testing::RandomBytes(c_file.size() / 2, 3);
  std::memcpy(c_file.data() + c_file.size() / 2, tail.data(), tail.size());
  uint64_t shared_c = c_file.size() / 2;

  std::printf("data: %.1f MiB safetensors; A changes %.1f MiB (%.1f%%) in place\n",
              base.size() / 1048576.0, changed / 1048576.0, 100.0 * changed / base.size());
  std::printf("%-8s %-10s %8s %10s %10s %10s %10s %10s %13s\n", "avg", "cuts", "chunks",
              "A new/chg", "B1 new MiB", "B2 new MiB", "C new/unq", "CDC GB/s", "CDC+SHA GB/s");
  for (uint32_t avg : {16u << 10, 32u << 10, 64u << 10, 128u << 10}) {
    for (bool tb : {false, true}) {
      ChunkerParams p = ChunkerParams::ForAverage(avg);
      p.tensor_boundaries = tb;
      auto a0 = Chunks(base, p, path);
      double a = double(NewBytes(a0, Chunks(edited, p, path))) / changed;
      double b1 = NewBytes(Chunks(blob, p, path), Chunks(blob_ins, p, path)) / 1048576.0;
      double b2 = NewBytes(a0, Chunks(grown, p, path)) / 1048576.0;
      double c = double(NewBytes(a0, Chunks(c_file, p, path))) / (c_file.size() - shared_c);
      // Throughput: in memory, one core, best of 3.
      cairn::FastCdc cdc(p);
      double best_cdc = 0, best_both = 0;
      for (int rep = 0; rep < 3; ++rep) {
        auto t0 = std::chrono::steady_clock::now();
        size_t pos = 0, n = 0;
        const uint8_t* d = reinterpret_cast<const uint8_t*>(base.data());
        while (pos < base.size()) {
          pos += cdc.Cut(d + pos, base.size() - pos);
          ++n;
        }
        best_cdc = std::max(best_cdc, base.size() / Secs(t0) / 1e9);
        t0 = std::chrono::steady_clock::now();
        pos = 0;
        uint8_t sink = 0;
        while (pos < base.size()) {
          size_t k = cdc.Cut(d + pos, base.size() - pos);
          sink ^= cairn::Sha256Of(d + pos, k)[0];
          pos += k;
        }
        best_both = std::max(best_both, base.size() / Secs(t0) / 1e9);
        if (sink == 0xff && n == 0) std::puts("");
      }
      std::printf("%-8s %-10s %8zu %10.3f %10.2f %10.2f %10.3f %10.2f %13.2f\n",
                  (std::to_string(avg >> 10) + "KiB").c_str(), tb ? "tensor+CDC" : "CDC", a0.size(),
                  a, b1, b2, c, best_cdc, best_both);
    }
  }
  // Reference: SHA-256 alone over the same buffer (OpenSSL EVP, one core).
  double best_sha = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (size_t pos = 0; pos < base.size(); pos += 65536) {
      (void)cairn::Sha256Of(base.data() + pos, std::min<size_t>(65536, base.size() - pos));
    }
    best_sha = std::max(best_sha, base.size() / Secs(t0) / 1e9);
  }
  std::printf("reference: OpenSSL SHA-256 alone, 64 KiB blocks: %.2f GB/s\n", best_sha);
  std::printf(
      "columns: A new/chg = new bytes / changed bytes (1.000 is ideal); B1 = new MiB after a\n"
      "100-byte insert in a raw blob; B2 = new MiB after the safetensors header grew 100 bytes;\n"
      "C new/unq = new bytes / unshared bytes (1.000 is ideal)\n");
  return 0;
}
