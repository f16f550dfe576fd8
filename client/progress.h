// Progress on stderr: bytes, rate, ETA, as a bar redrawn in place (a
// terminal) or as a plain line every few seconds (logs, CI). The CLI picks
// with --progress auto|bar|lines|none. Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace cairn::client {

// Seconds from `t0` to now (steady clock).
inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class Progress {
 public:
  enum Mode { kNone = 0, kBar = 1, kLines = 2 };
  static constexpr std::chrono::seconds kLineEvery{5};

  Progress(bool bar, std::string label, uint64_t total)
      : Progress(bar ? kBar : kNone, std::move(label), total) {}
  Progress(Mode mode, std::string label, uint64_t total)
      : enabled_(mode != kNone && total > 0),
        lines_(mode == kLines),
        label_(std::move(label)),
        total_(total),
        t0_(std::chrono::steady_clock::now()),
        last_(t0_) {}
  ~Progress() {
    if (enabled_ && (drawn_ || lines_)) {
      Draw();
      if (!lines_) std::fputc('\n', stderr);
    }
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Add(uint64_t n) {
    done_ += n;
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ <
        (lines_ ? std::chrono::milliseconds(kLineEvery) : std::chrono::milliseconds(200))) {
      return;
    }
    last_ = now;
    Draw();
  }

  static std::string Bytes(double b) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) {
      b /= 1000;
      ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
    return buf;
  }

 private:
  void Draw() {
    drawn_ = true;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    double rate = secs > 0 ? done_ / secs : 0;
    double eta = rate > 0 ? (total_ - std::min(done_, total_)) / rate : 0;
    std::fprintf(stderr,
                 lines_ ? "cairn: %s %.1f%%  %s / %s  %s/s  ETA %.0fs\n"
                        : "\r%-10s %5.1f%%  %s / %s  %s/s  ETA %.0fs   ",
                 label_.c_str(), 100.0 * done_ / total_, Bytes(done_).c_str(),
                 Bytes(total_).c_str(), Bytes(rate).c_str(), eta);
    std::fflush(stderr);
  }

  bool enabled_;
  bool lines_;
  bool drawn_ = false;
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::chrono::steady_clock::time_point t0_, last_;
};

}  // namespace cairn::client
