// cairn-wire: a point-to-point IP link between two network namespaces with a
// netem-like profile (one-way delay, random loss, rate limit, queue limit),
// emulated in user space over two TUN devices. Written because this
// machine's kernel has no sch_netem; the tests use it the same way they would
// use `tc qdisc ... netem`.
//
//   cairn-wire --ns-a NS1 --ns-b NS2 --dev NAME [--delay-ms 150] [--loss 0.02]
//              [--rate-mbit 20] [--queue-ms 1000] [--seed N]
//
// Creates TUN device NAME in each namespace and prints "ready" once both
// exist; the caller assigns addresses and brings them up. SIGUSR1 takes the
// link down (every packet dropped), SIGUSR2 brings it back. SIGTERM/SIGINT
// end it; stats go to stderr.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_down = 0;
volatile sig_atomic_t g_stop = 0;

int OpenTunIn(const std::string& ns, const std::string& dev) {
  int self = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = ::open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (self < 0 || target < 0) {
    std::fprintf(stderr, "cairn-wire: no network namespace %s\n", ns.c_str());
    std::exit(2);
  }
  if (::setns(target, CLONE_NEWNET) != 0) {
    std::perror("cairn-wire: setns");
    std::exit(2);
  }
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    std::perror("cairn-wire: /dev/net/tun");
    std::exit(2);
  }
  struct ifreq ifr {};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", dev.c_str());
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    std::perror("cairn-wire: TUNSETIFF");
    std::exit(2);
  }
  if (::setns(self, CLONE_NEWNET) != 0) {
    std::perror("cairn-wire: setns back");
    std::exit(2);
  }
  ::close(self);
  ::close(target);
  return fd;
}

struct Packet {
  Clock::time_point due;
  std::string bytes;
};

// One direction of the link.
struct Direction {
  int in = -1, out = -1;
  std::deque<Packet> queue;      // in delivery order (constant delay, FIFO serializer)
  Clock::time_point link_free;  // when the serializer finishes the last packet
  uint64_t sent = 0, lost = 0, dropped_queue = 0, dropped_down = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string ns_a, ns_b, dev = "cairn0";
  double delay_ms = 150, loss = 0.02, rate_mbit = 20, queue_ms = 1000;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--ns-a") ns_a = v;
    else if (k == "--ns-b") ns_b = v;
    else if (k == "--dev") dev = v;
    else if (k == "--delay-ms") delay_ms = std::atof(v.c_str());
    else if (k == "--loss") loss = std::atof(v.c_str());
    else if (k == "--rate-mbit") rate_mbit = std::atof(v.c_str());
    else if (k == "--queue-ms") queue_ms = std::atof(v.c_str());
    else if (k == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "cairn-wire: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (ns_a.empty() || ns_b.empty() || rate_mbit <= 0 || loss < 0 || loss >= 1) {
    std::fprintf(stderr, "usage: cairn-wire --ns-a NS --ns-b NS [--dev NAME] [--delay-ms MS] "
                         "[--loss P] [--rate-mbit R] [--queue-ms MS]\n");
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = [](int s) {
    if (s == SIGUSR1) g_down = 1;
    else if (s == SIGUSR2) g_down = 0;
    else g_stop = 1;
  };
  for (int s : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT}) sigaction(s, &sa, nullptr);

  int a = OpenTunIn(ns_a, dev), b = OpenTunIn(ns_b, dev);
  Direction dirs[2];
  dirs[0].in = a, dirs[0].out = b;
  dirs[1].in = b, dirs[1].out = a;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coin(0, 1);
  const auto delay = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(delay_ms));
  const auto max_queue = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(queue_ms));
  const double bytes_per_sec = rate_mbit * 1e6 / 8;
  std::printf("ready\n");
  std::fflush(stdout);

  std::vector<char> buf(65536);
  while (!g_stop) {
    auto now = Clock::now();
    // Deliver what is due.
    for (auto& d : dirs) {
      while (!d.queue.empty() && d.queue.front().due <= now) {
        if (g_down) {
          d.dropped_down++;
        } else if (::write(d.out, d.queue.front().bytes.data(), d.queue.front().bytes.size()) > 0) {
          d.sent++;
        }
        d.queue.pop_front();
      }
    }
    // Sleep exactly until the next delivery (no busy loop: the hosts under
    // test need the CPU).
    auto wake = now + std::chrono::milliseconds(100);
    for (auto& d : dirs) {
      if (!d.queue.empty()) wake = std::min(wake, d.queue.front().due);
    }
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wake - now).count();
    if (ns < 0) ns = 0;
    struct timespec ts = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    int n = ::ppoll(p, 2, &ts, nullptr);
    if (n <= 0) continue;
    now = Clock::now();
    for (int i = 0; i < 2; ++i) {
      if (!(p[i].revents & POLLIN)) continue;
      Direction& d = dirs[i];
      for (;;) {
        ssize_t r = ::read(d.in, buf.data(), buf.size());
        if (r <= 0) break;
        if (g_down) {
          d.dropped_down++;
          continue;
        }
        if (coin(rng) < loss) {
          d.lost++;
          continue;
        }
        // Rate: the serializer sends one packet after another.
        auto start = std::max(now, d.link_free);
        if (start - now > max_queue) {
          d.dropped_queue++;  // tail drop, like a full router queue
          continue;
        }
        auto tx = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(static_cast<double>(r) / bytes_per_sec));
        d.link_free = start + tx;
        d.queue.push_back({d.link_free + delay, std::string(buf.data(), r)});
      }
    }
  }
  for (int i = 0; i < 2; ++i) {
    std::fprintf(stderr, "cairn-wire %s: %lu sent, %lu lost, %lu queue drops, %lu while down\n",
                 i == 0 ? "a->b" : "b->a", static_cast<unsigned long>(dirs[i].sent),
                 static_cast<unsigned long>(dirs[i].lost),
                 static_cast<unsigned long>(dirs[i].dropped_queue),
                 static_cast<unsigned long>(dirs[i].dropped_down));
  }
  return 0;
}
