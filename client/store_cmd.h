// The managed store from the command line: `cairn ls --local`, `cairn rm`,
// `cairn cache du|prune|verify`.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli_context.h"

namespace cairn::client {

class StoreCommands {
 public:
  StoreCommands(CLI::App* app, CliContext* ctx);
  bool parsed() const;
  int Run();

 private:
  CliContext* ctx_;
  std::vector<std::string> rm_refs_;
  std::string max_size_;
  CLI::App *rm_, *cache_, *du_, *prune_, *verify_;
};

// `cairn ls --local [PATTERN]`: the releases in the store.
int ListLocal(CliContext* ctx, const std::string& pattern);

// Whether `name` is listed for `pattern`: the name itself, a prefix ending
// in '/' (a namespace or folder), or a glob.
bool NameMatches(const std::string& pattern, const std::string& name);

}  // namespace cairn::client
