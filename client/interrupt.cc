#include "interrupt.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace cairn::client {

namespace {
std::atomic<bool> armed{false};
Cancellation* cancellation() {
  static Cancellation* c = new Cancellation();  // lives as long as the process
  return c;
}
}  // namespace

void InstallInterruptHandler() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return;
  std::thread([set] {
    bool fired = false;
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (!armed.load() || fired) _exit(130);
      fired = true;
      cancellation()->Cancel();
    }
  }).detach();
}

Cancellation* InterruptCancellation() {
  armed = true;
  return cancellation();
}

}  // namespace cairn::client
