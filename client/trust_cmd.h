// `cairn trust ...`: the command-line side of trust_admin.h.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "cairn/trust.h"
#include "client.h"
#include "nlohmann/json.hpp"

namespace cairn::client {

nlohmann::json TrustJson(const TrustRootView& v);

class TrustCommands {
 public:
  // Adds `trust` and its subcommands to `app`. `add_node` adds the --node
  // options to a subcommand.
  // `default_trust` (the settings' trust file: CAIRN_TRUST or the config)
  // is used when --trust is not given.
  TrustCommands(CLI::App* app, bool* as_json, const std::function<void(CLI::App*)>& add_node,
                const std::string* default_trust, const std::string* config_path);
  // Whether a trust subcommand was parsed.
  bool parsed() const;
  // Runs it; `connect` opens every node named. Returns the exit code.
  int Run(const std::function<absl::StatusOr<std::vector<std::unique_ptr<Connection>>>()>& connect);

 private:
  bool* as_json_;
  CLI::App *init_, *delegate_, *revoke_, *rotate_, *sign_, *show_, *push_, *update_;
  std::vector<std::string> keys_, root_pubs_, remove_roots_, publishers_, key_ids_, replacements_;
  bool allow_empty_ = false;
  std::string out_, trust_, ns_, show_path_;
  const std::string* default_trust_;
  const std::string* config_path_;
  int days_ = 0;
  unsigned threshold_ = 1, root_threshold_ = 0;
};

}  // namespace cairn::client
