#include "cairn/hash.h"

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "cairn/status.h"

namespace cairn {

absl::Status ErrnoStatus(int err, std::string_view what) {
  std::string msg = StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case EINTR:
    case EAGAIN:
      return absl::UnavailableError(msg);
    case EIO:
      return absl::DataLossError(msg);
    default:
      return absl::InternalError(msg);
  }
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) { Reset(); }

void Sha256::Reset() {
  // Only fails on allocation failure or a broken OpenSSL: a true invariant.
  if (EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) std::abort();
}

void Sha256::Update(const void* data, size_t len) {
  if (len > 0 && EVP_DigestUpdate(ctx_.get(), data, len) != 1) std::abort();
}

Digest Sha256::Finish() {
  Digest d;
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), d.data(), &n) != 1 || n != d.size()) std::abort();
  Reset();
  return d;
}

struct ParallelSha256::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue;  // to hash
  std::vector<std::string> free;  // hashed, for reuse
  bool busy = false;              // the worker holds a block
  bool stop = false;
  Sha256 sha;
  std::thread worker;
};

ParallelSha256::ParallelSha256() : state_(std::make_unique<State>()) {
  State* st = state_.get();
  st->worker = std::thread([st] {
    std::unique_lock<std::mutex> l(st->mu);
    while (true) {
      st->cv.wait(l, [st] { return st->stop || !st->queue.empty(); });
      if (st->queue.empty()) return;  // stop requested and drained
      std::string block = std::move(st->queue.front());
      st->queue.pop_front();
      st->busy = true;
      l.unlock();
      st->sha.Update(block);
      block.clear();
      l.lock();
      st->busy = false;
      if (st->free.size() < 2) st->free.push_back(std::move(block));
      st->cv.notify_all();
    }
  });
}

ParallelSha256::~ParallelSha256() {
  {
    std::lock_guard<std::mutex> l(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  state_->worker.join();
}

void ParallelSha256::Update(std::string block) {
  std::unique_lock<std::mutex> l(state_->mu);
  state_->cv.wait(l, [this] { return state_->queue.size() < 2; });
  state_->queue.push_back(std::move(block));
  state_->cv.notify_all();
}

Digest ParallelSha256::Finish() {
  std::unique_lock<std::mutex> l(state_->mu);
  state_->cv.wait(l, [this] { return state_->queue.empty() && !state_->busy; });
  return state_->sha.Finish();
}

std::string ParallelSha256::TakeBuffer() {
  std::lock_guard<std::mutex> l(state_->mu);
  if (state_->free.empty()) return std::string();
  std::string b = std::move(state_->free.back());
  state_->free.pop_back();
  return b;
}

Digest Sha256Of(const void* data, size_t len) {
  Digest d;
  unsigned int n = 0;
  if (EVP_Digest(data, len, d.data(), &n, EVP_sha256(), nullptr) != 1) std::abort();
  return d;
}

std::string ToHex(const uint8_t* data, size_t len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(len * 2, '\0');
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = kHex[data[i] >> 4];
    out[2 * i + 1] = kHex[data[i] & 15];
  }
  return out;
}

std::string DigestName(const Digest& d) { return "sha256:" + ToHex(d.data(), d.size()); }

absl::StatusOr<Digest> ParseDigestName(std::string_view name) {
  constexpr std::string_view kPrefix = "sha256:";
  if (name.size() != kPrefix.size() + 64 || name.substr(0, kPrefix.size()) != kPrefix) {
    return absl::InvalidArgumentError(
        StrCat("not a digest (want sha256:<64 hex>): '", name.substr(0, 80), "'"));
  }
  Digest d;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int hi = nib(name[kPrefix.size() + 2 * i]);
    int lo = nib(name[kPrefix.size() + 2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          StrCat("digest has characters other than lowercase hex: '", name, "'"));
    }
    d[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return d;
}

absl::StatusOr<Digest> DigestFromBytes(std::string_view raw) {
  if (raw.size() != 32) {
    return absl::InvalidArgumentError(StrCat("chunk digest must be 32 bytes, got ", raw.size()));
  }
  Digest d;
  std::memcpy(d.data(), raw.data(), 32);
  return d;
}

}  // namespace cairn
