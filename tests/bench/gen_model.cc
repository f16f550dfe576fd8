// Generates safetensors-shaped model files for benchmarks, streaming (any
// size, little memory), and mutates them in place like a fine-tune would.
//   gen_model make DIR --shards N --shard-mib M [--tensor-kib K] [--seed S]
//   gen_model mutate FILE --fraction F [--seed S]   (prints bytes changed)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace {

struct Rng {
  uint64_t s;
  uint64_t Next() {  // splitmix64: fast enough to generate GB/s
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  void Fill(char* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t v = Next();
      std::memcpy(p + i, &v, 8);
    }
    for (; i < n; ++i) p[i] = static_cast<char>(Next());
  }
};

int Make(const std::string& dir, int shards, uint64_t shard_mib, uint64_t tensor_kib,
         uint64_t seed) {
  std::filesystem::create_directories(dir);
  Rng rng{seed};
  std::vector<char> buf(4 << 20);
  for (int s = 0; s < shards; ++s) {
    uint64_t shard_bytes = shard_mib << 20, tensor = tensor_kib << 10;
    nlohmann::ordered_json h;
    h["__metadata__"] = {{"format", "pt"}};
    uint64_t off = 0;
    for (int i = 0; off < shard_bytes; ++i) {
      // Vary sizes a little, like real layers (norms are small, MLPs large).
      uint64_t n = std::min<uint64_t>(shard_bytes - off, i % 8 == 7 ? 8192 : tensor);
      h["model.layers." + std::to_string(s) + "." + std::to_string(i) + ".weight"] = {
          {"dtype", "BF16"}, {"shape", {n / 2}}, {"data_offsets", {off, off + n}}};
      off += n;
    }
    std::string header = h.dump();
    while (header.size() % 8) header.push_back(' ');
    char name[64];
    std::snprintf(name, sizeof(name), "/model-%05d-of-%05d.safetensors", s + 1, shards);
    FILE* f = std::fopen((dir + name).c_str(), "wb");
    if (!f) return 1;
    uint64_t n = header.size();
    std::fwrite(&n, 8, 1, f);
    std::fwrite(header.data(), 1, header.size(), f);
    for (uint64_t done = 0; done < off;) {
      size_t k = std::min<uint64_t>(buf.size(), off - done);
      rng.Fill(buf.data(), k);
      std::fwrite(buf.data(), 1, k, f);
      done += k;
    }
    std::fclose(f);
  }
  FILE* c = std::fopen((dir + "/config.json").c_str(), "w");
  std::fprintf(c, "{\"architectures\": [\"Generated\"], \"seed\": %lu}\n",
               static_cast<unsigned long>(seed));
  std::fclose(c);
  return 0;
}

int Mutate(const std::string& path, double fraction, uint64_t seed) {
  int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return 1;
  uint64_t n;
  if (::pread(fd, &n, 8, 0) != 8 || n > (100 << 20)) return 1;
  std::string header(n, '\0');
  if (::pread(fd, header.data(), n, 8) != static_cast<ssize_t>(n)) return 1;
  auto h = nlohmann::json::parse(header);
  std::vector<std::pair<uint64_t, uint64_t>> t;
  uint64_t total = 0;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    t.emplace_back(it.value()["data_offsets"][0], it.value()["data_offsets"][1]);
    total += t.back().second - t.back().first;
  }
  std::sort(t.begin(), t.end());
  std::mt19937_64 shuf(seed);
  std::shuffle(t.begin(), t.end(), shuf);
  Rng rng{seed * 31 + 7};
  uint64_t changed = 0;
  std::vector<char> buf;
  for (auto& [b, e] : t) {
    if (changed >= fraction * total) break;
    buf.resize(e - b);
    rng.Fill(buf.data(), buf.size());
    if (::pwrite(fd, buf.data(), buf.size(), 8 + n + b) != static_cast<ssize_t>(buf.size()))
      return 1;
    changed += buf.size();
  }
  ::close(fd);
  std::printf("%lu\n", static_cast<unsigned long>(changed));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: gen_model make DIR --shards N --shard-mib M [--tensor-kib K] [--seed S]\n"
                 "       gen_model mutate FILE --fraction F [--seed S]\n");
    return 2;
  }
  std::string cmd = argv[1], target = argv[2];
  int shards = 1;
  uint64_t mib = 64, kib = 4096, seed = 1;
  double fraction = 0.1;
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--shards")
      shards = std::stoi(v);
    else if (k == "--shard-mib")
      mib = std::stoull(v);
    else if (k == "--tensor-kib")
      kib = std::stoull(v);
    else if (k == "--seed")
      seed = std::stoull(v);
    else if (k == "--fraction")
      fraction = std::stod(v);
  }
  if (cmd == "make") return Make(target, shards, mib, kib, seed);
  if (cmd == "mutate") return Mutate(target, fraction, seed);
  return 2;
}
