// `cairn completion bash`: a bash completion script generated from the CLI
// definition itself (subcommands and long options at every level), so it
// never falls behind the commands. deploy/ installs it (cmake --install).
#pragma once

#include <string>

#include "CLI/CLI.hpp"

namespace cairn::client {

std::string BashCompletion(CLI::App& app);

}  // namespace cairn::client
