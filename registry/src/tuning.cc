#include "cairn/tuning.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/synchronization/mutex.h"

namespace cairn {

void TuneProcess(char** argv, int max_arenas, bool huge_heap) {
  const char* tun = std::getenv("GLIBC_TUNABLES");
  if (huge_heap && std::getenv("CAIRN_NO_REEXEC") == nullptr &&
      (tun == nullptr || std::strstr(tun, "glibc.malloc.hugetlb") == nullptr)) {
    std::string v = tun && *tun ? std::string(tun) + ":glibc.malloc.hugetlb=1"
                                : std::string("glibc.malloc.hugetlb=1");
    ::setenv("GLIBC_TUNABLES", v.c_str(), 1);
    ::setenv("CAIRN_NO_REEXEC", "1", 1);  // never loop, whatever happens
    ::execv("/proc/self/exe", argv);
    // exec failed (no /proc?): carry on untuned.
  }
  // Debian's abseil is built with Mutex deadlock detection on (a lock-order
  // graph updated on every contended lock: 0.5 % of a pull's samples). The
  // thread-safety analysis at build time and the tests' sanitizers check lock
  // order; the programs do not pay for it again.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  if (max_arenas > 0) mallopt(M_ARENA_MAX, max_arenas);
}

}  // namespace cairn
