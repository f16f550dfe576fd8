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
  bool local_ = false, pending_ = false;
  CLI::App *info_, *status_, *ls_, *lineage_;
};

// info_cmd.cc: `cairn info` over every node, `cairn ls` on one.
int RunInfo(CliContext* ctx, const std::vector<std::unique_ptr<Connection>>& conns,
            const TrustRootView* trust, const std::string& ref);
int RunLs(CliContext* ctx, Connection& node, size_t nodes, const std::string& pattern,
          bool pending);

}  // namespace cairn::client
