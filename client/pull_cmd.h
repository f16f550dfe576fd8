// `cairn pull` and `cairn verify`: releases from mirrors into a directory, checked.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli_context.h"
#include "client.h"

namespace cairn::client {

class PullCommands {
 public:
  PullCommands(CLI::App* app, CliContext* ctx);
  bool parsed() const;
  // Runs the parsed command; returns the exit code.
  int Run();

 private:
  CliContext* ctx_;
  PullOptions pl_;
  bool do_fsync_ = false;
  bool no_fsync_compat_ = false;
  size_t window_mib_ = 0;
  bool no_trust_update_ = false;
  std::string progress_ = "auto";
  std::string v_dir_;
  CLI::App *pull_, *verify_;
};

}  // namespace cairn::client
