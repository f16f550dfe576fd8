#include "s3_windows.h"

#include <algorithm>
#include <cstring>
#include <tuple>

namespace cairn {
namespace {

constexpr size_t kRecordHeader = 40;  // "CRN1", u32 length, digest

}  // namespace

PackWindows::PackWindows(s3::Client* client, ChunkCache* cache, WindowEnd window_end, size_t keep,
                         int ahead, int fetchers)
    : client_(client),
      cache_(cache),
      window_end_(std::move(window_end)),
      keep_(keep),
      ahead_n_(ahead) {
  for (int i = 0; i < fetchers; ++i) fetchers_.emplace_back([this] { FetchLoop(); });
}

PackWindows::~PackWindows() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  for (auto& t : fetchers_) t.join();
}

absl::StatusOr<std::shared_ptr<PackWindows::Window>> PackWindows::Fetch(const std::string& key,
                                                                        uint64_t start,
                                                                        uint64_t length) {
  auto got = client_->Get(key, start, length);
  if (!got.ok()) return got.status();
  auto w = std::make_shared<Window>();
  w->key = key;
  w->start = start;
  w->bytes = std::move(*got);
  size_t at = 0;
  while (at + kRecordHeader <= w->bytes.size()) {
    const char* p = w->bytes.data() + at;
    uint32_t len;
    std::memcpy(&len, p + 4, 4);
    if (std::memcmp(p, "CRN1", 4) != 0 || len == 0 || at + kRecordHeader + len > w->bytes.size()) {
      break;
    }
    Digest d;
    std::memcpy(d.data(), p + 8, d.size());
    const std::string_view bytes(p + kRecordHeader, len);
    // Only what matches its digest is kept: a damaged record is left to
    // the caller's single read, which reports it.
    if (Sha256Of(bytes) == d) {
      w->chunks[d] = {static_cast<uint32_t>(at + kRecordHeader), len};
      if (cache_ != nullptr) cache_->Insert(d, bytes);
    }
    at += kRecordHeader + len;
  }
  if (at == 0) return std::shared_ptr<Window>();
  w->end = start + at;
  return w;
}

void PackWindows::Keep(std::shared_ptr<Window> w) {
  windows_.push_back(std::move(w));
  while (windows_.size() > keep_) windows_.pop_front();
}

std::shared_ptr<PackWindows::Window> PackWindows::FindLocked(const std::string& key,
                                                             const Digest& d) {
  for (auto it = windows_.rbegin(); it != windows_.rend(); ++it) {
    if ((*it)->key == key && (*it)->chunks.contains(d)) return *it;
  }
  return nullptr;
}

bool PackWindows::InFlightLocked(const std::string& key, uint64_t record) {
  for (const Want& w : in_flight_) {
    if (w.key == key && w.start <= record && record < w.end) return true;
  }
  return false;
}

bool PackWindows::HeldLocked(const std::string& key, uint64_t start) {
  for (const auto& held : windows_) {
    if (held->key == key && held->start == start) return true;
  }
  return in_flight_.contains(Want{key, start, 0});
}

void PackWindows::AheadLocked(const Window& w) {
  uint64_t start = w.end;
  for (int i = 0; i < ahead_n_ && !stopping_; ++i) {
    const uint64_t end = window_end_(w.key, start);
    if (end <= start) return;  // past the pack's last record
    if (!HeldLocked(w.key, start)) {
      const Want next{w.key, start, end};
      in_flight_.insert(next);
      ahead_.push_back(next);
    }
    start = end;
  }
}

bool PackWindows::InMemory(const std::string& key, const Digest& d, std::string* out) {
  absl::MutexLock l(&mu_);
  auto w = FindLocked(key, d);
  if (w == nullptr) return false;
  const auto [off, len] = w->chunks.at(d);
  out->assign(w->bytes, off, len);
  AheadLocked(*w);
  return true;
}

absl::StatusOr<bool> PackWindows::Read(const std::string& key, uint64_t record, const Digest& d,
                                       uint32_t length, std::string* out) {
  auto serve = [&](const std::shared_ptr<Window>& w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    const auto [off, len] = w->chunks.at(d);
    out->assign(w->bytes, off, len);
    AheadLocked(*w);
    return true;
  };
  uint64_t end;
  {
    absl::MutexLock l(&mu_);
    if (auto w = FindLocked(key, d)) return serve(w);
    // A window being fetched holds it, most likely: wait for that one.
    struct Ctx {
      PackWindows* self;
      const std::string* key;
      uint64_t record;
    } ctx{this, &key, record};
    mu_.Await(absl::Condition(
        +[](Ctx* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return c->self->stopping_ || !c->self->InFlightLocked(*c->key, c->record);
        },
        &ctx));
    if (auto w = FindLocked(key, d)) return serve(w);
    // The whole window the record starts, when the layout is known.
    end = std::max(window_end_(key, record), record + kRecordHeader + length);
    in_flight_.insert(Want{key, record, end});
  }
  auto got = Fetch(key, record, end - record);
  absl::MutexLock l(&mu_);
  in_flight_.erase(Want{key, record, end});
  if (!got.ok()) return got.status();
  std::shared_ptr<Window> w = std::move(*got);
  if (w == nullptr) return false;
  Keep(w);
  if (!w->chunks.contains(d)) return false;
  return serve(w);
}

void PackWindows::FetchLoop() {
  mu_.Lock();
  for (;;) {
    mu_.Await(absl::Condition(
        +[](PackWindows* s)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->stopping_ || !s->ahead_.empty(); },
        this));
    if (stopping_) break;
    const Want next = ahead_.front();
    ahead_.pop_front();
    mu_.Unlock();
    auto w = Fetch(next.key, next.start, next.end - next.start);
    mu_.Lock();
    in_flight_.erase(next);
    if (w.ok() && *w != nullptr) Keep(std::move(*w));
  }
  mu_.Unlock();
}

}  // namespace cairn
