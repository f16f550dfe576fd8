// cairn-node: a Cairn mirror node.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "CLI/CLI.hpp"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/tuning.h"
#include "server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "toml++/toml.h"
#include "upstream.h"

namespace {

struct ServeConfig {
  std::string data;
  std::string listen = "127.0.0.1:7070";
  std::string trust;
  std::string log_level = "info";
  bool verify_reads = true;
  std::string region;
  std::vector<std::string> upstreams;
  std::vector<std::string> peers;
  std::vector<cairn::node::ReplicationLoop::UpstreamConfig> upstream_tables;
};

// A string array at t[key] into *out. InvalidArgument naming `where` otherwise.
absl::Status StringArray(const toml::table& t, const char* key, const std::string& where,
                         std::vector<std::string>* out) {
  if (!t.contains(key)) return absl::OkStatus();
  const toml::array* arr = t[key].as_array();
  if (arr == nullptr)
    return absl::InvalidArgumentError(where + "." + key + " must be an array of strings");
  for (const auto& e : *arr) {
    if (!e.is_string()) return absl::InvalidArgumentError(where + "." + key + " must hold strings");
    out->push_back(*e.value<std::string>());
  }
  return absl::OkStatus();
}

std::string DefaultDataDir() {
  if (::geteuid() == 0) return "/var/lib/cairn";
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/cairn/node";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/share/cairn/node";
}

// Config file: [node] data, listen, trust, log_level. Flags win over it.
absl::Status LoadConfig(const std::string& path, ServeConfig* c) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(cairn::StrCat("config ", path, ":", e.source().begin.line,
                                                    ": ", std::string(e.description())));
  }
  // [[upstream]] tables: address, include, exclude, max_release_bytes.
  if (t.contains("upstream")) {
    const toml::array* ups = t["upstream"].as_array();
    if (ups == nullptr) {
      return absl::InvalidArgumentError("config " + path + ": use [[upstream]] tables");
    }
    for (const auto& u : *ups) {
      const toml::table* ut = u.as_table();
      std::string where = "config " + path + ": upstream";
      if (ut == nullptr) return absl::InvalidArgumentError(where + " must be a table");
      cairn::node::ReplicationLoop::UpstreamConfig uc;
      for (auto [key, val] : *ut) {
        std::string k(key.str());
        if (k == "address" && val.is_string()) {
          uc.address = *val.value<std::string>();
        } else if (k == "max_release_bytes" && val.is_integer() && *val.value<int64_t>() >= 0) {
          uc.policy.max_release_bytes = static_cast<uint64_t>(*val.value<int64_t>());
        } else if (k == "streams" && val.is_integer() && *val.value<int64_t>() >= 1 &&
                   *val.value<int64_t>() <= 8) {
          uc.streams = static_cast<int>(*val.value<int64_t>());
        } else if (k == "max_bytes_per_second" && val.is_integer() && *val.value<int64_t>() >= 0) {
          uc.policy.max_bytes_per_second = static_cast<uint64_t>(*val.value<int64_t>());
        } else if (k != "include" && k != "exclude" && k != "tags" && k != "windows") {
          return absl::InvalidArgumentError(where + ": unknown key or wrong type: " + k);
        }
      }
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "include", where, &uc.policy.include));
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "exclude", where, &uc.policy.exclude));
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "tags", where, &uc.policy.tags));
      std::vector<std::string> windows;
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "windows", where, &windows));
      for (const auto& w : windows) {
        auto parsed = cairn::ReplicationPolicy::ParseWindow(w);
        if (!parsed.ok()) return cairn::Annotate(parsed.status(), where);
        uc.policy.windows.push_back(*parsed);
      }
      if (uc.address.empty()) return absl::InvalidArgumentError(where + " needs an address");
      c->upstream_tables.push_back(std::move(uc));
    }
  }
  if (!t.contains("node")) return absl::OkStatus();
  const toml::table* node = t["node"].as_table();
  if (node == nullptr) {
    return absl::InvalidArgumentError("config " + path + ": [node] must be a table");
  }
  for (auto [key, val] : *node) {
    std::string k(key.str());
    if (k == "upstreams" || k == "peers") {
      CAIRN_RETURN_IF_ERROR(StringArray(*node, k.c_str(), "config " + path + ": node",
                                        k == "peers" ? &c->peers : &c->upstreams));
      continue;
    }
    if (k == "verify_reads") {
      if (!val.is_boolean()) {
        return absl::InvalidArgumentError("config " + path +
                                          ": node.verify_reads must be true or false");
      }
      c->verify_reads = *val.value<bool>();
      continue;
    }
    if (!val.is_string()) {
      return absl::InvalidArgumentError("config " + path + ": node." + k + " must be a string");
    }
    std::string v = *val.value<std::string>();
    if (k == "data")
      c->data = v;
    else if (k == "listen")
      c->listen = v;
    else if (k == "trust")
      c->trust = v;
    else if (k == "log_level")
      c->log_level = v;
    else if (k == "region")
      c->region = v;
    else
      return absl::InvalidArgumentError("config " + path + ": unknown key node." + k);
  }
  return absl::OkStatus();
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "cairn-node: error: %s\n", std::string(s.message()).c_str());
  return 1;
}

