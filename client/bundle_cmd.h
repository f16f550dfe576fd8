// Offline bundles from the command line: `cairn export` (from a node) and
// `cairn import` (into a node). The format: docs/protocol.md, "Bundles".
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli_context.h"

namespace cairn::client {

class BundleCommands {
 public:
  BundleCommands(CLI::App* app, CliContext* ctx);
  bool parsed() const { return *export_ || *import_; }
  int Run();

 private:
  int Export();
  int Import();
  CliContext* ctx_;
  std::vector<std::string> refs_, base_, files_;
  std::string to_, split_, have_;
  bool local_ = false;
  CLI::App *export_, *import_;
};

}  // namespace cairn::client
