#include "s3_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "cairn/page_cache.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {
namespace {

constexpr char kMagic[4] = {'C', 'R', 'N', '1'};
constexpr size_t kHeader = 4 + 4 + 32;  // magic, u32 length, digest
constexpr uint32_t kMaxChunk = 64 << 20;

std::string SegmentName(uint64_t seq) {
  static const char* kHex = "0123456789abcdef";
  std::string s = "seg-0000000000000000";
  for (int i = 19; i >= 4; --i, seq >>= 4) s[i] = kHex[seq & 15];
  return s;
}

}  // namespace

struct ChunkCache::Segment {
  uint64_t seq = 0;
  std::string path;
  int fd = -1;
  uint64_t size = 0;
  std::vector<Digest> digests;
  ~Segment() {
    if (fd >= 0) close(fd);
  }
};

ChunkCache::ChunkCache(std::string dir, uint64_t max_bytes)
    : dir_(std::move(dir)),
      max_bytes_(max_bytes),
      segment_bytes_(std::clamp<uint64_t>(max_bytes / 8, 1 << 20, 64 << 20)) {}

ChunkCache::~ChunkCache() = default;

absl::StatusOr<std::unique_ptr<ChunkCache>> ChunkCache::Open(const std::string& dir,
                                                             uint64_t max_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    return absl::FailedPreconditionError(
        StrCat("cannot use ", dir, " for the S3 read cache: ", ec ? ec.message() : "not a folder"));
  }
  std::unique_ptr<ChunkCache> c(new ChunkCache(dir, max_bytes));
  CAIRN_RETURN_IF_ERROR(c->Load());
  return c;
}

absl::Status ChunkCache::Load() {
  std::vector<std::pair<uint64_t, std::string>> found;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    const std::string name = e.path().filename().string();
    if (name.size() != 20 || name.rfind("seg-", 0) != 0) continue;
    char* end = nullptr;
    const uint64_t seq = std::strtoull(name.c_str() + 4, &end, 16);
    if (*end == '\0') found.emplace_back(seq, e.path().string());
  }
  std::sort(found.begin(), found.end());
  absl::MutexLock l(&mu_);
  for (const auto& [seq, path] : found) {
    auto seg = std::make_shared<Segment>();
    seg->seq = seq;
    seg->path = path;
    seg->fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (seg->fd < 0) {
      unlink(path.c_str());
      continue;
    }
    const off_t file_size = lseek(seg->fd, 0, SEEK_END);
    // Records up to the first that does not parse; the rest is cut off.
    uint64_t at = 0;
    char h[kHeader];
    while (at + kHeader <= static_cast<uint64_t>(file_size) &&
           pread(seg->fd, h, kHeader, static_cast<off_t>(at)) == static_cast<ssize_t>(kHeader) &&
           std::memcmp(h, kMagic, 4) == 0) {
      uint32_t len;
      std::memcpy(&len, h + 4, 4);
      if (len == 0 || len > kMaxChunk || at + kHeader + len > static_cast<uint64_t>(file_size)) {
        break;
      }
      Digest d;
      std::memcpy(d.data(), h + 8, d.size());
      entries_[d] = Entry{seg, at + kHeader, len};
      seg->digests.push_back(d);
      at += kHeader + len;
    }
    if (at != static_cast<uint64_t>(file_size)) (void)!ftruncate(seg->fd, static_cast<off_t>(at));
    seg->size = at;
    bytes_ += at;
    next_seq_ = std::max(next_seq_, seq + 1);
    segments_.push_back(std::move(seg));
  }
  while (bytes_ > max_bytes_ && !segments_.empty()) DropOldestLocked();
  return StartSegmentLocked();
}

absl::Status ChunkCache::StartSegmentLocked() {
  auto seg = std::make_shared<Segment>();
  seg->seq = next_seq_++;
  seg->path = dir_ + "/" + SegmentName(seg->seq);
  seg->fd = open(seg->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (seg->fd < 0) {
    return absl::InternalError(StrCat("cannot create ", seg->path, ": ", std::strerror(errno)));
  }
  segments_.push_back(std::move(seg));
  return absl::OkStatus();
}

void ChunkCache::DropOldestLocked() {
  std::shared_ptr<Segment> seg = segments_.front();
  segments_.pop_front();
  for (const Digest& d : seg->digests) {
    auto it = entries_.find(d);
    if (it != entries_.end() && it->second.seg == seg) entries_.erase(it);
  }
  bytes_ -= seg->size;
  unlink(seg->path.c_str());  // a read in flight keeps its descriptor
}

bool ChunkCache::Lookup(const Digest& d, std::string* out) {
  Entry e;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(d);
    if (it == entries_.end()) {
      ++misses_;
      return false;
    }
    e = it->second;
  }
  out->resize(e.length);
  const ssize_t n = pread(e.seg->fd, out->data(), e.length, static_cast<off_t>(e.offset));
  const bool good = n == static_cast<ssize_t>(e.length) && Sha256Of(*out) == d;
  absl::MutexLock l(&mu_);
  if (good) {
    ++hits_;
    return true;
  }
  ++misses_;
  auto it = entries_.find(d);
  if (it != entries_.end() && it->second.seg == e.seg) entries_.erase(it);
  out->clear();
  return false;
}

void ChunkCache::Insert(const Digest& d, std::string_view data) {
  if (data.empty() || data.size() > kMaxChunk || data.size() + kHeader > max_bytes_) return;
  std::string rec;
  rec.reserve(kHeader + data.size());
  rec.append(kMagic, 4);
  const uint32_t len = static_cast<uint32_t>(data.size());
  rec.append(reinterpret_cast<const char*>(&len), 4);
  rec.append(reinterpret_cast<const char*>(d.data()), d.size());
  rec.append(data);
  absl::MutexLock l(&mu_);
  if (entries_.contains(d)) return;
  if (segments_.empty() || segments_.back()->size >= segment_bytes_) {
    if (!StartSegmentLocked().ok()) return;
  }
  Segment& seg = *segments_.back();
  size_t done = 0;
  while (done < rec.size()) {
    const ssize_t n = PwritePiece(seg.fd, rec.data() + done, rec.size() - done,
                                  static_cast<off_t>(seg.size + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (done != rec.size()) {
    (void)!ftruncate(seg.fd, static_cast<off_t>(seg.size));  // a full disk: only a miss later
    return;
  }
  entries_[d] = Entry{segments_.back(), seg.size + kHeader, len};
  seg.digests.push_back(d);
  seg.size += rec.size();
  bytes_ += rec.size();
  while (bytes_ > max_bytes_ && segments_.size() > 1) DropOldestLocked();
}

ChunkCache::Stats ChunkCache::stats() {
  absl::MutexLock l(&mu_);
  return Stats{hits_, misses_, bytes_, entries_.size()};
}

}  // namespace cairn