int Serve(ServeConfig cfg) {
  auto level = spdlog::level::from_str(cfg.log_level);
  spdlog::set_level(level);
  if (cfg.trust.empty()) {
    return Fail(absl::InvalidArgumentError(
        "no trust file: pass --trust FILE (made by `cairn trust init`) or set node.trust"));
  }
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  auto trust = cairn::TrustRootView::Load(cfg.trust, cairn::SystemNowUnix());
  if (!trust.ok()) return Fail(trust.status());

  // Block the stop signals before any thread starts, then wait for them here.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  cairn::RepositoryOptions ropts;
  ropts.pack.verify_on_read = cfg.verify_reads;
  ropts.region = cfg.region;
  auto repo = cairn::Repository::Open(cfg.data, std::move(*trust), ropts);
  if (!repo.ok()) return Fail(repo.status());
  auto server = cairn::node::NodeServer::Start(repo->get(), cfg.listen);
  if (!server.ok()) return Fail(server.status());
  spdlog::info("data {}; trust root v{} ({})", cfg.data, (*repo)->trust().root().version(),
               (*repo)->trust().digest());
  std::printf("cairn-node listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  std::unique_ptr<cairn::node::ReplicationLoop> replication;
  std::vector<cairn::node::ReplicationLoop::UpstreamConfig> ups = cfg.upstream_tables;
  for (const auto& a : cfg.upstreams) ups.push_back({a, {}});
  if (!ups.empty()) {
    for (const auto& u : ups) {
      spdlog::info("following upstream {} ({})", u.address, u.policy.ToString());
    }
    for (const auto& p : cfg.peers) spdlog::info("peer {}: asked for chunks too", p);
    replication =
        std::make_unique<cairn::node::ReplicationLoop>(repo->get(), ups, 2, cfg.peers);
    (*server)->SetUpstreamStatus([r = replication.get()] { return r->Status(); });
  }

  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: stopping", sig);
  (*server)->SetUpstreamStatus({});
  replication.reset();
  (*server)->Shutdown(5);
  (*server)->Wait();
  server->reset();
  absl::Status st = (*repo)->chunks()->Sync();
  if (!st.ok()) spdlog::error("final sync: {}", st.ToString());
  repo->reset();
  spdlog::info("stopped cleanly");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cairn::TuneProcess(argv, /*max_arenas=*/4);
  auto logger = spdlog::stderr_color_mt("cairn-node");
  spdlog::set_default_logger(logger);

  CLI::App app{"cairn-node: a Cairn mirror node"};
  app.require_subcommand(1);
  ServeConfig flags;
  std::string config;
  auto* serve = app.add_subcommand("serve", "serve models from a data directory");
  serve->add_option(
      "--config", config,
      "TOML config file ([node] data, listen, trust, log_level, region, verify_reads, upstreams, "
      "peers; [[upstream]] address, include, exclude, max_release_bytes, max_bytes_per_second, "
      "tags, windows, streams)");
  auto* o_data = serve->add_option("--data", flags.data, "data directory");
  auto* o_listen =
      serve->add_option("--listen", flags.listen, "gRPC address HOST:PORT (port 0 picks one)");
  auto* o_trust = serve->add_option("--trust", flags.trust, "trust root file");
  auto* o_log = serve->add_option("--log-level", flags.log_level, "trace|debug|info|warn|error");
  auto* o_region = serve->add_option("--region", flags.region, "region label reported to peers");
  auto* o_up = serve->add_option("--upstream", flags.upstreams,
                                 "follow this node's feed, HOST:PORT (repeatable)");
  auto* o_peer = serve->add_option(
      "--peer", flags.peers,
      "also ask this node for chunks of replicated releases, HOST:PORT (repeatable)");
  bool no_verify_reads = false;
  auto* o_nv = serve->add_flag("--no-verify-reads", no_verify_reads,
                               "serve chunks without re-hashing them (clients verify anyway)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  ServeConfig cfg;
  if (!config.empty()) {
    absl::Status st = LoadConfig(config, &cfg);
    if (!st.ok()) return Fail(st);
  }
  if (*o_data) cfg.data = flags.data;
  if (*o_listen) cfg.listen = flags.listen;
  if (*o_trust) cfg.trust = flags.trust;
  if (*o_log) cfg.log_level = flags.log_level;
  if (*o_region) cfg.region = flags.region;
  if (*o_up) cfg.upstreams = flags.upstreams;
  if (*o_peer) cfg.peers = flags.peers;
  if (*o_nv) cfg.verify_reads = false;
  return Serve(cfg);
}
