#include "cairn/chunker.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <thread>

#include "cairn/status.h"
#include "nlohmann/json.hpp"

namespace cairn {
namespace {

// Gear table: 256 pseudo-random 64-bit values from splitmix64 with a fixed
// seed. Changing it changes every chunk boundary: it is part of the format.
constexpr std::array<uint64_t, 256> MakeGear() {
  std::array<uint64_t, 256> t{};
  uint64_t x = 0x63616972'6e476561ULL;  // "cairnGea"
  for (auto& v : t) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return t;
}
constexpr std::array<uint64_t, 256> kGear = MakeGear();

// A mask of `bits` ones in the high end of the word: with a left-shifting Gear
// hash the high bits depend on the last 64 bytes, the widest window.
constexpr uint64_t HighMask(int bits) { return bits <= 0 ? 0 : ~0ULL << (64 - bits); }

int Log2(uint32_t v) { return 31 - __builtin_clz(v); }

}  // namespace

ChunkerParams ChunkerParams::ForAverage(uint32_t avg) {
  ChunkerParams p;
  p.avg_size = avg;
  p.min_size = avg / 4;
  p.max_size = avg * 4;
  return p;
}

FastCdc::FastCdc(const ChunkerParams& p) : p_(p) {
  int bits = Log2(std::max<uint32_t>(p.avg_size, 64));
  // Normalization level 2 (FastCDC paper): 2 bits harder before avg, 2 easier after.
  mask_small_ = HighMask(bits + 2);
  mask_large_ = HighMask(bits - 2);
}

size_t FastCdc::Cut(const uint8_t* data, size_t len) const {
  if (len <= p_.min_size) return len;
  size_t end = std::min<size_t>(len, p_.max_size);
  size_t normal = std::min<size_t>(end, p_.avg_size);
  uint64_t h = 0;
  size_t i = p_.min_size;
  for (; i < normal; ++i) {
    h = (h << 1) + kGear[data[i]];
    if (!(h & mask_small_)) return i + 1;
  }
  for (; i < end; ++i) {
    h = (h << 1) + kGear[data[i]];
    if (!(h & mask_large_)) return i + 1;
  }
  return end;
}

std::vector<uint64_t> SafetensorsBoundaries(std::string_view head, uint64_t file_size) {
  std::vector<uint64_t> out;
  if (head.size() < 8) return out;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<uint8_t>(head[i]);
  if (n < 2 || n > head.size() - 8 || 8 + n > file_size) return out;
  std::string_view json_text = head.substr(8, n);
  if (json_text[0] != '{') return out;
  auto j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return out;
  const uint64_t base = 8 + n;
  out.push_back(base);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__" || !it.value().is_object()) continue;
    auto off = it.value().find("data_offsets");
    if (off == it.value().end() || !off->is_array() || off->size() != 2) continue;
    for (const auto& v : *off) {
      if (!v.is_number_unsigned()) continue;
      uint64_t o = v.get<uint64_t>();
      if (o <= file_size - base) out.push_back(base + o);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<uint64_t> KeepLargeRegionBoundaries(const std::vector<uint64_t>& bounds,
                                                uint64_t file_size, uint64_t min_region) {
  // A boundary forces a cut when the region on either side of it is at least
  // min_region long: large tensors start and end on a cut, so an in-place edit
  // of one never disturbs its neighbours' chunks, while runs of small tensors
  // are left to CDC instead of becoming tiny chunks.
  std::vector<uint64_t> out;
  for (size_t i = 0; i < bounds.size(); ++i) {
    uint64_t prev = i == 0 ? 0 : bounds[i - 1];
    uint64_t next = i + 1 < bounds.size() ? bounds[i + 1] : file_size;
    if (bounds[i] - prev >= min_region || next - bounds[i] >= min_region) out.push_back(bounds[i]);
  }
  return out;
}

absl::Status ChunkFd(int fd, const ChunkerParams& params,
                     const std::function<absl::Status(const ChunkInfo&, std::string_view)>& sink,
                     Digest* file_digest, uint64_t* file_size) {
  FastCdc cdc(params);
  // The whole-file SHA-256 runs on a second thread over its own preads of the
  // same (page-cached) file: hashing every byte twice on one core would halve
  // ingest. Its size is checked against ours, and callers stat the file
  // before and after, so a file changing underneath is still caught.
  Digest parallel_digest{};
  uint64_t parallel_size = 0;
  absl::Status parallel_status;
  std::thread whole_thread;
  const bool parallel_whole = params.parallel_file_hash && std::thread::hardware_concurrency() > 1;
  if (parallel_whole) {
    whole_thread = std::thread([&] {
      Sha256 h;
      std::string b(4 << 20, '\0');
      uint64_t off = 0;
      while (true) {
        ssize_t r = ::pread(fd, b.data(), b.size(), off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
          parallel_status = ErrnoStatus(errno, "read");
          break;
        }
        if (r == 0) break;
        h.Update(b.data(), r);
        off += r;
      }
      parallel_digest = h.Finish();
      parallel_size = off;
    });
  }
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{whole_thread};
  const size_t kRead = 4 << 20;
  std::string buf(kRead + 2 * static_cast<size_t>(params.max_size), '\0');
  size_t have = 0;    // bytes in buf
  size_t start = 0;   // start of the current chunk in buf
  uint64_t base = 0;  // file offset of buf[0]
  bool eof = false;
  Sha256 whole;
  std::vector<uint64_t> bounds;
  size_t next_bound = 0;
  bool first_read = true;

  while (true) {
    // Refill when the unconsumed tail is shorter than a max chunk.
    if (!eof && have - start < params.max_size) {
      std::memmove(buf.data(), buf.data() + start, have - start);
      base += start;
      have -= start;
      start = 0;
      while (!eof && have < buf.size()) {
        ssize_t r = ::read(fd, buf.data() + have, std::min(kRead, buf.size() - have));
        if (r < 0) {
          if (errno == EINTR) continue;
          return ErrnoStatus(errno, "read");
        }
        if (r == 0) eof = true;
        if (!parallel_whole) whole.Update(buf.data() + have, r);
        have += r;
        if (have >= kRead) break;
      }
      if (first_read) {
        first_read = false;
        if (params.tensor_boundaries) {
          struct stat st;
          if (::fstat(fd, &st) == 0) {
            bounds = SafetensorsBoundaries(std::string_view(buf.data(), have), st.st_size);
            bounds = KeepLargeRegionBoundaries(bounds, st.st_size, params.min_size);
          }
        }
      }
    }
    size_t avail = have - start;
    if (avail == 0) break;
    uint64_t pos = base + start;
    while (next_bound < bounds.size() && bounds[next_bound] <= pos) ++next_bound;
    size_t limit = avail;
    if (next_bound < bounds.size() && bounds[next_bound] - pos < limit) {
      limit = bounds[next_bound] - pos;
    }
    size_t n = cdc.Cut(reinterpret_cast<const uint8_t*>(buf.data()) + start, limit);
    if (n == limit && limit == avail && !eof && n < params.max_size) continue;  // need more
    std::string_view bytes(buf.data() + start, n);
    ChunkInfo info{pos, static_cast<uint32_t>(n), Sha256Of(bytes)};
    CAIRN_RETURN_IF_ERROR(sink(info, bytes));
    start += n;
  }
  *file_size = base + start;
  if (parallel_whole) {
    whole_thread.join();
    CAIRN_RETURN_IF_ERROR(parallel_status);
    if (parallel_size != *file_size) {
      return absl::AbortedError("file changed while being read (size differs between reads)");
    }
    *file_digest = parallel_digest;
  } else {
    *file_digest = whole.Finish();
  }
  return absl::OkStatus();
}

}  // namespace cairn
