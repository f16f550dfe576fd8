// s3_fault_proxy UPSTREAM CONTROL_FILE: the fault proxy as a program, for
// shell tests. Prints "listening on 127.0.0.1:PORT"; the rule is the first
// line of CONTROL_FILE ("none", "503 PUT /packs/", "flip GET", ...: see
// FaultProxy::ParseRule), read again whenever it changes. Runs until
// SIGTERM or SIGINT.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "fault_proxy.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: s3_fault_proxy UPSTREAM CONTROL_FILE\n";
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // the proxy's threads inherit it
  auto proxy = cairn::testing::FaultProxy::Start(argv[1]);
  if (!proxy.ok()) {
    std::cerr << "s3_fault_proxy: " << proxy.status().message() << "\n";
    return 1;
  }
  std::cout << "listening on 127.0.0.1:" << (*proxy)->port() << std::endl;
  std::string applied = "\1";
  timespec tick{0, 20 * 1000 * 1000};
  for (;;) {
    siginfo_t info;
    if (sigtimedwait(&set, &info, &tick) > 0) break;
    std::ifstream in(argv[2]);
    std::string line;
    std::getline(in, line);
    if (line == applied) continue;
    applied = line;
    auto rule = cairn::testing::FaultProxy::ParseRule(line);
    if (!rule.ok()) {
      std::cerr << "s3_fault_proxy: " << rule.status().message() << "\n";
      continue;
    }
    (*proxy)->Set(*rule);
    std::cerr << "s3_fault_proxy: rule \"" << line << "\"\n";
  }
  return 0;
}
