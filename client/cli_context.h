// What every cairn subcommand shares: settings (config file < CAIRN_*
// environment < flags), the common flags, connecting to nodes and loading
// the trust root.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "cairn/transport/channel.h"
#include "cairn/trust.h"

namespace cairn::client {

// Defaults: config file < CAIRN_* environment < flags.
struct Settings {
  std::vector<std::string> nodes;
  std::string trust;
  std::string store;            // the managed store (--store, CAIRN_STORE, store)
  uint64_t store_max_size = 0;  // bytes; 0: no limit (store_max_size)
  int timeout = 15;
  std::string tls_ca, tls_cert, tls_key;  // PEM files; no CA: plaintext
  std::string config_path;                // where the config file is looked for (it may not exist)
};

// Reads $CAIRN_CONFIG (else $XDG_CONFIG_HOME/cairn/config.toml) and the
// CAIRN_* variables. InvalidArgument naming the file and key otherwise.
absl::Status LoadSettings(Settings* s);

// The settings and the flags that override them, shared by the commands.
class CliContext {
 public:
  Settings settings;
  bool as_json = false;

  // --node, --timeout, --tls-ca, --tls-cert, --tls-key.
  void AddNode(CLI::App* c);
  // --trust.
  void AddTrust(CLI::App* c);
  // --store (and --cache, its old name).
  void AddStore(CLI::App* c);
  void AddJson(CLI::App* c);
  // After parsing: the flags given override the settings.
  void ApplyFlags();
  // Progress bars: stderr is a terminal and the output is not JSON.
  bool tty() const;

  // The first node (commands that talk to one node: publish, sign).
  absl::StatusOr<std::unique_ptr<Connection>> Connect() const;
  // Every node given, all reachable (publish: the same release to each);
  // Unavailable naming those that are not.
  absl::StatusOr<std::vector<std::unique_ptr<Connection>>> ConnectEvery() const;
  // Every reachable node; warns on stderr about the others.
  absl::StatusOr<std::vector<std::unique_ptr<Connection>>> ConnectAll() const;
  absl::StatusOr<TrustRootView> LoadTrust() const;

 private:
  absl::Status NeedNode() const;
  std::vector<std::string> node_flag_;
  std::string trust_flag_, store_flag_, tls_ca_flag_, tls_cert_flag_, tls_key_flag_;
  int timeout_flag_ = 0;
};

std::vector<Connection*> Raw(const std::vector<std::unique_ptr<Connection>>& conns);

}  // namespace cairn::client
