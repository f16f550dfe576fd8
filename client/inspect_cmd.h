// `cairn info`, `status`, `ls` and `lineage`: what nodes hold.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli_context.h"
#include "client.h"

namespace cairn::client {

class InspectCommands {
 public:
  InspectCommands(CLI::App* app, CliContext* ctx);
  bool parsed() const;
  // Runs the parsed command; returns the exit code.
  int Run();

 private:
  CliContext* ctx_;
  std::string ref_arg_, prefix_arg_;
  bool local_ = false;
  CLI::App *info_, *status_, *ls_, *lineage_;
};

}  // namespace cairn::client
