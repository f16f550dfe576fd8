// `cairn publish`, `cairn import-hf`, `cairn sign`, `cairn renew`, `cairn tag`
// and `cairn yank`: signed releases, tags and yank records to a node.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli_context.h"
#include "client.h"

namespace cairn::client {

class PublishCommands {
 public:
  PublishCommands(CLI::App* app, CliContext* ctx);
  bool parsed() const;
  // Runs the parsed command; returns the exit code.
  int Run();

 private:
  CliContext* ctx_;
  PublishOptions po_;
  uint64_t tag_version_ = 0;
  uint32_t avg_chunk_ = 0;
  std::string sign_ref_;
  std::vector<std::string> sign_keys_;
  RenewOptions renew_;
  TagOptions tag_;
  YankOptions yank_;
  uint64_t move_tag_version_ = 0;
  std::string hf_revision_, hf_commit_;
  CLI::App *publish_, *import_hf_, *sign_, *renew_cmd_, *tag_cmd_, *yank_cmd_;
};

}  // namespace cairn::client
